//! The stage loop: updates, evaluation, early stopping, rollback and checkpoints.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use graft_data::augment::Prefetch;
use graft_data::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use super::adamw::{clip_global_norm, AdamState};
use super::net::{Group, TopNet, Values};
use super::source::Source;
use super::state::{load, save, Buffers, State};
use super::FinetuneConfig;
use crate::loss::soft_cross_entropy;
use crate::metrics::{argmax_rows, Confusion};
use crate::optim::cosine_with_warmup;
use crate::TrainError;

pub const STAGE_NAMES: [&str; 3] = ["head", "top blocks + head", "all layers"];

/// Batches prepared ahead of the optimizer (augmentation overlaps training).
const PREFETCH_DEPTH: usize = 2;

/// One epoch's record (`finetune/history.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub stage: usize,
    pub epoch: usize,
    pub train_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    /// Training images per second in this epoch (forward, backward and update).
    #[serde(default)]
    pub images_per_second: f64,
}

/// How a stage ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    pub stage: usize,
    pub name: String,
    pub epochs_run: usize,
    pub stopped_early: bool,
    /// Best validation macro-F1 before the stage and within it.
    pub before_f1: f64,
    pub best_f1: f64,
    /// The stage did not beat what came before and its weights were discarded.
    pub rolled_back: bool,
}

/// What [`run`] reports as it goes.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// Validation macro-F1 of the starting weights (fresh runs only).
    Start {
        val_f1: f64,
    },
    StageStart {
        stage: usize,
        updates: usize,
        done: usize,
    },
    Update {
        stage: usize,
        done: usize,
        loss: f64,
        lr: f32,
    },
    Epoch(&'a EpochRow),
    Checkpoint {
        stage: usize,
        update: usize,
    },
    StageEnd(&'a StageReport),
}

/// Result of a finished fine-tune.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The best weights (after rollbacks).
    pub values: Values,
    pub start_f1: f64,
    pub best_f1: f64,
    pub history: Vec<EpochRow>,
    pub stages: Vec<StageReport>,
    pub config: FinetuneConfig,
    /// Whether this call continued from a checkpoint.
    pub resumed: bool,
}

impl Outcome {
    /// Whether the final weights changed blocks below the top cut (stage 3 was kept), so
    /// activations cached at the cut no longer describe them.
    pub fn changed_lower_blocks(&self) -> bool {
        self.stages.iter().any(|s| s.stage == 2 && !s.rolled_back)
    }
}

/// A stage's training and validation data.
#[derive(Clone)]
pub struct StageData {
    pub train: Arc<dyn Source>,
    pub val: Arc<dyn Source>,
}

/// Seed for data order or dropout from the run seed and counters.
fn derive(seed: u64, parts: &[u64]) -> u64 {
    let mut h = SplitMix64::new(seed).next_u64();
    for &p in parts {
        h = SplitMix64::new(h ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
    }
    h
}

pub(super) fn trainable(net: &TopNet, stage: usize) -> Vec<bool> {
    net.slots
        .iter()
        .map(|s| match s.group {
            Group::Head => true,
            Group::Block(b) => (stage == 1 && b >= net.top) || stage == 2,
        })
        .collect()
}

/// Peak learning rate of each slot in `stage`: the head at `lr`, each top block at
/// `layer_decay` times the one above, the blocks below the cut as one group one step further
/// down; times the stage's factor. Frozen slots get 0.
pub(super) fn rates(net: &TopNet, cfg: &FinetuneConfig, stage: usize) -> Vec<f32> {
    let last = net.slots.iter().filter_map(|s| match s.group {
        Group::Block(b) => Some(b),
        Group::Head => None,
    });
    let last = last.max().unwrap_or(0);
    let mask = trainable(net, stage);
    let f = cfg.stage_lr[stage];
    net.slots
        .iter()
        .zip(mask)
        .map(|(s, on)| match (on, s.group) {
            (false, _) => 0.0,
            (true, Group::Head) => cfg.lr * f,
            (true, Group::Block(b)) => {
                let depth = last + 1 - b.max(net.top) + usize::from(b < net.top);
                cfg.lr * f * cfg.layer_decay.powi(depth as i32)
            }
        })
        .collect()
}

/// Predicted class of every row of `data`.
pub fn predictions(
    net: &TopNet,
    values: &Values,
    data: &dyn Source,
    device: &Device,
) -> Result<Vec<usize>, TrainError> {
    const EVAL_BATCH: usize = 64;
    let frozen = vec![false; net.slots.len()];
    let mut pred = Vec::with_capacity(data.len());
    let idx: Vec<usize> = (0..data.len()).collect();
    for rows in idx.chunks(EVAL_BATCH) {
        let x = data.eval_batch(rows)?;
        let (logits, ..) = net.forward(values, &frozen, data.start(), &x, rows.len(), None, device);
        let l = logits
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| TrainError::Finetune(format!("reading logits: {e:?}")))?;
        pred.extend(argmax_rows(&l, net.classes));
    }
    Ok(pred)
}

