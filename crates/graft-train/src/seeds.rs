//! Repeat one configuration with several seeds and summarise a metric as mean ± a 95%
//! confidence interval (Student's t), so a difference between heads can be told from noise.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::trainer::{evaluate, train_head, TrainConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanCi {
    pub mean: f64,
    /// Half-width of the 95% interval (0 for a single value).
    pub ci95: f64,
    pub values: Vec<f64>,
}

/// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

impl MeanCi {
    pub fn of(values: Vec<f64>) -> MeanCi {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let ci95 = if n < 2 {
            0.0
        } else {
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let t = T975.get(n - 2).copied().unwrap_or(1.96);
            t * (var / n as f64).sqrt()
        };
        MeanCi { mean, ci95, values }
    }
}

/// A paired comparison: the mean of `b - a` over matched seeds, its 95% interval, and the
/// two-sided p-value of Student's paired t-test (is the mean difference zero?).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedT {
    pub diff: MeanCi,
    /// 1 when every difference is zero; 0 when all are equal and non-zero (no spread at all).
    pub p_value: f64,
}

impl PairedT {
    /// `a` and `b` matched by position (the same seed); extra values of the longer are ignored.
    pub fn of(a: &[f64], b: &[f64]) -> PairedT {
        use statrs::distribution::{ContinuousCDF, StudentsT};
        let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
        let diff = MeanCi::of(d);
        let n = diff.values.len();
        let sd = if n < 2 {
            0.0
        } else {
            (diff
                .values
                .iter()
                .map(|v| (v - diff.mean).powi(2))
                .sum::<f64>()
                / (n - 1) as f64)
                .sqrt()
        };
        let p_value = if n < 2 {
            1.0
        } else if sd == 0.0 {
            if diff.mean == 0.0 {
                1.0
            } else {
                0.0
            }
        } else {
            let t = diff.mean / (sd / (n as f64).sqrt());
            StudentsT::new(0.0, 1.0, (n - 1) as f64)
                .map(|dist| 2.0 * (1.0 - dist.cdf(t.abs())))
                .unwrap_or(1.0)
        };
        PairedT { diff, p_value }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedReport {
    pub seeds: Vec<u64>,
    pub split: String,
    pub accuracy: MeanCi,
    pub macro_f1: MeanCi,
}

/// Train `cfg` once per seed (in parallel) and evaluate each on test (val if there is none).
pub fn repeat_seeds(ds: &Dataset, cfg: &TrainConfig, seeds: &[u64]) -> SeedReport {
    let (rows, split) = if ds.test.is_empty() {
        (&ds.val, "val")
    } else {
        (&ds.test, "test")
    };
    let results: Vec<(f64, f64)> = seeds
        .par_iter()
        .with_max_len(1)
        .map(|&seed| {
            let out = train_head(
                ds,
                &TrainConfig {
                    seed,
                    ..cfg.clone()
                },
            );
            let c = evaluate(&out.head, ds, rows);
            (c.accuracy(), c.macro_f1())
        })
        .collect();
    SeedReport {
        seeds: seeds.to_vec(),
        split: split.to_string(),
        accuracy: MeanCi::of(results.iter().map(|r| r.0).collect()),
        macro_f1: MeanCi::of(results.iter().map(|r| r.1).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_interval_by_hand() {
        // mean 2, sample sd 1, n 3: half-width 4.303 · 1/√3.
        let m = MeanCi::of(vec![1.0, 2.0, 3.0]);
        assert!((m.mean - 2.0).abs() < 1e-12);
        assert!((m.ci95 - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(MeanCi::of(vec![0.5]).ci95, 0.0);
    }

    #[test]
    fn paired_t_by_hand() {
        // Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1/√3) = 3.464 with 2 degrees of freedom;
        // two-sided p = 0.0742 (t table: 2.920 at 0.10, 4.303 at 0.05).
        let p = PairedT::of(&[0.0, 0.0, 0.0], &[1.0, 2.0, 3.0]);
        assert!((p.diff.mean - 2.0).abs() < 1e-12);
        assert!((p.p_value - 0.0742).abs() < 5e-4, "{}", p.p_value);
        assert_eq!(PairedT::of(&[1.0, 2.0], &[1.0, 2.0]).p_value, 1.0);
        assert_eq!(PairedT::of(&[1.0, 2.0], &[1.5, 2.5]).p_value, 0.0);
        assert_eq!(PairedT::of(&[1.0], &[3.0]).p_value, 1.0);
    }
}
