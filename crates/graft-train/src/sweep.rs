//! A sweep: every head × learning rate, trained in parallel (one head per core), best picked by
//! validation macro-F1.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::head::HeadSpec;
use crate::trainer::{train_head, TrainConfig, TrainOutcome};
use crate::TrainError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepConfig {
    pub heads: Vec<HeadSpec>,
    pub lrs: Vec<f32>,
    /// Settings shared by every run (its `head` and `lr` are replaced per run).
    pub base: TrainConfig,
    /// Per head, the rate the learning-rate range test found (`--lr auto`), tried instead of
    /// `lrs`; `None` for a head without one, and empty when every head tries every rate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub found_lrs: Vec<Option<f32>>,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig {
            heads: vec![
                HeadSpec::Linear,
                HeadSpec::DEFAULT_MLP,
                HeadSpec::Mlp {
                    hidden: 512,
                    dropout: 0.5,
                },
            ],
            lrs: vec![3e-4, 1e-3, 3e-3],
            base: TrainConfig::default(),
            found_lrs: Vec::new(),
        }
    }
}

impl SweepConfig {
    /// The run configurations, heads outer, learning rates inner (a head's found rate alone
    /// when it has one).
    pub fn runs(&self) -> Vec<TrainConfig> {
        self.heads
            .iter()
            .enumerate()
            .flat_map(|(i, &head)| {
                let lrs = match self.found_lrs.get(i).copied().flatten() {
                    Some(lr) => vec![lr],
                    None => self.lrs.clone(),
                };
                lrs.into_iter().map(move |lr| TrainConfig {
                    head,
                    lr,
                    ..self.base.clone()
                })
            })
            .collect()
    }

    /// Run the learning-rate range test for every pooled head with the base settings and keep
    /// the rate `rule` reads off its curve in `found_lrs` (attention heads, and curves without
    /// a suggestion, keep `lrs`).
    pub fn find_lrs(&mut self, data: SweepData<'_>, rule: crate::lr_find::Rule) {
        let test = crate::lr_find::RangeTest::default();
        self.found_lrs = self
            .heads
            .par_iter()
            .map(|&head| {
                if head.spatial() {
                    return None;
                }
                let cfg = TrainConfig {
                    head,
                    ..self.base.clone()
                };
                crate::lr_find::range_test(data.pooled, &cfg, &test).suggestion(rule)
            })
            .collect();
    }
}

#[derive(Debug, Clone)]
pub struct SweepEntry {
    pub config: TrainConfig,
    pub outcome: TrainOutcome,
}

/// The rows a sweep trains on: pooled features, and the same images' feature maps when a
/// head needs them (same rows, splits and labels).
#[derive(Debug, Clone, Copy)]
pub struct SweepData<'a> {
    pub pooled: &'a Dataset,
    pub spatial: Option<&'a Dataset>,
}

impl<'a> SweepData<'a> {
    pub fn pooled(ds: &'a Dataset) -> Self {
        SweepData {
            pooled: ds,
            spatial: None,
        }
    }

    /// The dataset `head` reads.
    pub fn for_head(&self, head: &HeadSpec) -> Result<&'a Dataset, TrainError> {
        if head.spatial() {
            self.spatial
                .ok_or_else(|| TrainError::NeedsSpatial(head.to_string()))
        } else {
            Ok(self.pooled)
        }
    }
}

/// Train every configuration; `done` is called as each finishes (from worker threads).
/// Results come back in configuration order, whatever order they finished in.
pub fn run_sweep(
    data: SweepData<'_>,
    cfg: &SweepConfig,
    done: &(dyn Fn(&SweepEntry) + Sync),
) -> Result<Vec<SweepEntry>, TrainError> {
    let runs = cfg.runs();
    // Every head has its rows before any training starts.
    for r in &runs {
        data.for_head(&r.head)?;
    }
    // Longest first (largest heads), so the last core is not left with a big head alone.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost(&runs[i].head, data.pooled.dim)));
    let mut done_runs: Vec<(usize, SweepEntry)> = order
        .into_par_iter()
        .with_max_len(1)
        .filter_map(|i| {
            let config = runs[i].clone();
            let ds = data.for_head(&config.head).ok()?;
            let outcome = train_head(ds, &config);
            let entry = SweepEntry { config, outcome };
            done(&entry);
            Some((i, entry))
        })
        .collect();
    done_runs.sort_by_key(|(i, _)| *i);
    Ok(done_runs.into_iter().map(|(_, e)| e).collect())
}

/// Multiply-adds per row of a head's first layer: what its training time scales with.
fn cost(head: &HeadSpec, dim: usize) -> usize {
    match head {
        HeadSpec::Linear => dim,
        HeadSpec::Mlp { hidden, .. } => dim * hidden,
        // Four passes over every location's channels (scores, pooling and their gradients).
        HeadSpec::Attention => 4 * dim,
    }
}

