//! The stage loop: updates, evaluation, early stopping, rollback and checkpoints.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use graft_data::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use super::acts::Acts;
use super::adamw::{clip_global_norm, AdamState};
use super::net::{Group, TopNet, Values};
use super::{checkpoint, FinetuneConfig};
use crate::loss::cross_entropy;
use crate::metrics::{argmax_rows, Confusion};
use crate::optim::cosine_with_warmup;
use crate::TrainError;

pub const STAGE_NAMES: [&str; 2] = ["head", "top blocks + head"];

/// One epoch's record (`finetune/history.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub stage: usize,
    pub epoch: usize,
    pub train_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
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

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    cfg: FinetuneConfig,
    stage: usize,
    epoch: usize,
    /// Updates done in the current epoch / stage.
    update: usize,
    stage_updates: usize,
    bad_epochs: usize,
    loss_sum: f64,
    stage_best: f64,
    best: f64,
    start_f1: f64,
    adam_step: u32,
    history: Vec<EpochRow>,
    stages: Vec<StageReport>,
}

/// Buffers in the checkpoint, each a list of slot buffers.
struct Buffers {
    values: Values,
    adam: AdamState,
    stage_best: Values,
    best: Values,
}

impl Buffers {
    fn flat(&self) -> Vec<&[f32]> {
        [
            &self.values,
            &self.adam.m,
            &self.adam.v,
            &self.stage_best,
            &self.best,
        ]
        .into_iter()
        .flat_map(|set| set.iter().map(Vec::as_slice))
        .collect()
    }
}

fn save(path: &Path, st: &State, b: &Buffers) -> Result<(), TrainError> {
    checkpoint::save(path, st, &b.flat())
}

fn load(path: &Path, slots: usize) -> Result<Option<(State, Buffers)>, TrainError> {
    let Some((st, mut bufs)) = checkpoint::load::<State>(path)? else {
        return Ok(None);
    };
    if bufs.len() != 5 * slots {
        return Err(TrainError::BadCheckpoint {
            path: path.to_path_buf(),
            why: format!(
                "made for a net with {} parameter tensors, this one has {slots}; delete it to \
                 start over",
                bufs.len() / 5
            ),
        });
    }
    let mut take = || bufs.drain(..slots).collect::<Vec<_>>();
    let values = take();
    let m = take();
    let v = take();
    let stage_best = take();
    let best = take();
    let adam = AdamState {
        step: st.adam_step,
        m,
        v,
    };
    Ok(Some((
        st,
        Buffers {
            values,
            adam,
            stage_best,
            best,
        },
    )))
}

