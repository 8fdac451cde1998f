//! The learning-rate range test for a fine-tune (`graft finetune --lr auto`, `--lr-find`):
//! stage 2's net (the top blocks with the head, from the run's weights) trained on the cached
//! activations while the head's rate grows exponentially; every other layer's rate keeps its
//! ratio to the head's (stage factor, layer decay), as in the fine-tune itself. The suggested
//! rate is therefore the value of `--lr`.

use burn::tensor::Device;
use graft_data::rng::SplitMix64;

use super::adamw::{clip_global_norm, AdamState};
use super::net::{TopNet, Values};
use super::source::Source;
use super::train::{batch_gradients, rates, trainable};
use super::FinetuneConfig;
use crate::lr_find::{ramp, LrCurve, RangeTest};
use crate::TrainError;

/// The stage the test ramps: top blocks + head.
const STAGE: usize = 1;

/// Run the range test from `start` on `train` (cached activations at the cut) with `cfg`'s
/// batch, micro batch, weight decay, label smoothing, clipping, stage factor and layer decay.
pub fn range_test(
    net: &TopNet,
    start: &Values,
    train: &dyn Source,
    cfg: &FinetuneConfig,
    test: &RangeTest,
    device: &Device,
) -> Result<LrCurve, TrainError> {
    let n = train.len();
    if n == 0 {
        return Err(TrainError::NoTrainRows);
    }
    let dev = device.clone().autodiff();
    let mask = trainable(net, STAGE);
    // Per-slot rates for a head rate of 1: the ramp scales them all.
    let unit = rates(
        net,
        &FinetuneConfig {
            lr: 1.0,
            ..cfg.clone()
        },
        STAGE,
    );
    let decay: Vec<bool> = net.slots.iter().map(|s| s.decay).collect();
    let mut values = start.clone();
    let mut adam = AdamState::new(values.iter().map(Vec::len));
    let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
    let batch = cfg.batch.clamp(1, n);
    // Its own stream ("lr-find" in ASCII), apart from the fine-tune's data order.
    let mut rng = SplitMix64::new(cfg.seed ^ 0x006c_722d_6669_6e64);
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    let mut at = 0;
    let mut update = 0u64;
    ramp(test, |lr| {
        let mut rows = Vec::with_capacity(batch);
        for _ in 0..batch {
            if at == order.len() {
                rng.shuffle(&mut order);
                at = 0;
            }
            rows.push(order[at]);
            at += 1;
        }
        let (x, targets) = train.train_batch(&rows, 0)?;
        let seed = cfg.seed ^ update.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let loss = batch_gradients(
            net,
            &values,
            &mask,
            train.start(),
            &x,
            &targets,
            cfg,
            &|k| seed ^ k as u64,
            &dev,
            &mut grads,
        )?;
        update += 1;
        if !loss.is_finite() {
            // The ramp stops here: a non-finite smoothed loss ends it.
            return Ok(f32::INFINITY);
        }
        clip_global_norm(&mut grads, cfg.clip);
        let lrs: Vec<f32> = unit.iter().map(|u| u * lr).collect();
        adam.update(&mut values, &grads, &lrs, &decay, cfg.weight_decay);
        Ok(loss as f32)
    })
}
