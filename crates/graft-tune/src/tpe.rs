//! The tree-structured Parzen estimator (Bergstra, Bardenet, Bengio & Kégl 2011), univariate:
//! the trials so far are split into the best `gamma` share ("good") and the rest; each
//! parameter gets a density of its good values, l(x), and of the others, g(x); candidates are
//! drawn from l and the one with the largest l(x)/g(x) is proposed — where good trials are
//! dense and the others are not, which maximises expected improvement under this model.

use graft_data::rng::SplitMix64;

use crate::space::{Dist, Point, Space, Value};
use crate::{ranked, Observed, Options};

pub(crate) fn propose(
    space: &Space,
    history: &[Observed],
    o: &Options,
    rng: &mut SplitMix64,
) -> Point {
    let ranked = ranked(history);
    let n = ranked.len();
    let n_good = ((o.gamma * n as f64).ceil() as usize).clamp(1, n.saturating_sub(1).max(1));
    let (good, bad) = ranked.split_at(n_good);
    space
        .dists()
        .enumerate()
        .map(|(i, d)| {
            let values =
                |set: &[&Observed]| -> Vec<Value> { set.iter().map(|t| t.point[i]).collect() };
            let (gv, bv) = (values(good), values(bad));
            match d.bounds() {
                Some((a, b)) => numeric(d, a, b, &gv, &bv, o.candidates, rng),
                None => categorical(d.choices(), &gv, &bv, o.candidates, rng),
            }
        })
        .collect()
}

fn internal(d: &Dist, values: &[Value]) -> Vec<f64> {
    values
        .iter()
        .filter_map(|v| match v {
            Value::Num(x) => Some(d.to_internal(*x)),
            Value::Cat(_) => None,
        })
        .collect()
}

fn numeric(
    d: &Dist,
    a: f64,
    b: f64,
    good: &[Value],
    bad: &[Value],
    candidates: usize,
    rng: &mut SplitMix64,
) -> Value {
    let l = Parzen::new(&internal(d, good), a, b);
    let g = Parzen::new(&internal(d, bad), a, b);
    (0..candidates.max(1))
        .map(|_| {
            let v = d.from_internal(l.sample(rng));
            let u = match v {
                Value::Num(x) => d.to_internal(x),
                Value::Cat(_) => a,
            };
            (v, l.log_density(u) - g.log_density(u))
        })
        .reduce(|best, c| if c.1 > best.1 { c } else { best })
        .map_or_else(|| d.from_internal((a + b) / 2.0), |(v, _)| v)
}

/// A mixture of normals truncated to `[a, b]`: one per observation, and a broad prior one
/// centred on the range so that no region ever has zero density.
struct Parzen {
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    a: f64,
    b: f64,
}

impl Parzen {
    fn new(points: &[f64], a: f64, b: f64) -> Parzen {
        let width = b - a;
        let prior = (a + b) / 2.0;
        let mut mus: Vec<f64> = points.iter().map(|x| x.clamp(a, b)).collect();
        mus.push(prior);
        mus.sort_by(f64::total_cmp);
        // Each bandwidth is the larger gap to a neighbour, bounded as in the paper: not
        // narrower than the range over min(100, n + 1), not wider than the range.
        let floor = width / (mus.len() as f64).min(100.0);
        let mut sigmas: Vec<f64> = (0..mus.len())
            .map(|i| {
                let left = if i > 0 {
                    mus[i] - mus[i - 1]
                } else {
                    mus[i] - a
                };
                let right = if i + 1 < mus.len() {
                    mus[i + 1] - mus[i]
                } else {
                    b - mus[i]
                };
                left.max(right).clamp(floor, width)
            })
            .collect();
        // The prior component keeps the whole range's width.
        if let Some(p) = mus.iter().position(|&m| m == prior) {
            sigmas[p] = width;
        }
        Parzen { mus, sigmas, a, b }
    }

    fn sample(&self, rng: &mut SplitMix64) -> f64 {
        let k = rng.below(self.mus.len());
        for _ in 0..64 {
            let x = self.mus[k] + self.sigmas[k] * rng.normal();
            if (self.a..=self.b).contains(&x) {
                return x;
            }
        }
        self.a + (self.b - self.a) * rng.next_f64()
    }

    fn log_density(&self, x: f64) -> f64 {
        let cdf = |z: f64| 0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2));
        let logs: Vec<f64> = self
            .mus
            .iter()
            .zip(&self.sigmas)
            .map(|(&m, &s)| {
                let z = (x - m) / s;
                let mass = (cdf((self.b - m) / s) - cdf((self.a - m) / s)).max(1e-300);
                -0.5 * z * z - s.ln() - 0.5 * std::f64::consts::TAU.ln() - mass.ln()
            })
            .collect();
        let top = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        top + logs.iter().map(|l| (l - top).exp()).sum::<f64>().ln() - (logs.len() as f64).ln()
    }
}

fn categorical(
    k: usize,
    good: &[Value],
    bad: &[Value],
    candidates: usize,
    rng: &mut SplitMix64,
) -> Value {
    // Counts with one prior observation spread evenly over the entries.
    let probs = |set: &[Value]| -> Vec<f64> {
        let mut p = vec![1.0 / k as f64; k];
        for v in set {
            if let Value::Cat(i) = v {
                p[(*i).min(k - 1)] += 1.0;
            }
        }
        let total: f64 = p.iter().sum();
        p.iter().map(|x| x / total).collect()
    };
    let (l, g) = (probs(good), probs(bad));
    let draw = |rng: &mut SplitMix64| {
        let mut r = rng.next_f64();
        for (i, p) in l.iter().enumerate() {
            if r < *p {
                return i;
            }
            r -= p;
        }
        k - 1
    };
    let best = (0..candidates.max(1))
        .map(|_| draw(rng))
        .reduce(|x, y| if l[y] / g[y] > l[x] / g[x] { y } else { x })
        .unwrap_or(0);
    Value::Cat(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parzen_density_integrates_to_one_over_its_range() {
        let p = Parzen::new(&[0.1, 0.15, 0.9], 0.0, 1.0);
        let n = 20_000;
        let integral: f64 = (0..n)
            .map(|i| p.log_density((i as f64 + 0.5) / n as f64).exp() / n as f64)
            .sum();
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
        // Densest where the points cluster.
        assert!(p.log_density(0.12) > p.log_density(0.5));
    }
}
