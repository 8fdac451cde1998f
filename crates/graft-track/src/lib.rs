//! Experiment tracking for graft, offline first: an embedded SQLite store (`runs/graft.db`)
//! of every run — its experiment, parameters, step metrics, system metrics sampled in the
//! background, artifacts with their SHA-256, the dataset hash and the graft version — with
//! queries (`graft runs list/show/compare`) and learning-curve plots.
//!
//! The store knows nothing of run folders: graft-run tells it what a stage did. A run whose
//! process dies (`kill -9`) is found and marked killed the next time the store is opened.

pub mod curves;
mod error;
pub mod mlflow;
pub mod process;
pub mod query;
pub mod registry;
mod schema;
pub mod store;
pub mod system;

pub use error::TrackError;
pub use query::{compare, Comparison, Filter, RunDetails, RunSummary};
pub use registry::{ModelRef, ModelVersion, NewVersion, RegisteredModel, CHAMPION};
pub use store::{now_ms, short_id, Artifact, Metric, NewRun, Params, RunId, Status, Store};
pub use system::SystemMetrics;

#[cfg(test)]
mod tests;
