//! The store mirrored to an MLflow tracking server through its REST API: runs with their
//! parameters, tags, step and system metrics and files; registered model versions and their
//! aliases. The store stays the record: what a server has not taken yet waits in it (see
//! [`queue`]), so a missing or failing server never loses or holds up a run.

pub mod client;
mod mirror;
mod models;
mod push;
mod queue;

pub use client::{Client, MlflowError, RemoteRun, RemoteVersion};
pub use mirror::mirror;
pub use models::{push_model, ModelPushed, MODEL_PATH, VERSION_TAG};
pub use push::{push_run, Pushed, RUN_ID_TAG};

/// The environment variable MLflow's own tools read the server from.
pub const TRACKING_URI_VAR: &str = "MLFLOW_TRACKING_URI";
