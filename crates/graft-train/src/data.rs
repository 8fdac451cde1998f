//! Feature rows split into train / val / test, standardised, with class-balance options.

use graft_data::rng::SplitMix64;
use graft_data::scan::Split;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// How training counters class imbalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Balance {
    /// Class weights when the largest train class is over 1.5× the smallest, else none.
    #[default]
    Auto,
    /// Loss weight n / (classes × count) per class (scikit-learn's "balanced").
    Weights,
    /// Each epoch draws rows with probability ∝ 1 / class count (with replacement).
    Sampling,
    None,
}

impl std::str::FromStr for Balance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Balance::Auto),
            "weights" => Ok(Balance::Weights),
            "sampling" => Ok(Balance::Sampling),
            "none" => Ok(Balance::None),
            _ => Err(format!("{s:?}: use auto, weights, sampling or none")),
        }
    }
}

impl std::fmt::Display for Balance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Balance::Auto => "auto",
            Balance::Weights => "weights",
            Balance::Sampling => "sampling",
            Balance::None => "none",
        })
    }
}

/// Per-feature mean and standard deviation of the training rows. A spatial row (a feature map,
/// `C × P` channel-major) is standardised per channel, over all its locations: the statistics
/// then have the encoder's feature dimension whatever the map size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Standardizer {
    pub fn fit(x: &[f32], dim: usize, rows: &[usize]) -> Standardizer {
        Self::fit_spatial(x, dim, 1, rows)
    }

    /// Statistics per channel of rows holding `channels × locations` values.
    pub fn fit_spatial(
        x: &[f32],
        channels: usize,
        locations: usize,
        rows: &[usize],
    ) -> Standardizer {
        let row_len = channels * locations;
        let mut sum = vec![0f64; channels];
        let mut sq = vec![0f64; channels];
        for &r in rows {
            let row = &x[r * row_len..(r + 1) * row_len];
            for (k, plane) in row.chunks_exact(locations).enumerate() {
                for &v in plane {
                    sum[k] += f64::from(v);
                    sq[k] += f64::from(v) * f64::from(v);
                }
            }
        }
        let n = (rows.len() * locations).max(1) as f64;
        let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
        let std = sq
            .iter()
            .zip(&sum)
            .map(|(q, s)| (((q / n) - (s / n).powi(2)).max(0.0).sqrt() as f32).max(1e-6))
            .collect();
        Standardizer { mean, std }
    }

    pub fn apply(&self, x: &mut [f32]) {
        self.apply_spatial(x, 1);
    }

    /// Standardise rows of `mean.len() × locations` values, channel-major.
    pub fn apply_spatial(&self, x: &mut [f32], locations: usize) {
        let locations = locations.max(1);
        let channels = self.mean.len();
        for row in x.chunks_exact_mut(channels * locations) {
            for ((plane, m), s) in row
                .chunks_exact_mut(locations)
                .zip(&self.mean)
                .zip(&self.std)
            {
                for v in plane {
                    *v = (*v - m) / s;
                }
            }
        }
    }
}

/// Standardised feature rows with labels and the row indices of each split.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Values per row: the feature dimension, or channels × locations for feature maps.
    pub dim: usize,
    /// Locations per row: 1 for pooled features, H·W for feature maps (`C × P`, channel-major).
    pub locations: usize,
    pub classes: Vec<String>,
    /// `n × dim`, standardised with [`Dataset::standardizer`].
    pub x: Vec<f32>,
    pub y: Vec<usize>,
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    pub standardizer: Standardizer,
    /// True when val rows were held out of train here (the data had no val split).
    pub val_held_out: bool,
}

impl Dataset {
    /// Rows with their split; rows without one count as train. When there is no val row,
    /// `val_fraction` of every train class (at least one image of classes with ≥ 2) is held
    /// out as val, chosen with `seed`.
    pub fn new(
        dim: usize,
        x: Vec<f32>,
        y: Vec<usize>,
        splits: &[Option<Split>],
        classes: Vec<String>,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Dataset, TrainError> {
        Self::new_spatial(dim, 1, x, y, splits, classes, val_fraction, seed)
    }

    /// [`Dataset::new`] for feature maps: rows of `channels × locations` values; the val
    /// hold-out is the same as for pooled rows of the same images and seed.
    #[allow(clippy::too_many_arguments)]
    pub fn new_spatial(
        channels: usize,
        locations: usize,
        mut x: Vec<f32>,
        y: Vec<usize>,
        splits: &[Option<Split>],
        classes: Vec<String>,
        val_fraction: f64,
        seed: u64,
    ) -> Result<Dataset, TrainError> {
        let locations = locations.max(1);
        let dim = channels * locations;
        let SplitRows {
            train,
            val,
            test,
            val_held_out,
        } = split_rows(&y, splits, classes.len(), val_fraction, seed)?;
        let standardizer = Standardizer::fit_spatial(&x, channels, locations, &train);
        standardizer.apply_spatial(&mut x, locations);
        Ok(Dataset {
            dim,
            locations,
            classes,
            x,
            y,
            train,
            val,
            test,
            standardizer,
            val_held_out,
        })
    }

    /// Rows `idx` gathered into one contiguous block, with their labels.
    pub fn gather(&self, idx: &[usize]) -> (Vec<f32>, Vec<usize>) {
        let mut x = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            x.extend_from_slice(&self.x[i * self.dim..(i + 1) * self.dim]);
        }
        (x, idx.iter().map(|&i| self.y[i]).collect())
    }

