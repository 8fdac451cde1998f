//! Progressive fine-tuning of the encoder's top blocks with the head, on cached activations.
//!
//! Stage 1 trains the head alone, stage 2 the top blocks with it (both on activations cached
//! at the cut), stage 3 every layer from augmented images; each with AdamW, cosine schedule
//! with warmup, label smoothing, global-norm clipping, gradient accumulation and
//! early stopping on validation macro-F1. A stage that ends below the best validation
//! macro-F1 so far is rolled back. The state is checkpointed every few updates and at each
//! epoch's end; [`run`] continues from a checkpoint at the exact update.

pub mod acts;
pub mod adamw;
pub mod checkpoint;
pub mod layers;
pub mod lr_range;
pub mod memory;
mod native;
pub mod net;
mod precision;
pub mod source;
mod state;
#[cfg(test)]
mod tests;
mod train;

pub use acts::Acts;
pub use layers::Deferred;
pub use net::{prefix_spec, Group, TopNet, Values};
pub use precision::Precision;
pub use source::{CachedSource, ImageSource, Source};
pub use train::{
    batch_gradients, evaluate, predictions, run, EpochRow, Event, Outcome, StageData, StageReport,
};

use serde::{Deserialize, Serialize};

/// Every setting of a fine-tune (recorded in the checkpoint; a resume uses the recorded one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// Epochs of stage 1 (head only), stage 2 (top blocks + head) and stage 3 (all layers,
    /// from augmented images).
    pub epochs: [usize; 3],
    /// Factor on every learning rate, per stage (all layers move gently).
    pub stage_lr: [f32; 3],
    /// Images per optimizer update (the effective batch).
    pub batch: usize,
    /// Images per forward/backward pass; `batch` is accumulated from passes of this size, so
    /// memory depends on it alone.
    pub micro_batch: usize,
    /// Peak learning rate of the head.
    pub lr: f32,
    /// Each block below the head learns at this factor of the one above (discriminative rates).
    pub layer_decay: f32,
    pub weight_decay: f32,
    /// Share of each stage's updates spent warming up.
    pub warmup: f32,
    pub label_smoothing: f32,
    /// Global gradient-norm limit (0: none).
    pub clip: f32,
    /// Epochs without a better validation macro-F1 before a stage stops early.
    pub patience: usize,
    /// Updates between checkpoints (and one at every epoch's end).
    pub checkpoint_every: usize,
    pub seed: u64,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            epochs: [1, 3, 0],
            stage_lr: [1.0, 0.3, 0.1],
            batch: 64,
            micro_batch: 64,
            lr: 1e-3,
            layer_decay: 1.0,
            weight_decay: 0.01,
            warmup: 0.05,
            label_smoothing: 0.1,
            clip: 1.0,
            patience: 2,
            checkpoint_every: 50,
            seed: 0,
        }
    }
}

impl FinetuneConfig {
    pub fn check(&self) -> Result<(), crate::TrainError> {
        let bad = |m: String| Err(crate::TrainError::Finetune(m));
        if self.micro_batch == 0 || self.batch == 0 {
            return bad("batch and micro batch must be at least 1".into());
        }
        if !self.batch.is_multiple_of(self.micro_batch) {
            return bad(format!(
                "batch {} is not a multiple of the micro batch {}; use e.g. --micro-batch {}",
                self.batch,
                self.micro_batch,
                largest_divisor_at_most(self.batch, self.micro_batch)
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if !(0.0..=1.0).contains(&self.layer_decay) || !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("layer decay must be in 0..=1 and label smoothing in 0..1".into());
        }
        Ok(())
    }

    pub fn accumulation(&self) -> usize {
        self.batch / self.micro_batch.max(1)
    }
}

fn largest_divisor_at_most(n: usize, k: usize) -> usize {
    (1..=k.min(n))
        .rev()
        .find(|d| n.is_multiple_of(*d))
        .unwrap_or(1)
}
