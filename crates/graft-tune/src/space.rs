//! The search space: named parameters, each with a distribution, and the points in it.
//!
//! In TOML (`[tune.space]` of graft.toml) one line per parameter:
//! `lr = { log = [1e-4, 3e-2] }`, `dropout = { uniform = [0.0, 0.5] }`,
//! `epochs = { int = [5, 30] }`, `head = { choice = ["linear", "mlp"] }`.

use std::collections::BTreeMap;
use std::fmt;

use graft_data::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::TuneError;

/// How one parameter is drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Dist {
    /// Log-uniform between two positive bounds (learning rates, weight decay).
    Log([f64; 2]),
    /// Uniform between two bounds.
    Uniform([f64; 2]),
    /// Whole numbers between two bounds, both included.
    Int([i64; 2]),
    /// One of a list (numbers or words), no order assumed.
    Choice(Vec<Choice>),
}

/// One entry of a `choice` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Choice {
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Choice::Int(i) => write!(f, "{i}"),
            Choice::Float(x) => write!(f, "{x}"),
            Choice::Text(s) => f.write_str(s),
        }
    }
}

/// A coordinate of a point: a number for `log`, `uniform` and `int` (in the parameter's own
/// units, not its log), the index into the list for `choice`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Num(f64),
    Cat(usize),
}

/// One value per parameter, in the space's order.
pub type Point = Vec<Value>;

/// A value as the trainer reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Num(f64),
    Text(String),
}

impl Dist {
    fn check(&self, name: &str) -> Result<(), TuneError> {
        let bad = |why: &str| TuneError::BadSpace(format!("{name}: {why}"));
        match self {
            Dist::Log([lo, hi]) if !(*lo > 0.0 && hi > lo && hi.is_finite()) => Err(bad(
                "log needs two positive bounds, the second larger: log = [1e-4, 1e-2]",
            )),
            Dist::Uniform([lo, hi]) if !(lo.is_finite() && hi.is_finite() && hi > lo) => Err(bad(
                "uniform needs two bounds, the second larger: uniform = [0.0, 0.5]",
            )),
            Dist::Int([lo, hi]) if hi < lo => Err(bad(
                "int needs two bounds, the second not smaller: int = [5, 30]",
            )),
            Dist::Choice(list) if list.is_empty() => Err(bad(
                "choice needs at least one entry: choice = [\"linear\", \"mlp\"]",
            )),
            _ => Ok(()),
        }
    }

    /// The coordinate the samplers work in: the log for `log`, the value otherwise; `None`
    /// for `choice`.
    pub fn bounds(&self) -> Option<(f64, f64)> {
        match self {
            Dist::Log([lo, hi]) => Some((lo.ln(), hi.ln())),
            Dist::Uniform([lo, hi]) => Some((*lo, *hi)),
            // Half a step beyond each end, so that rounding gives the ends their fair share.
            Dist::Int([lo, hi]) => Some((*lo as f64 - 0.5, *hi as f64 + 0.5)),
            Dist::Choice(_) => None,
        }
    }

    /// How many entries a `choice` has (0 for the numeric kinds).
    pub fn choices(&self) -> usize {
        match self {
            Dist::Choice(list) => list.len(),
            _ => 0,
        }
    }

    /// The sampler's coordinate of a numeric value.
    pub fn to_internal(&self, v: f64) -> f64 {
        match self {
            Dist::Log(_) => v.ln(),
            _ => v,
        }
    }

    /// The value at a sampler's coordinate, kept inside the bounds (and whole for `int`).
    pub fn from_internal(&self, u: f64) -> Value {
        match self {
            Dist::Log([lo, hi]) => Value::Num(u.exp().clamp(*lo, *hi)),
            Dist::Uniform([lo, hi]) => Value::Num(u.clamp(*lo, *hi)),
            Dist::Int([lo, hi]) => Value::Num(u.round().clamp(*lo as f64, *hi as f64)),
            Dist::Choice(list) => Value::Cat((u.max(0.0) as usize).min(list.len() - 1)),
        }
    }

    /// A draw from the distribution itself (the prior).
    pub fn sample(&self, rng: &mut SplitMix64) -> Value {
        match self.bounds() {
            Some((a, b)) => self.from_internal(a + (b - a) * rng.next_f64()),
            None => Value::Cat(rng.below(self.choices())),
        }
    }

