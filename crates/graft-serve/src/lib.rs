//! The prediction service: an exported graft classifier behind an HTTP API and a web page.
//!
//! - `POST /predict` (multipart field or raw image body) and `POST /predict/batch` (multipart,
//!   several images) answer JSON with the top-k classes, their probabilities, a `confident` flag
//!   and per-class information from an optional `classes.toml`.
//! - `POST /explain` (one image): the prediction, the Grad-CAM map of the predicted class (or
//!   `?class=NAME`) at the encoder's last feature map, its quality metrics and the map over the
//!   model's crop as a PNG ([`explain`]).
//! - `GET /health`, `GET /version`, `GET /metrics` (Prometheus text format), `GET /` (the page).
//!
//! Images are decoded in memory and never written to disk. Decoding and preprocessing run on
//! the blocking pool, one request each; inference runs on one ONNX Runtime session owned by a
//! worker thread that groups queued images into batches ([`batcher`]).

mod advice;
pub mod audit;
pub mod batcher;
pub mod canary;
mod error;
pub mod explain;
mod feedback;
mod guard;
pub mod live_drift;
mod metrics;
mod page;
mod predict;
mod routes;
mod server;
mod upload;

pub use advice::uncertain_warning;
pub use canary::Canary;
pub use error::ApiError;
pub use explain::ExplainSettings;
pub use graft_data::class_info::ClassInfo;
pub use server::{serve, Explainable, Registered, ServeOptions, ServedModel};

/// Errors that stop the service from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error(transparent)]
    ClassInfo(#[from] graft_data::class_info::ClassInfoError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Canary(String),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
}
