//! Training one head: minibatch AdamW with warmup + cosine, label smoothing, class balance,
//! gradient clipping, early stopping on validation macro-F1, best epoch kept.

use std::time::Instant;

use graft_data::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::data::{Balance, Dataset};
use crate::head::{Activations, Head, HeadSpec};
use crate::loss::cross_entropy;
use crate::metrics::{argmax_rows, Confusion};
use crate::optim::{clip_grad_norm, cosine_with_warmup, AdamW};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub head: HeadSpec,
    pub lr: f32,
    pub epochs: usize,
    pub batch: usize,
    pub weight_decay: f32,
    pub label_smoothing: f32,
    pub balance: Balance,
    /// Largest global gradient norm (0 = no clipping).
    pub clip: f32,
    /// Stop after this many epochs without a better validation macro-F1 (0 = never).
    pub patience: usize,
    /// Share of all steps spent warming the learning rate up.
    pub warmup: f32,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            head: HeadSpec::Linear,
            lr: 1e-3,
            epochs: 10,
            batch: 256,
            weight_decay: 1e-4,
            label_smoothing: 0.1,
            balance: Balance::Auto,
            clip: 5.0,
            patience: 4,
            warmup: 0.05,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f32,
    pub val_acc: f64,
    pub val_macro_f1: f64,
    pub lr: f32,
    pub seconds: f64,
}

#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Weights of the best epoch.
    pub head: Head,
    pub best_epoch: usize,
    pub val_acc: f64,
    pub val_macro_f1: f64,
    pub history: Vec<EpochRecord>,
    pub seconds: f64,
    pub stopped_early: bool,
    /// The balance actually used (`Auto` resolved).
    pub balance: Balance,
}

/// Validation accuracy and macro-F1 of `head`.
pub fn evaluate(head: &Head, ds: &Dataset, rows: &[usize]) -> Confusion {
    let (x, y) = ds.gather(rows);
    let probs = head.predict_proba(&x, rows.len());
    Confusion::from_pairs(ds.classes.len(), &y, &argmax_rows(&probs, ds.classes.len()))
}

pub fn train_head(ds: &Dataset, cfg: &TrainConfig) -> TrainOutcome {
    let started = Instant::now();
    let mut rng = SplitMix64::new(cfg.seed);
    let balance = ds.resolve(cfg.balance);
    let mut learner = Learner::new(ds, cfg, balance, &mut rng);
    let sampling_cdf = (balance == Balance::Sampling).then(|| {
        let w = ds.class_weights();
        let mut acc = 0.0f64;
        ds.train
            .iter()
            .map(|&i| {
                acc += f64::from(w[ds.y[i]]);
                acc
            })
            .collect::<Vec<f64>>()
    });

    let n = ds.train.len();
    let batch = cfg.batch.clamp(1, n);
    let steps_per_epoch = n.div_ceil(batch);
    let total = steps_per_epoch * cfg.epochs.max(1);
    let warmup = ((total as f32 * cfg.warmup) as usize).max(1);
    let mut step = 0;

    let mut best = (learner.head.clone(), 0usize, -1.0f64, 0.0f64);
    let mut history = Vec::new();
    let mut stale = 0;
    let mut stopped_early = false;
    let (mut xb, mut yb) = (
        Vec::with_capacity(batch * ds.dim),
        Vec::with_capacity(batch),
    );
    let mut order = ds.train.clone();

    for epoch in 1..=cfg.epochs.max(1) {
        let t = Instant::now();
        match &sampling_cdf {
            Some(cdf) => {
                let total_w = cdf.last().copied().unwrap_or(1.0);
                for o in order.iter_mut() {
                    let r = rng.next_f64() * total_w;
                    let k = cdf.partition_point(|&v| v <= r).min(n - 1);
                    *o = ds.train[k];
                }
            }
            None => rng.shuffle(&mut order),
        }
        let mut loss_sum = 0.0f64;
        let mut lr = cfg.lr;
        for rows in order.chunks(batch) {
            xb.clear();
            yb.clear();
            for &i in rows {
                xb.extend_from_slice(&ds.x[i * ds.dim..(i + 1) * ds.dim]);
                yb.push(ds.y[i]);
            }
            lr = cosine_with_warmup(cfg.lr, step, warmup, total);
            let loss = learner.step(&xb, &yb, lr, &mut rng);
            loss_sum += f64::from(loss) * rows.len() as f64;
            step += 1;
        }
        let conf = evaluate(&learner.head, ds, &ds.val);
        let (acc, f1) = (conf.accuracy(), conf.macro_f1());
        history.push(EpochRecord {
            epoch,
            train_loss: (loss_sum / n as f64) as f32,
            val_acc: acc,
            val_macro_f1: f1,
            lr,
            seconds: t.elapsed().as_secs_f64(),
        });
        tracing::debug!(head = %cfg.head, lr = cfg.lr, epoch, f1, acc, "epoch");
        if f1 > best.2 {
            best = (learner.head.clone(), epoch, f1, acc);
            stale = 0;
        } else {
            stale += 1;
            if cfg.patience > 0 && stale >= cfg.patience {
                stopped_early = epoch < cfg.epochs;
                break;
            }
        }
    }
    TrainOutcome {
        head: best.0,
        best_epoch: best.1,
        val_macro_f1: best.2.max(0.0),
        val_acc: best.3,
        history,
        seconds: started.elapsed().as_secs_f64(),
        stopped_early,
        balance,
    }
}