/// Seed for data order or dropout from the run seed and counters.
fn derive(seed: u64, parts: &[u64]) -> u64 {
    let mut r = SplitMix64::new(seed);
    let mut h = r.next_u64();
    for &p in parts {
        h = SplitMix64::new(h ^ p.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
    }
    h
}

fn trainable(net: &TopNet, stage: usize) -> Vec<bool> {
    net.slots
        .iter()
        .map(|s| stage == 1 || s.group == Group::Head)
        .collect()
}

/// Peak learning rate of each slot in `stage`: the head at `lr`, each block below it at
/// `layer_decay` times the one above; frozen slots 0.
fn rates(net: &TopNet, cfg: &FinetuneConfig, stage: usize) -> Vec<f32> {
    let last = net
        .slots
        .iter()
        .filter_map(|s| match s.group {
            Group::Block(b) => Some(b),
            Group::Head => None,
        })
        .max()
        .unwrap_or(0);
    net.slots
        .iter()
        .map(|s| match s.group {
            Group::Head => cfg.lr,
            Group::Block(_) if stage == 0 => 0.0,
            Group::Block(b) => cfg.lr * cfg.layer_decay.powi((last - b + 1) as i32),
        })
        .collect()
}

/// Confusion of the net on all of `data`.
pub fn evaluate(net: &TopNet, values: &Values, data: &Acts, device: &Device) -> Confusion {
    let pred = evaluate_predictions(net, values, data, device);
    Confusion::from_pairs(net.classes, &data.labels, &pred)
}

/// Predicted class of every row of `data`.
pub fn evaluate_predictions(
    net: &TopNet,
    values: &Values,
    data: &Acts,
    device: &Device,
) -> Vec<usize> {
    const EVAL_BATCH: usize = 128;
    let frozen = vec![false; net.slots.len()];
    let c = net.classes;
    let mut pred = Vec::with_capacity(data.len());
    let idx: Vec<usize> = (0..data.len()).collect();
    for rows in idx.chunks(EVAL_BATCH) {
        let x = data.gather(rows);
        let (logits, _) = net.forward(values, &frozen, &x, rows.len(), None, device);
        let l = logits.into_data().try_into_vec::<f32>().unwrap_or_default();
        pred.extend(argmax_rows(&l, c));
    }
    pred.resize(data.len(), 0);
    pred
}

/// Mean loss of `rows` of `data` and its gradient in `grads` (overwritten; zeros for frozen
/// slots), computed in passes of `cfg.micro_batch` rows whose gradients are summed with
/// weights `pass size / rows`: the same as one pass over all rows. `dropout_seed(k)` seeds
/// pass `k`'s dropout.
#[allow(clippy::too_many_arguments)]
pub fn batch_gradients(
    net: &TopNet,
    values: &Values,
    mask: &[bool],
    data: &Acts,
    rows: &[usize],
    cfg: &FinetuneConfig,
    dropout_seed: &dyn Fn(usize) -> u64,
    device: &Device,
    grads: &mut [Vec<f32>],
) -> Result<f64, TrainError> {
    let c = net.classes;
    grads.iter_mut().for_each(|g| g.fill(0.0));
    let mut loss = 0.0f64;
    for (k, micro) in rows.chunks(cfg.micro_batch.max(1)).enumerate() {
        let m = micro.len();
        let x = data.gather(micro);
        let labels: Vec<usize> = micro.iter().map(|&i| data.labels[i]).collect();
        let (logits, tracked) = net.forward(values, mask, &x, m, Some(dropout_seed(k)), device);
        let host = logits
            .clone()
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| TrainError::Finetune(format!("reading logits: {e:?}")))?;
        // dL/dlogits on the host (the same loss as head training), pushed back through the
        // graph as the weights of a sum.
        let mut g = Vec::new();
        let l = cross_entropy(&host, &labels, c, cfg.label_smoothing, None, &mut g);
        let share = m as f32 / rows.len() as f32;
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
    }
    Ok(loss)
}

/// Fine-tune `net` from `start`, continuing from the checkpoint at `ckpt` if there is one
/// (then its recorded configuration is used, not `cfg`). `on` sees progress; returning
/// `false` stops after the event (the checkpoint on disk is the state to resume from).
#[allow(clippy::too_many_arguments)]
pub fn run(
    net: &TopNet,
    start: Values,
    cfg: &FinetuneConfig,
    train: &Acts,
    val: &Acts,
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
    if train.is_empty() {
        return Err(TrainError::NoTrainRows);
    }
    if val.is_empty() {
        return Err(TrainError::NoValRows);
    }
    let stop = || TrainError::Finetune("stopped".into());
    let (mut st, mut b, resumed) = match load(ckpt, slots)? {
        Some((st, b)) => (st, b, true),
        None => {
            cfg.check()?;
            let f1 = evaluate(net, &start, val, device).macro_f1();
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
    let n = train.len();
    let per_epoch = n.div_ceil(cfg.batch);
    let decay: Vec<bool> = net.slots.iter().map(|s| s.decay).collect();
    while st.stage < cfg.epochs.len() {
        let stage = st.stage;
        let epochs = cfg.epochs[stage];
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
            let mut order: Vec<usize> = (0..n).collect();
            SplitMix64::new(derive(cfg.seed, &[1, stage as u64, st.epoch as u64]))
                .shuffle(&mut order);
            while st.update < per_epoch {
                let rows = &order[st.update * cfg.batch..((st.update + 1) * cfg.batch).min(n)];
                let (epoch, update) = (st.epoch as u64, st.update as u64);
                let loss = batch_gradients(
                    net,
                    &b.values,
                    &mask,
                    train,
                    rows,
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
                st.loss_sum += loss * rows.len() as f64;
                let go = on(&Event::Update {
                    stage,
                    done: st.stage_updates,
                    loss,
                    lr: cfg.lr * f,
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
            }
            let conf = evaluate(net, &b.values, val, device);
            let row = EpochRow {
                stage,
                epoch: st.epoch,
                train_loss: st.loss_sum / n as f64,
                val_accuracy: conf.accuracy(),
                val_macro_f1: conf.macro_f1(),
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
                epochs_run: st
                    .epoch
                    .min(epochs)
                    .min(st.history.iter().filter(|r| r.stage == stage).count()),
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