/// Confusion of the net on all of `data`.
pub fn evaluate(
    net: &TopNet,
    values: &Values,
    data: &dyn Source,
    device: &Device,
) -> Result<Confusion, TrainError> {
    let pred = predictions(net, values, data, device)?;
    Ok(Confusion::from_pairs(net.classes, data.labels(), &pred))
}

/// Mean loss of a batch (`x`: inputs of block `start`, `targets`: `n × classes`) and its
/// gradient in `grads` (overwritten; zeros for frozen slots), computed in passes of
/// `cfg.micro_batch` rows whose gradients are summed with weights `pass size / n`: the same
/// as one pass over all rows. `dropout_seed(k)` seeds pass `k`'s dropout.
#[allow(clippy::too_many_arguments)]
pub fn batch_gradients(
    net: &TopNet,
    values: &Values,
    mask: &[bool],
    start: usize,
    x: &[f32],
    targets: &[f32],
    cfg: &FinetuneConfig,
    dropout_seed: &dyn Fn(usize) -> u64,
    device: &Device,
    grads: &mut [Vec<f32>],
) -> Result<f64, TrainError> {
    let c = net.classes;
    let n = targets.len() / c;
    let per = x.len() / n.max(1);
    grads.iter_mut().for_each(|g| g.fill(0.0));
    let mut loss = 0.0f64;
    let micro = cfg.micro_batch.max(1);
    for k in 0..n.div_ceil(micro) {
        let (a, z) = (k * micro, ((k + 1) * micro).min(n));
        let m = z - a;
        let (logits, tracked, deferred) = net.forward(
            values,
            mask,
            start,
            &x[a * per..z * per],
            m,
            Some(dropout_seed(k)),
            device,
        );
        let host = logits
            .clone()
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| TrainError::Finetune(format!("reading logits: {e:?}")))?;
        // dL/dlogits on the host, pushed back through the graph as the weights of a sum.
        let mut g = Vec::new();
        let l = soft_cross_entropy(
            &host,
            &targets[a * c..z * c],
            c,
            cfg.label_smoothing,
            &mut g,
        );
        let share = m as f32 / n as f32;
        loss += f64::from(l * share);
        g.iter_mut().for_each(|v| *v *= share);
        let gt = Tensor::<2>::from_data(TensorData::new(g, [m, c]), device);
        let back = (logits * gt).sum().backward();
        for (acc, t) in grads.iter_mut().zip(&tracked) {
            if let Some(grad) = t.as_ref().and_then(|t| t.grad(&back)) {
                let v = grad
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| TrainError::Finetune(format!("reading a gradient: {e:?}")))?;
                acc.iter_mut().zip(v).for_each(|(a, v)| *a += v);
            }
        }
        for d in &deferred {
            let v = d.weight_grad(&back).ok_or_else(|| {
                TrainError::Finetune("libtorch gave no depthwise weight gradient".into())
            })?;
            grads[d.slot].iter_mut().zip(v).for_each(|(a, v)| *a += v);
        }
    }
    Ok(loss)
}

