//! The training loop of a baseline: AdamW with a cosine schedule, BatchNorm statistics,
//! evaluation and early stopping on validation macro-F1, and checkpoints that a rerun
//! continues from at the exact update.

use std::path::Path;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use graft_data::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use super::net::{BnStats, Net};
use super::BaselineConfig;
use crate::finetune::adamw::{clip_global_norm, AdamState};
use crate::finetune::checkpoint;
use crate::finetune::Source;
use crate::loss::soft_cross_entropy;
use crate::metrics::{argmax_rows, Confusion};
use crate::optim::cosine_with_warmup;
use crate::TrainError;

/// One epoch (`baseline/<arch>/history.csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    /// Training images per second (forward, backward, update; augmentation included).
    pub images_per_second: f64,
}

/// Progress, for bars and logs.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// Training starts (or resumes) at update `done` of `total`.
    Start {
        total: usize,
        done: usize,
    },
    Update {
        done: usize,
        loss: f64,
        lr: f32,
    },
    Epoch(&'a EpochRow),
}

/// A finished baseline.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The weights and statistics of the best validation epoch.
    pub values: Vec<Vec<f32>>,
    pub stats: BnStats,
    pub best_epoch: usize,
    pub best_f1: f64,
    pub history: Vec<EpochRow>,
    pub stopped_early: bool,
    pub config: BaselineConfig,
    /// Whether this call continued from a checkpoint.
    pub resumed: bool,
    /// Training seconds over all calls.
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    cfg: BaselineConfig,
    epoch: usize,
    /// Updates done in the current epoch.
    update: usize,
    loss_sum: f64,
    epoch_seconds: f64,
    seconds: f64,
    bad_epochs: usize,
    best_f1: f64,
    best_epoch: usize,
    adam_step: u32,
    history: Vec<EpochRow>,
    finished: bool,
    stopped_early: bool,
}

struct Buffers {
    values: Vec<Vec<f32>>,
    adam: AdamState,
    stats: BnStats,
    best: Vec<Vec<f32>>,
    best_stats: BnStats,
}

fn save(path: &Path, st: &State, b: &Buffers) -> Result<(), TrainError> {
    let flat: Vec<&[f32]> = [
        &b.values,
        &b.adam.m,
        &b.adam.v,
        &b.best,
        &b.stats.mean,
        &b.stats.var,
        &b.best_stats.mean,
        &b.best_stats.var,
    ]
    .into_iter()
    .flat_map(|set| set.iter().map(Vec::as_slice))
    .collect();
    checkpoint::save(path, st, &flat)
}

fn load(path: &Path, net: &Net, bns: usize) -> Result<Option<(State, Buffers)>, TrainError> {
    let Some((st, mut bufs)) = checkpoint::load::<State>(path)? else {
        return Ok(None);
    };
    let slots = net.slots.len();
    let fits = bufs.len() == 4 * slots + 4 * bns
        && bufs.iter().zip(&net.slots).all(|(b, s)| b.len() == s.len())
        && st.cfg.arch == net.arch
        && st.cfg.size == net.size;
    if !fits {
        return Err(TrainError::BadCheckpoint {
            path: path.to_path_buf(),
            why: "made for another architecture, input size or class count; use --restart to \
                  start over"
                .into(),
        });
    }
    let mut take = |k: usize| bufs.drain(..k).collect::<Vec<_>>();
    let values = take(slots);
    let m = take(slots);
    let v = take(slots);
    let best = take(slots);
    let stats = BnStats {
        mean: take(bns),
        var: take(bns),
    };
    let best_stats = BnStats {
        mean: take(bns),
        var: take(bns),
    };
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
            stats,
            best,
            best_stats,
        },
    )))
}

/// The training order of `epoch`: a permutation drawn from the seed and the epoch alone, so a
/// resumed epoch sees the same batches.
fn order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut o: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut o);
    o
}

/// Updates per epoch: full batches only (BatchNorm on a batch of one or two is noise), or one
/// batch of everything when there is less than a batch.
fn updates_per_epoch(n: usize, batch: usize) -> usize {
    (n / batch).max(1)
}

