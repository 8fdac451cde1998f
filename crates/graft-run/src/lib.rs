//! A graft run folder as a library.
//!
//! Everything graft learns about one model lives in a run folder (`runs/NAME/`): its settings,
//! split, feature cache, head, metrics, figures, report and exported files. This crate owns
//! that folder — every file name ([`RunDir`]), every JSON file as a type ([`files`]),
//! `graft.toml` ([`settings`]), the stage engine that skips what is done ([`stages`]), and
//! loading a run's encoder and held-out images ([`encoder`], [`held_out`]) — so the command
//! line, and whatever comes next (tracking, explanations, monitoring), read and write runs the
//! same way.
//!
//! Each stage is a function taking a plain request struct: [`prepare`] (audit and split),
//! [`extract`] (the feature cache), [`heads`] (the sweep), [`evaluate`] (metrics, figures,
//! report) and [`export`] (the ONNX file, checked); [`pipeline::train`] chains the first four
//! as `graft train DIR`. None prints: progress and results go to a [`Reporter`] as [`Event`]s.
//!
//! The crates below know nothing of run folders: they compute from plain values (images,
//! features, weights). This one wires them to files.

pub mod ablate;
pub mod baseline;
pub mod dir;
pub mod encoder;
mod error;
pub mod evaluate;
pub mod explain;
pub mod export;
pub mod export_web;
pub mod extract;
pub mod files;
pub mod heads;
pub mod held_out;
pub mod lr_find;
pub mod monitor;
pub mod monitor_compare;
pub mod monitor_field;
pub mod monitor_page;
pub mod notes;
pub mod paired;
pub mod pipeline;
pub mod prepare;
pub mod reference;
pub mod report;
pub mod roles;
pub mod settings;
pub mod stages;
pub mod tracking;
pub mod tune;

pub use dir::{Figure, Precision, RunDir, ENCODER_FILE};
pub use encoder::Backend;
pub use error::{Context, RunError};
pub use files::{ExportRecord, ExportRecords, Metrics, RunInfo};
pub use report::{Event, Reporter, Silent};
pub use settings::Settings;
pub use stages::{Stage, StageBook};
pub use tracking::{track, Job, Tracking};
