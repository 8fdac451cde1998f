//! The `[tune]` table of graft.toml, and how a point of its space becomes a head's training
//! settings.

use std::collections::BTreeMap;

use graft_train::{Balance, HeadSpec, TrainConfig};
use graft_tune::{Choice, Dist, Method, Resolved, Space, Value};
use serde::{Deserialize, Serialize};

use crate::RunError;

/// `[tune]`: how `graft tune` searches. Flags on the command line override it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TuneConfig {
    /// grid, random, bayes (tree-structured Parzen estimator) or genetic.
    pub method: Method,
    /// Trials to run: 40 by default, every point for a grid.
    pub trials: Option<usize>,
    /// Stop starting trials after this long ("90s", "10m", "1h"); no limit when unset.
    pub time: Option<String>,
    /// Trials trained at once (trial `i` learns from trials `0 ..= i - parallel`); 0 = one
    /// per core.
    pub parallel: usize,
    pub seed: u64,
    /// Grid: values per numeric parameter.
    pub grid_levels: usize,
    /// Bayes: random trials before the estimator takes over.
    pub startup: usize,
    /// Genetic: size of the first generation and of the parents' pool.
    pub population: usize,
    /// Genetic: chance that a child's parameter mutates.
    pub mutation: f64,
    /// The two parameters of the heatmap (default: lr and weight_decay when both vary).
    pub heatmap: Option<[String; 2]>,
    /// The search space (`[tune.space]`); [`default_space`] when empty.
    pub space: Space,
}

impl Default for TuneConfig {
    fn default() -> Self {
        let o = graft_tune::Options::default();
        TuneConfig {
            method: Method::Bayes,
            trials: None,
            time: None,
            parallel: 0,
            seed: 42,
            grid_levels: o.grid_levels,
            startup: o.startup,
            population: o.population,
            mutation: o.mutation,
            heatmap: None,
            space: Space::default(),
        }
    }
}

impl TuneConfig {
    pub fn options(&self) -> graft_tune::Options {
        graft_tune::Options {
            grid_levels: self.grid_levels,
            startup: self.startup,
            population: self.population,
            mutation: self.mutation,
            ..graft_tune::Options::default()
        }
    }

    /// The space searched: `[tune.space]`, or the default one when it is empty.
    pub fn space(&self) -> Result<Space, RunError> {
        let space = if self.space.is_empty() {
            default_space()
        } else {
            self.space.clone()
        };
        check(&space)?;
        Ok(space)
    }
}