/// A fresh head with its optimiser and the buffers a minibatch step reuses: what
/// [`train_head`] and the learning-rate range test both drive.
pub(crate) struct Learner {
    pub head: Head,
    opt: AdamW,
    grad: Head,
    act: Activations,
    dlogits: Vec<f32>,
    /// Per-class loss weights, when the balance is by weights.
    weights: Option<Vec<f32>>,
    classes: usize,
    label_smoothing: f32,
    clip: f32,
}

impl Learner {
    /// `cfg`'s head for `ds`, drawn from `rng`, with `balance` (already resolved) applied.
    pub(crate) fn new(
        ds: &Dataset,
        cfg: &TrainConfig,
        balance: Balance,
        rng: &mut SplitMix64,
    ) -> Learner {
        let classes = ds.classes.len();
        // An attention head reads each location's channels; the others the whole row.
        let inputs = if cfg.head.spatial() {
            ds.dim / ds.locations.max(1)
        } else {
            ds.dim
        };
        let head = Head::new(cfg.head, inputs, classes, rng);
        Learner {
            opt: AdamW::new(&head, cfg.weight_decay),
            grad: head.zeros_like(),
            head,
            act: Activations::default(),
            dlogits: Vec::new(),
            weights: (balance == Balance::Weights).then(|| ds.class_weights()),
            classes,
            label_smoothing: cfg.label_smoothing,
            clip: cfg.clip,
        }
    }

