//! Baselines trained from scratch on the images themselves (`graft baseline`): a small
//! convolutional net or the CIFAR ResNet-20, at the images' native size, with augmentation.
//! They answer the question a frozen pretrained encoder cannot: would a net that never saw
//! ImageNet do as well on these images? On 28- or 32-pixel images it often does.

pub mod net;
mod train;

pub use net::{Arch, BnStats, Net};
pub use train::{predictions, run, EpochRow, Event, Outcome};

use std::path::Path;

use graft_model::weights::{save_safetensors, DType, StateDict, Tensor};
use serde::{Deserialize, Serialize};

/// Every setting of a baseline (recorded in its checkpoint; a resume uses the recorded one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    pub arch: Arch,
    /// Input side in pixels (images are resized and centre-cropped to it).
    pub size: usize,
    pub epochs: usize,
    pub batch: usize,
    /// Peak learning rate (AdamW, cosine schedule with linear warmup).
    pub lr: f32,
    pub weight_decay: f32,
    /// Share of all updates spent warming up.
    pub warmup: f32,
    pub label_smoothing: f32,
    /// Global gradient-norm limit (0: none).
    pub clip: f32,
    /// Epochs without a better validation macro-F1 before training stops.
    pub patience: usize,
    /// Updates between checkpoints (and one at every epoch's end).
    pub checkpoint_every: usize,
    pub seed: u64,
}

impl BaselineConfig {
    /// The defaults for `arch`: 15 epochs of batches of 128 at 2e-3, decay 0.05.
    pub fn new(arch: Arch) -> BaselineConfig {
        BaselineConfig {
            arch,
            size: 32,
            epochs: 15,
            batch: 128,
            lr: 2e-3,
            weight_decay: 0.05,
            warmup: 0.05,
            label_smoothing: 0.1,
            clip: 5.0,
            patience: 4,
            checkpoint_every: 50,
            seed: 0,
        }
    }

    pub fn check(&self) -> Result<(), crate::TrainError> {
        let bad = |m: String| Err(crate::TrainError::Finetune(m));
        if self.batch < 2 {
            return bad("batch must be at least 2 (BatchNorm needs a batch to normalise)".into());
        }
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) || !(0.0..1.0).contains(&self.warmup) {
            return bad("label smoothing and warmup must be in 0..1".into());
        }
        Ok(())
    }
}

/// Write a trained baseline's weights as safetensors: every parameter under its slot name
/// (`stage2.0.a.weight`, `fc.bias`, …) and BatchNorm's running statistics as
/// `bn.N.running_mean` / `bn.N.running_var`, in layer order.
pub fn save_weights(
    net: &Net,
    values: &[Vec<f32>],
    stats: &BnStats,
    path: &Path,
) -> Result<(), crate::TrainError> {
    let mut sd = StateDict::new(path);
    let t = |shape: Vec<usize>, data: Vec<f32>| Tensor {
        shape,
        data,
        dtype: DType::F32,
    };
    for (slot, v) in net.slots.iter().zip(values) {
        sd.insert(slot.name.clone(), t(slot.shape.clone(), v.clone()));
    }
    for (i, (m, v)) in stats.mean.iter().zip(&stats.var).enumerate() {
        sd.insert(format!("bn.{i}.running_mean"), t(vec![m.len()], m.clone()));
        sd.insert(format!("bn.{i}.running_var"), t(vec![v.len()], v.clone()));
    }
    Ok(save_safetensors(&sd, path)?)
}

#[cfg(test)]
mod tests;