    /// `levels` evenly spaced values in the sampler's coordinate (geometric for `log`),
    /// whole and distinct for `int`; every entry of a `choice`.
    pub fn grid(&self, levels: usize) -> Vec<Value> {
        let levels = levels.max(1);
        let even = |a: f64, b: f64| -> Vec<f64> {
            if levels == 1 {
                vec![(a + b) / 2.0]
            } else {
                (0..levels)
                    .map(|i| a + (b - a) * i as f64 / (levels - 1) as f64)
                    .collect()
            }
        };
        match self {
            Dist::Log([lo, hi]) => even(lo.ln(), hi.ln())
                .into_iter()
                .map(|u| Value::Num(u.exp().clamp(*lo, *hi)))
                .collect(),
            Dist::Uniform([lo, hi]) => even(*lo, *hi).into_iter().map(Value::Num).collect(),
            Dist::Int([lo, hi]) => {
                let mut out: Vec<Value> = Vec::new();
                for u in even(*lo as f64, *hi as f64) {
                    let v = Value::Num(u.round());
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                out
            }
            Dist::Choice(list) => (0..list.len()).map(Value::Cat).collect(),
        }
    }

    /// The value as a trainer reads it.
    pub fn resolve(&self, v: Value) -> Resolved {
        match (self, v) {
            (Dist::Choice(list), Value::Cat(i)) => match &list[i.min(list.len() - 1)] {
                Choice::Int(x) => Resolved::Num(*x as f64),
                Choice::Float(x) => Resolved::Num(*x),
                Choice::Text(s) => Resolved::Text(s.clone()),
            },
            (_, Value::Num(x)) => Resolved::Num(x),
            (_, Value::Cat(i)) => Resolved::Num(i as f64),
        }
    }

    /// The value as written in a trials file; [`Dist::parse`] reads it back exactly.
    pub fn format(&self, v: Value) -> String {
        match (self, v) {
            (Dist::Choice(list), Value::Cat(i)) => list[i.min(list.len() - 1)].to_string(),
            // Rust's shortest round-trip form: parsing gives back the same f64.
            (_, Value::Num(x)) => format!("{x}"),
            (_, Value::Cat(i)) => i.to_string(),
        }
    }

    /// A value written by [`Dist::format`]; `None` when it is not one of this parameter's.
    pub fn parse(&self, text: &str) -> Option<Value> {
        match self {
            Dist::Choice(list) => list
                .iter()
                .position(|c| c.to_string() == text)
                .map(Value::Cat),
            _ => {
                let x: f64 = text.trim().parse().ok()?;
                let (a, b) = self.bounds()?;
                let u = self.to_internal(x);
                // A little slack for the log's rounding at the ends.
                let slack = 1e-9 * (b - a).abs().max(1.0);
                (u >= a - slack && u <= b + slack).then_some(Value::Num(x))
            }
        }
    }
}

/// Named parameters in a fixed order (by name), each checked.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Space {
    params: BTreeMap<String, Dist>,
}

impl Space {
    pub fn new(params: BTreeMap<String, Dist>) -> Result<Space, TuneError> {
        let s = Space { params };
        s.check()?;
        Ok(s)
    }

    /// Every distribution is well formed (a space read from TOML is checked with this).
    pub fn check(&self) -> Result<(), TuneError> {
        if self.params.is_empty() {
            return Err(TuneError::BadSpace(
                "the space has no parameters: add at least one, e.g. lr = { log = [1e-4, 1e-2] }"
                    .into(),
            ));
        }
        self.params.iter().try_for_each(|(n, d)| d.check(n))
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.keys().map(String::as_str)
    }

    pub fn dists(&self) -> impl Iterator<Item = &Dist> {
        self.params.values()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Dist)> {
        self.params.iter().map(|(n, d)| (n.as_str(), d))
    }

    pub fn get(&self, name: &str) -> Option<&Dist> {
        self.params.get(name)
    }