/// Fine-tune `net` from `start`, continuing from the checkpoint at `ckpt` if there is one
/// (then its recorded configuration is used, not `cfg`). `data[s]` feeds stage `s`. `on` sees
/// progress; returning `false` stops after the event (the checkpoint on disk is the state to
/// resume from).
#[allow(clippy::too_many_arguments)]
pub fn run(
    net: &TopNet,
    start: Values,
    cfg: &FinetuneConfig,
    data: &[StageData; 3],
    ckpt: &Path,
    device: &Device,
    on: &mut dyn FnMut(&Event<'_>) -> bool,
) -> Result<Outcome, TrainError> {
    let slots = net.slots.len();
    if start.len() != slots {
        return Err(TrainError::Finetune(
            "starting values do not fit the net".into(),
        ));
    }
    let stop = || TrainError::Finetune("stopped".into());
    let (mut st, mut b, resumed) = match load(ckpt, slots)? {
        Some((st, b)) => (st, b, true),
        None => {
            cfg.check()?;
            if cfg.epochs[2] > 0 && net.first > 0 {
                return Err(TrainError::Finetune(
                    "stage 3 trains all layers, but the net holds only the top blocks".into(),
                ));
            }
            let f1 = evaluate(net, &start, data[0].val.as_ref(), device)?.macro_f1();
            if !on(&Event::Start { val_f1: f1 }) {
                return Err(stop());
            }
            let st = State {
                cfg: cfg.clone(),
                stage: 0,
                epoch: 0,
                update: 0,
                stage_updates: 0,
                bad_epochs: 0,
                loss_sum: 0.0,
                seconds: 0.0,
                stage_best: -1.0,
                best: f1,
                start_f1: f1,
                adam_step: 0,
                history: Vec::new(),
                stages: Vec::new(),
            };
            let b = Buffers {
                adam: AdamState::new(start.iter().map(Vec::len)),
                stage_best: start.clone(),
                best: start.clone(),
                values: start,
            };
            (st, b, false)
        }
    };
    let cfg = st.cfg.clone();
    let train_dev = device.clone().autodiff();
    let decay: Vec<bool> = net.slots.iter().map(|s| s.decay).collect();
    while st.stage < cfg.epochs.len() {
        let stage = st.stage;
        let epochs = cfg.epochs[stage];
        let StageData { train, val } = data[stage].clone();
        if epochs > 0 && (train.is_empty() || val.is_empty()) {
            return Err(if train.is_empty() {
                TrainError::NoTrainRows
            } else {
                TrainError::NoValRows
            });
        }
        let n = train.len();
        let per_epoch = n.div_ceil(cfg.batch);
        let total = epochs * per_epoch;
        let warm = ((cfg.warmup * total as f32).ceil() as usize).min(total);
        let mask = trainable(net, stage);
        let peak = rates(net, &cfg, stage);
        if epochs > 0
            && !on(&Event::StageStart {
                stage,
                updates: total,
                done: st.stage_updates,
            })
        {
            return Err(stop());
        }
        let mut grads: Vec<Vec<f32>> = b.values.iter().map(|v| vec![0.0; v.len()]).collect();
        while st.epoch < epochs {
            let epoch = st.epoch as u64;
            let mut order: Vec<usize> = (0..n).collect();
            SplitMix64::new(derive(cfg.seed, &[1, stage as u64, epoch])).shuffle(&mut order);
            let order = Arc::new(order);
            let first_update = st.update;
            let batches = {
                let (train, order, batch) = (Arc::clone(&train), Arc::clone(&order), cfg.batch);
                Prefetch::spawn(per_epoch - first_update, PREFETCH_DEPTH, move |k| {
                    let u = first_update + k;
                    let rows = &order[u * batch..((u + 1) * batch).min(order.len())];
                    train
                        .train_batch(rows, epoch)
                        .map(|(x, t)| (x, t, rows.len()))
                })
            };
            let mut clock = std::time::Instant::now();
            for prepared in batches {
                let (x, targets, rows) = prepared?;
                let update = st.update as u64;
                let loss = batch_gradients(
                    net,
                    &b.values,
                    &mask,
                    train.start(),
                    &x,
                    &targets,
                    &cfg,
                    &|k| derive(cfg.seed, &[2, stage as u64, epoch, update, k as u64]),
                    &train_dev,
                    &mut grads,
                )?;
                if !loss.is_finite() {
                    return Err(TrainError::Finetune(format!(
                        "the loss became {loss} in stage {} epoch {}; lower --lr (now {})",
                        stage + 1,
                        st.epoch + 1,
                        cfg.lr
                    )));
                }
                clip_global_norm(&mut grads, cfg.clip);
                let f = cosine_with_warmup(1.0, st.stage_updates, warm, total);
                let lr: Vec<f32> = peak.iter().map(|p| p * f).collect();
                b.adam
                    .update(&mut b.values, &grads, &lr, &decay, cfg.weight_decay);
                st.adam_step = b.adam.step;
                st.update += 1;
                st.stage_updates += 1;
                st.loss_sum += loss * rows as f64;
                st.seconds += clock.elapsed().as_secs_f64();
                let go = on(&Event::Update {
                    stage,
                    done: st.stage_updates,
                    loss,
                    lr: cfg.lr * cfg.stage_lr[stage] * f,
                });
                if cfg.checkpoint_every > 0
                    && st.stage_updates % cfg.checkpoint_every == 0
                    && st.update < per_epoch
                {
                    save(ckpt, &st, &b)?;
                    if !on(&Event::Checkpoint {
                        stage,
                        update: st.stage_updates,
                    }) {
                        return Err(stop());
                    }
                }
                if !go {
                    return Err(stop());
                }
                clock = std::time::Instant::now();
            }
            let conf = evaluate(net, &b.values, val.as_ref(), device)?;
            let row = EpochRow {
                stage,
                epoch: st.epoch,
                train_loss: st.loss_sum / n as f64,
                val_accuracy: conf.accuracy(),
                val_macro_f1: conf.macro_f1(),
                images_per_second: n as f64 / st.seconds.max(1e-9),
            };
            if row.val_macro_f1 > st.stage_best {
                st.stage_best = row.val_macro_f1;
                b.stage_best.clone_from(&b.values);
                st.bad_epochs = 0;
            } else {
                st.bad_epochs += 1;
            }
            st.history.push(row.clone());
            st.epoch += 1;
            st.update = 0;
            st.loss_sum = 0.0;
            st.seconds = 0.0;
            if st.bad_epochs >= cfg.patience.max(1) && st.epoch < epochs {
                tracing::info!(
                    "stage {}: no better val macro-F1 for {} epochs; stopping",
                    stage + 1,
                    st.bad_epochs
                );
                st.epoch = epochs + 1; // marks the early stop
            }
            save(ckpt, &st, &b)?;
            if !on(&Event::Epoch(&row))
                || !on(&Event::Checkpoint {
                    stage,
                    update: st.stage_updates,
                })
            {
                return Err(stop());
            }
        }
        if epochs > 0 {
            let keep = st.stage_best >= st.best;
            let report = StageReport {
                stage,
                name: STAGE_NAMES[stage].to_string(),
                epochs_run: st.history.iter().filter(|r| r.stage == stage).count(),
                stopped_early: st.epoch > epochs,
                before_f1: st.best,
                best_f1: st.stage_best,
                rolled_back: !keep,
            };
            if keep {
                st.best = st.stage_best;
                b.best.clone_from(&b.stage_best);
            }
            b.values.clone_from(&b.best);
            st.stages.push(report);
        }
        st.stage += 1;
        st.epoch = 0;
        st.update = 0;
        st.stage_updates = 0;
        st.bad_epochs = 0;
        st.stage_best = -1.0;
        b.adam = AdamState::new(b.values.iter().map(Vec::len));
        st.adam_step = 0;
        save(ckpt, &st, &b)?;
        if let Some(r) = st.stages.last().filter(|r| r.stage == stage) {
            if !on(&Event::StageEnd(r)) {
                return Err(stop());
            }
        }
    }
    Ok(Outcome {
        values: b.best,
        start_f1: st.start_f1,
        best_f1: st.best,
        history: st.history,
        stages: st.stages,
        config: cfg,
        resumed,
    })
}