    /// Train images per class.
    pub fn train_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes.len()];
        for &i in &self.train {
            c[self.y[i]] += 1;
        }
        c
    }

    /// Largest over smallest non-empty train class.
    pub fn imbalance(&self) -> f64 {
        let c = self.train_counts();
        let max = c.iter().copied().max().unwrap_or(0);
        let min = c.iter().copied().filter(|&v| v > 0).min().unwrap_or(1);
        max as f64 / min as f64
    }

    /// `Auto` made concrete for this data.
    pub fn resolve(&self, balance: Balance) -> Balance {
        match balance {
            Balance::Auto if self.imbalance() > 1.5 => Balance::Weights,
            Balance::Auto => Balance::None,
            b => b,
        }
    }

    /// n / (classes × count) for each class with train rows (0 for the others).
    pub fn class_weights(&self) -> Vec<f32> {
        let c = self.train_counts();
        let present = c.iter().filter(|&&v| v > 0).count().max(1);
        let n = self.train.len() as f32;
        c.iter()
            .map(|&v| {
                if v > 0 {
                    n / (present as f32 * v as f32)
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// Row indices of each split. Rows without a split are training rows; when there are no
/// val rows, `val_fraction` of each class's training rows (at least one, seeded) are held
/// out as val — the same rows for the same labels and seed, whoever asks (head training,
/// fine-tuning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitRows {
    pub train: Vec<usize>,
    pub val: Vec<usize>,
    pub test: Vec<usize>,
    pub val_held_out: bool,
}

pub fn split_rows(
    y: &[usize],
    splits: &[Option<Split>],
    classes: usize,
    val_fraction: f64,
    seed: u64,
) -> Result<SplitRows, TrainError> {
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for (i, s) in splits.iter().enumerate() {
        match s {
            Some(Split::Val) => val.push(i),
            Some(Split::Test) => test.push(i),
            _ => train.push(i),
        }
    }
    if train.is_empty() {
        return Err(TrainError::NoTrainRows);
    }
    let mut val_held_out = false;
    if val.is_empty() {
        let mut rng = SplitMix64::new(seed ^ 0x7661_6c5f_686f_6c64);
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
        for &i in &train {
            by_class[y[i]].push(i);
        }
        let mut keep = Vec::new();
        for mut rows in by_class {
            rng.shuffle(&mut rows);
            let take = if rows.len() >= 2 {
                ((rows.len() as f64 * val_fraction).round() as usize).clamp(1, rows.len() - 1)
            } else {
                0
            };
            val.extend_from_slice(&rows[..take]);
            keep.extend_from_slice(&rows[take..]);
        }
        if val.is_empty() {
            return Err(TrainError::NoValRows);
        }
        keep.sort_unstable();
        val.sort_unstable();
        train = keep;
        val_held_out = true;
    }
    Ok(SplitRows {
        train,
        val,
        test,
        val_held_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_out_val_per_class_and_standardises_on_train() {
        let n = 40;
        let x: Vec<f32> = (0..n * 2).map(|i| i as f32).collect();
        let y: Vec<usize> = (0..n).map(|i| usize::from(i >= 30)).collect();
        let splits = vec![Some(Split::Train); n];
        let ds =
            Dataset::new(2, x, y, &splits, vec!["a".into(), "b".into()], 0.2, 1).expect("dataset");
        assert!(ds.val_held_out);
        assert_eq!(ds.val.len(), 6 + 2);
        assert_eq!(ds.train.len() + ds.val.len(), n);
        assert!(ds.val.iter().all(|v| !ds.train.contains(v)));
        let (tx, _) = ds.gather(&ds.train);
        let mean0: f32 = tx.chunks(2).map(|r| r[0]).sum::<f32>() / ds.train.len() as f32;
        assert!(mean0.abs() < 1e-4);
        assert!((ds.imbalance() - 3.0).abs() < 0.2);
        assert_eq!(ds.resolve(Balance::Auto), Balance::Weights);
        let w = ds.class_weights();
        assert!(w[1] > w[0]);
    }

    #[test]
    fn no_train_rows_is_an_error() {
        let r = Dataset::new(
            1,
            vec![0.0],
            vec![0],
            &[Some(Split::Test)],
            vec!["a".into()],
            0.1,
            0,
        );
        assert!(matches!(r, Err(TrainError::NoTrainRows)));
    }
}