    /// Position of a parameter in a point.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.params.keys().position(|k| k == name)
    }

    /// A point drawn from every parameter's own distribution.
    pub fn sample(&self, rng: &mut SplitMix64) -> Point {
        self.dists().map(|d| d.sample(rng)).collect()
    }

    /// `(name, value)` of every parameter of `point`, as a trainer reads them.
    pub fn resolve(&self, point: &[Value]) -> Vec<(String, Resolved)> {
        self.iter()
            .zip(point)
            .map(|((n, d), v)| (n.to_string(), d.resolve(*v)))
            .collect()
    }

    /// Every value of `point` as text, in the space's order.
    pub fn format(&self, point: &[Value]) -> Vec<String> {
        self.dists().zip(point).map(|(d, v)| d.format(*v)).collect()
    }

    /// A point from its values as text (a trials file's row), in the space's order.
    pub fn parse(&self, texts: &[&str]) -> Option<Point> {
        (texts.len() == self.len())
            .then(|| self.dists().zip(texts).map(|(d, t)| d.parse(t)).collect())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(text: &str) -> Space {
        let s: Space = toml::from_str(text).expect("toml");
        s.check().expect("valid");
        s
    }

    #[test]
    fn toml_form_round_trips_and_values_write_and_read_back_exactly() {
        let s = space(
            "lr = { log = [1e-4, 1e-2] }\ndropout = { uniform = [0.0, 0.5] }\n\
             epochs = { int = [5, 30] }\nhead = { choice = [\"linear\", \"mlp\"] }\n\
             hidden = { choice = [128, 256] }\n",
        );
        assert_eq!(
            s.names().collect::<Vec<_>>(),
            ["dropout", "epochs", "head", "hidden", "lr"]
        );
        let mut rng = SplitMix64::new(3);
        for _ in 0..200 {
            let p = s.sample(&mut rng);
            let text = s.format(&p);
            let refs: Vec<&str> = text.iter().map(String::as_str).collect();
            assert_eq!(s.parse(&refs).as_ref(), Some(&p), "{text:?}");
            let r = s.resolve(&p);
            let Resolved::Num(lr) = r[4].1 else {
                panic!("lr")
            };
            assert!((1e-4..=1e-2).contains(&lr));
            let Resolved::Num(e) = r[1].1 else {
                panic!("epochs")
            };
            assert!(e.fract() == 0.0 && (5.0..=30.0).contains(&e));
            assert!(matches!(&r[2].1, Resolved::Text(t) if t == "linear" || t == "mlp"));
            assert!(matches!(r[3].1, Resolved::Num(x) if x == 128.0 || x == 256.0));
        }
        assert_eq!(s.parse(&["0.1", "5", "conv", "128", "0.001"]), None);
        assert_eq!(
            s.parse(&["0.1", "5", "mlp", "128", "0.5"]),
            None,
            "lr out of range"
        );
    }

    #[test]
    fn the_ends_of_an_int_range_are_drawn_as_often_as_its_middle() {
        let d = Dist::Int([1, 3]);
        let mut rng = SplitMix64::new(9);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            let Value::Num(x) = d.sample(&mut rng) else {
                panic!()
            };
            counts[x as usize - 1] += 1;
        }
        // Binomial(30000, 1/3): sd ≈ 82, so 5 sd ≈ 410.
        for c in counts {
            assert!((c as i64 - 10_000).abs() < 410, "{counts:?}");
        }
    }

    #[test]
    fn grids_are_even_in_the_parameters_own_scale() {
        let g = Dist::Log([1e-4, 1e-2]).grid(3);
        let v: Vec<f64> = g
            .iter()
            .map(|v| match v {
                Value::Num(x) => *x,
                Value::Cat(_) => f64::NAN,
            })
            .collect();
        assert!((v[1] - 1e-3).abs() < 1e-12 && (v[0] - 1e-4).abs() < 1e-15);
        assert_eq!(
            Dist::Int([1, 2]).grid(4),
            [Value::Num(1.0), Value::Num(2.0)]
        );
        assert_eq!(Dist::Uniform([0.0, 1.0]).grid(1), [Value::Num(0.5)]);
        assert_eq!(
            Dist::Choice(vec![Choice::Int(1), Choice::Int(2)])
                .grid(9)
                .len(),
            2
        );
    }

    #[test]
    fn malformed_spaces_say_what_to_write() {
        for (text, want) in [
            ("lr = { log = [0.0, 1e-2] }", "log = [1e-4, 1e-2]"),
            ("d = { uniform = [0.5, 0.5] }", "uniform = [0.0, 0.5]"),
            ("e = { int = [9, 3] }", "int = [5, 30]"),
            ("h = { choice = [] }", "choice = ["),
        ] {
            let s: Space = toml::from_str(text).expect("toml");
            let e = s.check().expect_err(text).to_string();
            assert!(e.contains(want), "{e}");
        }
        assert!(Space::default().check().is_err());
        assert!(toml::from_str::<Space>("lr = { normal = [0.0, 1.0] }").is_err());
    }
}