/// Train `net` on `train`, choosing the epoch by its macro-F1 on `val`, continuing from the
/// checkpoint at `ckpt` if there is one (then its recorded configuration is used, not `cfg`).
/// `on` sees progress; returning `false` stops (the checkpoint is the state to resume from).
/// `device` is a plain device (`Device::flex()`, …); training adds autodiff to it.
pub fn run(
    net: &Net,
    cfg: &BaselineConfig,
    train: &dyn Source,
    val: &dyn Source,
    ckpt: &Path,
    device: &Device,
    on: &mut dyn FnMut(&Event<'_>) -> bool,
) -> Result<Outcome, TrainError> {
    let bns = net.batch_norms();
    let (mut st, mut b, resumed) = match load(ckpt, net, bns)? {
        Some((st, b)) => (st, b, true),
        None => {
            cfg.check()?;
            let (values, stats) = net.init(cfg.seed);
            let adam = AdamState::new(values.iter().map(Vec::len));
            let b = Buffers {
                best: values.clone(),
                best_stats: stats.clone(),
                values,
                adam,
                stats,
            };
            let st = State {
                cfg: cfg.clone(),
                epoch: 0,
                update: 0,
                loss_sum: 0.0,
                epoch_seconds: 0.0,
                seconds: 0.0,
                bad_epochs: 0,
                best_f1: -1.0,
                best_epoch: 0,
                adam_step: 0,
                history: Vec::new(),
                finished: false,
                stopped_early: false,
            };
            (st, b, false)
        }
    };
    let cfg = st.cfg.clone();
    let n = train.len();
    if n == 0 {
        return Err(TrainError::NoTrainRows);
    }
    if val.is_empty() {
        return Err(TrainError::NoValRows);
    }
    let batch = cfg.batch.min(n);
    let per_epoch = updates_per_epoch(n, batch);
    let total = per_epoch * cfg.epochs;
    let warm = ((cfg.warmup * total as f32).ceil() as usize).min(total);
    let decay: Vec<bool> = net.slots.iter().map(|s| s.decay).collect();
    // Training records the graph for the backward pass; evaluation runs on the plain device.
    let train_dev = device.clone().autodiff();
    let stopped = || TrainError::Finetune("stopped".into());
    if !st.finished
        && !on(&Event::Start {
            total,
            done: st.epoch * per_epoch + st.update,
        })
    {
        return Err(stopped());
    }
    while !st.finished {
        let perm = order(cfg.seed, st.epoch, n);
        while st.update < per_epoch {
            let t0 = Instant::now();
            let rows = &perm[st.update * batch..(st.update + 1) * batch];
            let (x, targets) = train.train_batch(rows, st.epoch as u64)?;
            let (loss, mut grads, batch_stats) =
                gradients(net, &b.values, &x, &targets, rows.len(), &cfg, &train_dev)?;
            clip_global_norm(&mut grads, cfg.clip);
            let step = st.epoch * per_epoch + st.update;
            let lr = cosine_with_warmup(cfg.lr, step, warm, total);
            let rates = vec![lr; grads.len()];
            b.adam
                .update(&mut b.values, &grads, &rates, &decay, cfg.weight_decay);
            net.update_stats(&mut b.stats, &batch_stats);
            st.adam_step = b.adam.step;
            st.update += 1;
            st.loss_sum += loss;
            let dt = t0.elapsed().as_secs_f64();
            st.epoch_seconds += dt;
            st.seconds += dt;
            if !loss.is_finite() {
                return Err(TrainError::Finetune(format!(
                    "the loss became {loss} at update {}; try a lower --lr (now {})",
                    step + 1,
                    cfg.lr
                )));
            }
            let keep_going = on(&Event::Update {
                done: step + 1,
                loss,
                lr,
            });
            if st.update < per_epoch && st.update.is_multiple_of(cfg.checkpoint_every.max(1)) {
                save(ckpt, &st, &b)?;
            }
            if !keep_going {
                save(ckpt, &st, &b)?;
                return Err(stopped());
            }
        }
        let conf = evaluate(net, &b.values, &b.stats, val, device)?;
        let row = EpochRow {
            epoch: st.epoch + 1,
            train_loss: st.loss_sum / per_epoch as f64,
            val_accuracy: conf.accuracy(),
            val_macro_f1: conf.macro_f1(),
            images_per_second: (per_epoch * batch) as f64 / st.epoch_seconds.max(1e-9),
        };
        if row.val_macro_f1 > st.best_f1 {
            st.best_f1 = row.val_macro_f1;
            st.best_epoch = row.epoch;
            st.bad_epochs = 0;
            b.best = b.values.clone();
            b.best_stats = b.stats.clone();
        } else {
            st.bad_epochs += 1;
        }
        st.history.push(row.clone());
        st.epoch += 1;
        st.update = 0;
        st.loss_sum = 0.0;
        st.epoch_seconds = 0.0;
        st.stopped_early = st.bad_epochs >= cfg.patience.max(1) && st.epoch < cfg.epochs;
        st.finished = st.epoch >= cfg.epochs || st.stopped_early;
        save(ckpt, &st, &b)?;
        if !on(&Event::Epoch(&row)) && !st.finished {
            return Err(stopped());
        }
    }
    Ok(Outcome {
        values: b.best,
        stats: b.best_stats,
        best_epoch: st.best_epoch,
        best_f1: st.best_f1,
        history: st.history,
        stopped_early: st.stopped_early,
        config: cfg,
        resumed,
        seconds: st.seconds,
    })
}

/// Per-channel batch statistics of one pass: (mean, biased variance, values averaged).
type BatchStats = Vec<(Vec<f32>, Vec<f32>, usize)>;

/// Mean loss of a batch, the gradient of every parameter and the BatchNorm statistics.
fn gradients(
    net: &Net,
    values: &[Vec<f32>],
    x: &[f32],
    targets: &[f32],
    n: usize,
    cfg: &BaselineConfig,
    device: &Device,
) -> Result<(f64, Vec<Vec<f32>>, BatchStats), TrainError> {
    let read = |t: Tensor<1>, what: &str| {
        t.into_data()
            .try_into_vec::<f32>()
            .map_err(|e| TrainError::Finetune(format!("reading {what}: {e:?}")))
    };
    let c = net.classes;
    let (logits, tracked) = net.forward(values, None, x, n, device);
    let host = logits
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| TrainError::Finetune(format!("reading logits: {e:?}")))?;
    // dL/dlogits on the host, pushed back through the graph as the weights of a sum.
    let mut g = Vec::new();
    let loss = soft_cross_entropy(&host, targets, c, cfg.label_smoothing, &mut g);
    let gt = Tensor::<2>::from_data(TensorData::new(g, [n, c]), device);
    let back = (logits * gt).sum().backward();
    let mut grads = Vec::with_capacity(values.len());
    for (t, v) in tracked.params.iter().zip(values) {
        grads.push(match t.grad(&back) {
            Some(grad) => read(grad, "a gradient")?,
            None => vec![0.0; v.len()],
        });
    }
    let mut stats = Vec::with_capacity(tracked.batch_stats.len());
    for (m, v, count) in tracked.batch_stats {
        stats.push((
            read(m, "a batch mean")?,
            read(v, "a batch variance")?,
            count,
        ));
    }
    Ok((f64::from(loss), grads, stats))
}

/// Predicted class of every row of `data`, with BatchNorm's running statistics.
pub fn predictions(
    net: &Net,
    values: &[Vec<f32>],
    stats: &BnStats,
    data: &dyn Source,
    device: &Device,
) -> Result<Vec<usize>, TrainError> {
    const EVAL_BATCH: usize = 256;
    let mut pred = Vec::with_capacity(data.len());
    let idx: Vec<usize> = (0..data.len()).collect();
    for rows in idx.chunks(EVAL_BATCH) {
        let x = data.eval_batch(rows)?;
        let (logits, _) = net.forward(values, Some(stats), &x, rows.len(), device);
        let l = logits
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| TrainError::Finetune(format!("reading logits: {e:?}")))?;
        pred.extend(argmax_rows(&l, net.classes));
    }
    Ok(pred)
}

fn evaluate(
    net: &Net,
    values: &[Vec<f32>],
    stats: &BnStats,
    data: &dyn Source,
    device: &Device,
) -> Result<Confusion, TrainError> {
    let pred = predictions(net, values, stats, data, device)?;
    Ok(Confusion::from_pairs(net.classes, data.labels(), &pred))
}
