//! Heads trained on cached encoder features — the fast loop of graft.
//!
//! A frozen encoder has already turned every image into one feature row
//! (`graft-features`); here small classifier heads (logistic regression, MLP) learn from those
//! rows in seconds. Heads are dense layers, so they are written out directly — forward pass,
//! gradients, AdamW — on a single-threaded SGEMM: one head per core, several heads of a sweep
//! in parallel, and the same seed always gives the same weights.

pub mod attention;
pub mod baseline;
pub mod calibrate;
pub mod data;
mod dense;
pub mod error;
pub mod finetune;
pub mod head;
mod loss;
pub mod lr_find;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod seeds;
pub mod sweep;
pub mod trainer;

pub use data::{Balance, Dataset, Standardizer};
pub use error::TrainError;
pub use head::{Head, HeadSpec};
pub use metrics::{ClassMetrics, Confusion};
pub use model::{HeadModel, ModelMeta};
pub use seeds::{repeat_seeds, MeanCi, PairedT, SeedReport};
pub use sweep::{best, run_sweep, SweepConfig, SweepData, SweepEntry};
pub use trainer::{evaluate, train_head, EpochRecord, TrainConfig, TrainOutcome};
