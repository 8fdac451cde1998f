//! A sweep: every head × learning rate, trained in parallel (one head per core), best picked by
//! validation macro-F1.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::head::HeadSpec;
use crate::trainer::{train_head, TrainConfig, TrainOutcome};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepConfig {
    pub heads: Vec<HeadSpec>,
    pub lrs: Vec<f32>,
    /// Settings shared by every run (its `head` and `lr` are replaced per run).
    pub base: TrainConfig,
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
        }
    }
}

impl SweepConfig {
    /// The run configurations, heads outer, learning rates inner.
    pub fn runs(&self) -> Vec<TrainConfig> {
        self.heads
            .iter()
            .flat_map(|&head| {
                self.lrs.iter().map(move |&lr| TrainConfig {
                    head,
                    lr,
                    ..self.base.clone()
                })
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct SweepEntry {
    pub config: TrainConfig,
    pub outcome: TrainOutcome,
}

/// Train every configuration; `done` is called as each finishes (from worker threads).
/// Results come back in configuration order, whatever order they finished in.
pub fn run_sweep(
    ds: &Dataset,
    cfg: &SweepConfig,
    done: &(dyn Fn(&SweepEntry) + Sync),
) -> Vec<SweepEntry> {
    let runs = cfg.runs();
    // Longest first (largest heads), so the last core is not left with a big head alone.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(cost(&runs[i].head, ds.dim)));
    let mut done_runs: Vec<(usize, SweepEntry)> = order
        .into_par_iter()
        .with_max_len(1)
        .map(|i| {
            let config = runs[i].clone();
            let outcome = train_head(ds, &config);
            let entry = SweepEntry { config, outcome };
            done(&entry);
            (i, entry)
        })
        .collect();
    done_runs.sort_by_key(|(i, _)| *i);
    done_runs.into_iter().map(|(_, e)| e).collect()
}

/// Multiply-adds per row of a head's first layer: what its training time scales with.
fn cost(head: &HeadSpec, dim: usize) -> usize {
    match head {
        HeadSpec::Linear => dim,
        HeadSpec::Mlp { hidden, .. } => dim * hidden,
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
        };
        let count = std::sync::atomic::AtomicUsize::new(0);
        let entries = run_sweep(&ds, &cfg, &|_| {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
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
}