    /// One AdamW step at rate `lr` on the rows `xb` with labels `yb` (gradient clipped);
    /// returns the minibatch's loss.
    pub(crate) fn step(&mut self, xb: &[f32], yb: &[usize], lr: f32, rng: &mut SplitMix64) -> f32 {
        let n = yb.len();
        self.head.forward(xb, n, Some(rng), &mut self.act);
        let loss = cross_entropy(
            &self.act.logits,
            yb,
            self.classes,
            self.label_smoothing,
            self.weights.as_deref(),
            &mut self.dlogits,
        );
        self.head
            .backward(xb, n, &self.act, &self.dlogits, &mut self.grad);
        clip_grad_norm(&mut self.grad, self.clip);
        self.opt.step(&mut self.head, &self.grad, lr);
        loss
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use graft_data::scan::Split;

    /// Gaussian blobs: class k centred at 3·e_k in 8 dimensions, with `counts[k]` train rows
    /// and 200 test rows each.
    pub(crate) fn blobs(counts: &[usize], spread: f32, seed: u64) -> Dataset {
        let dim = 8;
        let mut rng = SplitMix64::new(seed);
        let mut gauss = move || {
            let (u, v) = (rng.next_f64().max(1e-12), rng.next_f64());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        };
        let (mut x, mut y, mut s) = (Vec::new(), Vec::new(), Vec::new());
        for (k, &count) in counts.iter().enumerate() {
            for j in 0..count + 200 {
                for d in 0..dim {
                    let centre = if d == k { 3.0 } else { 0.0 };
                    x.push(centre + spread * gauss());
                }
                y.push(k);
                s.push(Some(if j < count { Split::Train } else { Split::Test }));
            }
        }
        let classes = (0..counts.len()).map(|k| format!("c{k}")).collect();
        Dataset::new(dim, x, y, &s, classes, 0.2, 7).expect("dataset")
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::blobs;
    use super::*;

    #[test]
    fn linear_and_mlp_learn_separable_blobs_deterministically() {
        let ds = blobs(&[150, 150, 150], 0.7, 1);
        for head in [HeadSpec::Linear, HeadSpec::DEFAULT_MLP] {
            let cfg = TrainConfig {
                head,
                lr: 3e-2,
                epochs: 15,
                batch: 32,
                ..TrainConfig::default()
            };
            let a = train_head(&ds, &cfg);
            let test = evaluate(&a.head, &ds, &ds.test);
            assert!(test.accuracy() > 0.95, "{head}: {}", test.accuracy());
            assert!(a.history[0].train_loss > a.history.last().map_or(0.0, |h| h.train_loss));
            let b = train_head(&ds, &cfg);
            assert_eq!(a.head, b.head, "same seed, same weights");
        }
    }

    /// 35:1 imbalance with overlapping classes: the minority class is mostly swallowed without
    /// balancing; class weights and balanced sampling each raise its recall.
    #[test]
    fn balancing_raises_minority_recall_at_35_to_1() {
        let ds = blobs(&[1050, 30], 1.6, 5);
        let recall = |balance| {
            let cfg = TrainConfig {
                head: HeadSpec::Linear,
                lr: 3e-3,
                epochs: 10,
                batch: 64,
                balance,
                label_smoothing: 0.0,
                patience: 0,
                ..TrainConfig::default()
            };
            let out = train_head(&ds, &cfg);
            evaluate(&out.head, &ds, &ds.test).per_class()[1].recall
        };
        let none = recall(Balance::None);
        let weights = recall(Balance::Weights);
        let sampling = recall(Balance::Sampling);
        println!("minority recall: none {none:.3}, weights {weights:.3}, sampling {sampling:.3}");
        assert!(weights > none + 0.1, "weights {weights} vs none {none}");
        assert!(sampling > none + 0.1, "sampling {sampling} vs none {none}");
        assert_eq!(ds.resolve(Balance::Auto), Balance::Weights);
    }

    #[test]
    fn early_stopping_keeps_the_best_epoch() {
        let ds = blobs(&[60, 60], 2.5, 9);
        let cfg = TrainConfig {
            head: HeadSpec::Mlp {
                hidden: 64,
                dropout: 0.0,
            },
            lr: 5e-2,
            epochs: 40,
            batch: 16,
            patience: 3,
            ..TrainConfig::default()
        };
        let out = train_head(&ds, &cfg);
        let best = out
            .history
            .iter()
            .map(|h| h.val_macro_f1)
            .fold(f64::MIN, f64::max);
        assert_eq!(out.val_macro_f1, best);
        assert_eq!(out.history[out.best_epoch - 1].val_macro_f1, best);
        assert_eq!(evaluate(&out.head, &ds, &ds.val).macro_f1(), best);
        if out.stopped_early {
            assert_eq!(out.history.len(), out.best_epoch + 3);
        }
    }
}