/// Learning rate and weight decay on log scales, linear head or MLP of 128–1024 units, dropout
/// and label smoothing: what matters most for a head on frozen features.
pub fn default_space() -> Space {
    let text = |s: &str| Choice::Text(s.to_string());
    let params: BTreeMap<String, Dist> = [
        ("lr", Dist::Log([1e-4, 3e-2])),
        ("weight_decay", Dist::Log([1e-6, 1e-2])),
        ("head", Dist::Choice(vec![text("linear"), text("mlp")])),
        (
            "hidden",
            Dist::Choice([128, 256, 512, 1024].map(Choice::Int).to_vec()),
        ),
        ("dropout", Dist::Uniform([0.0, 0.5])),
        ("label_smoothing", Dist::Uniform([0.0, 0.2])),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Space::new(params).unwrap_or_default()
}

/// The parameters `graft tune` knows, with what each accepts.
pub const PARAMETERS: &[(&str, &str)] = &[
    ("lr", "learning rate, > 0 (log)"),
    ("weight_decay", "AdamW weight decay, ≥ 0 (log)"),
    (
        "head",
        "\"linear\", \"mlp\" or \"mlp:HIDDEN:DROPOUT\" (choice)",
    ),
    ("hidden", "MLP hidden units, ≥ 1 (int or choice)"),
    ("dropout", "MLP dropout, 0 to < 1 (uniform)"),
    ("label_smoothing", "0 to < 1 (uniform)"),
    ("epochs", "most epochs, ≥ 1 (int)"),
    (
        "patience",
        "epochs without a better val macro-F1 before stopping, 0 = never (int)",
    ),
    ("batch", "minibatch rows, ≥ 1 (int or choice)"),
    (
        "balance",
        "\"auto\", \"weights\", \"sampling\" or \"none\" (choice)",
    ),
    ("clip", "largest gradient norm, 0 = none (uniform)"),
];

/// Every parameter is one graft knows, and every value it can take is valid for it.
pub(crate) fn check(space: &Space) -> Result<(), RunError> {
    let known = || {
        PARAMETERS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (name, dist) in space.iter() {
        if !PARAMETERS.iter().any(|(n, _)| *n == name) {
            return Err(RunError::Invalid(format!(
                "[tune.space] {name}: not a parameter graft tunes (it tunes {})",
                known()
            )));
        }
        let whole = matches!(name, "epochs" | "patience" | "batch" | "hidden");
        if whole && matches!(dist, Dist::Log(_) | Dist::Uniform(_)) {
            return Err(RunError::Invalid(format!(
                "[tune.space] {name} takes whole numbers: write {name} = {{ int = [LOW, HIGH] }} \
                 or {name} = {{ choice = [A, B, …] }}"
            )));
        }
        // Every value the distribution can give: the ends of a range, every choice.
        let values = dist.grid(2);
        let mut base = TrainConfig::default();
        for v in values {
            set(&mut base, name, &dist.resolve(v)).map_err(|why| {
                RunError::Invalid(format!("[tune.space] {name} = {}: {why}", dist.format(v)))
            })?;
        }
    }
    Ok(())
}

/// The training settings of `point`: `base` with every parameter of the space set. An MLP's
/// `hidden` and `dropout` apply after `head` whatever their order; a linear head ignores them.
pub fn train_config(
    space: &Space,
    point: &[Value],
    base: &TrainConfig,
) -> Result<TrainConfig, RunError> {
    let mut cfg = base.clone();
    let resolved = space.resolve(point);
    let order = |n: &str| usize::from(matches!(n, "hidden" | "dropout"));
    let mut sorted: Vec<&(String, Resolved)> = resolved.iter().collect();
    sorted.sort_by_key(|(n, _)| order(n));
    for (name, value) in sorted {
        set(&mut cfg, name, value)
            .map_err(|why| RunError::Invalid(format!("tune parameter {name}: {why}")))?;
    }
    Ok(cfg)
}

fn set(cfg: &mut TrainConfig, name: &str, value: &Resolved) -> Result<(), String> {
    let num = || match value {
        Resolved::Num(x) => Ok(*x),
        Resolved::Text(t) => Err(format!("{t:?} is not a number")),
    };
    let whole = |min: f64| -> Result<usize, String> {
        let x = num()?;
        if x.fract() != 0.0 || x < min {
            return Err(format!("{x} is not a whole number ≥ {min}"));
        }
        Ok(x as usize)
    };
    // From `lo` included to `hi` excluded.
    let in_range = |lo: f64, hi: f64| -> Result<f32, String> {
        let x = num()?;
        if !(x >= lo && x < hi) {
            return Err(format!("{x} is outside {lo} (included) to {hi} (excluded)"));
        }
        Ok(x as f32)
    };
    match name {
        "lr" => {
            let x = num()?;
            if x <= 0.0 || !x.is_finite() {
                return Err(format!("{x} is not a positive rate"));
            }
            cfg.lr = x as f32;
        }
        "weight_decay" => cfg.weight_decay = in_range(0.0, f64::INFINITY)?,
        "label_smoothing" => cfg.label_smoothing = in_range(0.0, 1.0)?,
        "clip" => cfg.clip = in_range(0.0, f64::INFINITY)?,
        "epochs" => cfg.epochs = whole(1.0)?,
        "patience" => cfg.patience = whole(0.0)?,
        "batch" => cfg.batch = whole(1.0)?,
        "hidden" => {
            let h = whole(1.0)?;
            if let HeadSpec::Mlp { hidden, .. } = &mut cfg.head {
                *hidden = h;
            }
        }
        "dropout" => {
            let d = in_range(0.0, 1.0)?;
            if let HeadSpec::Mlp { dropout, .. } = &mut cfg.head {
                *dropout = d;
            }
        }
        "head" => {
            let Resolved::Text(t) = value else {
                return Err("give the head as text: \"linear\" or \"mlp\"".into());
            };
            let spec: HeadSpec = t.parse().map_err(|e| format!("{e}"))?;
            if spec.spatial() {
                return Err("graft tune trains heads on pooled features: linear or mlp".into());
            }
            cfg.head = spec;
        }
        "balance" => {
            let Resolved::Text(t) = value else {
                return Err("give the balance as text: \"auto\", \"weights\", …".into());
            };
            cfg.balance = t.parse::<Balance>()?;
        }
        _ => return Err("not a parameter graft tunes".into()),
    }
    Ok(())
}

/// `"90s"`, `"10m"`, `"1h"`, `"1h30m"` or plain seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, RunError> {
    let bad = || {
        RunError::Invalid(format!(
            "time {text:?}: write it like 90s, 10m, 1h or 1h30m"
        ))
    };
    let t = text.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return (secs > 0.0 && secs.is_finite())
            .then(|| std::time::Duration::from_secs_f64(secs))
            .ok_or_else(bad);
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => return Err(bad()),
        };
        let n: f64 = number.parse().map_err(|_| bad())?;
        total += n * unit;
        number.clear();
    }
    if !number.is_empty() || total <= 0.0 {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_space_is_valid_and_a_point_sets_the_head() {
        let s = default_space();
        s.check().expect("space");
        check(&s).expect("known");
        let names: Vec<&str> = s.names().collect();
        // Order by name: dropout, head, hidden, label_smoothing, lr, weight_decay.
        assert_eq!(names[1], "head");
        let point = vec![
            Value::Num(0.3),
            Value::Cat(1),
            Value::Cat(2),
            Value::Num(0.05),
            Value::Num(2e-3),
            Value::Num(1e-4),
        ];
        let cfg = train_config(&s, &point, &TrainConfig::default()).expect("config");
        assert_eq!(
            cfg.head,
            HeadSpec::Mlp {
                hidden: 512,
                dropout: 0.3
            }
        );
        assert!((cfg.lr - 2e-3).abs() < 1e-9 && (cfg.label_smoothing - 0.05).abs() < 1e-7);
        let mut linear = point.clone();
        linear[1] = Value::Cat(0);
        let cfg = train_config(&s, &linear, &TrainConfig::default()).expect("config");
        assert_eq!(cfg.head, HeadSpec::Linear);
    }

    #[test]
    fn unknown_parameters_and_impossible_values_are_named() {
        let space = |t: &str| -> Space { toml::from_str(t).expect("toml") };
        let e = check(&space("momentum = { uniform = [0.8, 0.99] }"))
            .expect_err("unknown")
            .to_string();
        assert!(e.contains("momentum") && e.contains("weight_decay"), "{e}");
        let e = check(&space("dropout = { uniform = [0.0, 1.0] }"))
            .expect_err("dropout 1")
            .to_string();
        assert!(e.contains("dropout = 1"), "{e}");
        let e = check(&space("head = { choice = [\"attention\"] }"))
            .expect_err("attention")
            .to_string();
        assert!(e.contains("pooled"), "{e}");
        let e = check(&space("batch = { uniform = [16.0, 64.0] }"))
            .expect_err("batch fraction")
            .to_string();
        assert!(e.contains("whole") && e.contains("int = ["), "{e}");
        check(&space(
            "epochs = { int = [5, 30] }\nbalance = { choice = [\"none\", \"weights\"] }",
        ))
        .expect("fine");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        let s = |t: &str| parse_duration(t).map(|d| d.as_secs_f64()).ok();
        assert_eq!(s("90s"), Some(90.0));
        assert_eq!(s("10m"), Some(600.0));
        assert_eq!(s("1h30m"), Some(5400.0));
        assert_eq!(s("45"), Some(45.0));
        assert_eq!(s("ten minutes"), None);
        assert_eq!(s("0s"), None);
        assert_eq!(s("5x"), None);
    }
}
