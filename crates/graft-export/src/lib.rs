//! Export of a trained graft classifier, and everything that makes the exported file one to
//! trust:
//!
//! - [`classifier`]: encoder and head as one ONNX graph (graft-model writes the encoder);
//! - [`quant`] and [`int8`]: INT8 post-training quantization — the arithmetic, the QDQ
//!   rewriting of the encoder graph, and calibration of activation ranges;
//! - [`check`]: the file against graft on held-out images — agreement, accuracy and the paired
//!   gate that refuses an INT8 file which lost too much;
//! - [`records`] and [`card`]: what `export.json` and `model_card.md` say;
//! - [`web`]: the classifier as a static folder that runs in the browser, offline.
//!
//! It knows nothing of run folders: graft-run reads the run and writes the files.

pub mod card;
pub mod check;
pub mod classifier;
pub mod int8;
pub mod quant;
pub mod records;
pub mod web;

pub use check::{accuracy, AccuracyDrop, Agreement};
pub use classifier::{
    classifier_to_onnx, classifier_to_onnx_in, explainer_to_onnx, file_classifier_to_onnx,
    grad_cam_to_onnx, ClassifierGraph, BLOCK_MAP, CAMS, FEATURE_MAP, PROBABILITIES,
};
pub use int8::{calibrate, Int8};
pub use quant::{cpu_has_vnni, Calibration, WeightBits};
pub use records::{ExportRecord, ExportRecords};

use graft_model::onnx::OnnxError;
use graft_model::ort_backend::OrtError;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Ort(#[from] OrtError),
    #[error("the head reads {head} features but the {encoder} encoder gives {given}")]
    Mismatch {
        encoder: String,
        head: usize,
        given: usize,
    },
    #[error("the attention head was trained on maps of {head} locations but the {encoder} encoder gives {given} at this input size")]
    Locations {
        encoder: String,
        head: usize,
        given: usize,
    },
}