/// Index of the best entry: highest val macro-F1, then val accuracy, then the earlier one.
pub fn best(entries: &[SweepEntry]) -> Option<usize> {
    (0..entries.len()).reduce(|a, b| {
        let (x, y) = (&entries[a].outcome, &entries[b].outcome);
        if (y.val_macro_f1, y.val_acc) > (x.val_macro_f1, x.val_acc) {
            b
        } else {
            a
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trainer::tests_support::blobs;

    #[test]
    fn sweep_runs_every_config_in_order_and_picks_the_best() {
        let ds = blobs(&[80, 80, 80], 1.2, 3);
        let cfg = SweepConfig {
            heads: vec![HeadSpec::Linear, HeadSpec::DEFAULT_MLP],
            lrs: vec![1e-5, 3e-3],
            base: TrainConfig {
                epochs: 4,
                batch: 32,
                ..TrainConfig::default()
            },
            found_lrs: Vec::new(),
        };
        let count = std::sync::atomic::AtomicUsize::new(0);
        let entries = run_sweep(SweepData::pooled(&ds), &cfg, &|_| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .expect("sweep");
        assert_eq!(count.into_inner(), 4);
        let order: Vec<_> = entries
            .iter()
            .map(|e| (e.config.head, e.config.lr))
            .collect();
        assert_eq!(order[0], (HeadSpec::Linear, 1e-5));
        assert_eq!(order[3], (HeadSpec::DEFAULT_MLP, 3e-3));
        let b = best(&entries).expect("non-empty");
        // A learning rate of 1e-5 for 4 epochs barely moves: never the best.
        assert!((entries[b].config.lr - 3e-3).abs() < 1e-9);
        for e in &entries {
            assert!(e.outcome.val_macro_f1 <= entries[b].outcome.val_macro_f1);
        }
    }

    #[test]
    fn found_rates_replace_the_list_for_their_heads_only() {
        let ds = blobs(&[80, 80, 80], 1.2, 3);
        let mut cfg = SweepConfig {
            heads: vec![HeadSpec::Linear, HeadSpec::DEFAULT_MLP, HeadSpec::Attention],
            lrs: vec![1e-4, 1e-3],
            base: TrainConfig {
                batch: 32,
                ..TrainConfig::default()
            },
            found_lrs: Vec::new(),
        };
        assert_eq!(cfg.runs().len(), 6);
        cfg.find_lrs(SweepData::pooled(&ds), crate::lr_find::Rule::Steepest);
        let found: Vec<f32> = cfg.found_lrs.iter().flatten().copied().collect();
        assert_eq!(found.len(), 2, "{:?}", cfg.found_lrs);
        assert!(found.iter().all(|lr| (1e-6..1.0).contains(lr)), "{found:?}");
        assert_eq!(cfg.found_lrs[2], None, "attention keeps the list");
        let runs = cfg.runs();
        assert_eq!(runs.len(), 4);
        assert_eq!((runs[0].head, runs[0].lr), (HeadSpec::Linear, found[0]));
        assert_eq!(
            (runs[1].head, runs[1].lr),
            (HeadSpec::DEFAULT_MLP, found[1])
        );
        assert!(runs[2..].iter().all(|r| r.head == HeadSpec::Attention));
    }

    /// The blobs as feature maps: each image's vector sits at one of 4 locations (by row), the
    /// other locations hold noise; only a head that finds the location can classify well.
    fn blob_maps(ds: &Dataset, seed: u64) -> Dataset {
        use graft_data::rng::SplitMix64;
        use graft_data::scan::Split;
        let (c, p) = (ds.dim, 4);
        let n = ds.y.len();
        let mut rng = SplitMix64::new(seed);
        let mut x = Vec::with_capacity(n * c * p);
        for i in 0..n {
            for ch in 0..c {
                for loc in 0..p {
                    x.push(if loc == i % p {
                        ds.x[i * c + ch]
                    } else {
                        rng.next_f64() as f32 - 0.5
                    });
                }
            }
        }
        let mut splits = vec![Some(Split::Train); n];
        ds.val.iter().for_each(|&i| splits[i] = Some(Split::Val));
        ds.test.iter().for_each(|&i| splits[i] = Some(Split::Test));
        Dataset::new_spatial(c, p, x, ds.y.clone(), &splits, ds.classes.clone(), 0.2, 7)
            .expect("maps")
    }

    #[test]
    fn attention_trains_on_maps_beside_pooled_heads_and_needs_them() {
        let ds = blob_maps(&blobs(&[80, 80, 80], 0.8, 4), 9);
        let pooled = blobs(&[80, 80, 80], 0.8, 4);
        assert_eq!(
            (ds.train.clone(), ds.val.clone()),
            (pooled.train.clone(), pooled.val.clone())
        );
        let cfg = SweepConfig {
            heads: vec![HeadSpec::Linear, HeadSpec::Attention],
            lrs: vec![3e-2],
            base: TrainConfig {
                epochs: 30,
                batch: 32,
                ..TrainConfig::default()
            },
            found_lrs: Vec::new(),
        };
        let data = SweepData {
            pooled: &pooled,
            spatial: Some(&ds),
        };
        let entries = run_sweep(data, &cfg, &|_| {}).expect("sweep");
        let attn = &entries[1];
        assert_eq!(attn.config.head, HeadSpec::Attention);
        assert!(
            attn.outcome.val_acc > 0.85,
            "attention val acc {}",
            attn.outcome.val_acc
        );
        // The head reads 8 channels; the model file records the maps' 4 locations separately.
        assert_eq!(attn.outcome.head.inputs(), 8);
        let err = run_sweep(SweepData::pooled(&pooled), &cfg, &|_| {}).expect_err("no maps");
        assert!(err.to_string().contains("--spatial"), "{err}");
    }
}
