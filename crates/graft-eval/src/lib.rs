//! What a trained classifier is worth, in numbers and pictures: accuracy, macro-F1, per-class
//! precision/recall/F1, top-k, calibration (ECE, reliability diagram), the confusion matrix,
//! galleries of mistakes and of right answers, and one self-contained HTML report.

pub mod ablation_plot;
pub mod baseline_plot;
pub mod calibration;
pub mod error;
pub mod explain;
pub mod lr_plot;
mod percentile;
pub mod plots;
pub mod report;
mod summary;
pub mod timeline;
pub mod tune_plots;

pub use calibration::{Calibration, CalibrationBin};
pub use error::EvalError;
pub use percentile::percentile;
pub use summary::{galleries, summarise, Evaluation, Latency, Prediction};
