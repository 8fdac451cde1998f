//! What long work in this crate tells whoever runs it. The library does not print: each stage
//! hands typed [`Event`]s and progress counts to a [`Reporter`], and the front end decides what
//! a person sees (the command line prints lines and draws bars; a test or a service can ignore
//! them, or log them).

use std::path::Path;

use graft_export::Agreement;
use graft_model::arch::EncoderKind;

use crate::evaluate::Evaluated;
use crate::export::{AccuracyChecked, Calibrating};
use crate::extract::{ExtractStarted, Extracted};
use crate::heads::{SweepStarted, Swept};
use crate::prepare::Prepared;
use crate::stages::{Stage, StageRun};
use crate::tune::TuneStarted;

/// Something a stage did or is about to do.
#[derive(Debug)]
pub enum Event<'a> {
    /// `graft train DIR` begins a run folder.
    Run {
        root: &'a Path,
        encoder: &'a graft_model::Encoder,
        data: &'a Path,
    },
    /// A stage of `graft train DIR` begins, or is skipped: `what` says which, and why.
    Stage {
        stage: Stage,
        what: &'a str,
    },
    /// Audit and split are written.
    Prepared(&'a Prepared),
    /// The encoder's weights are not cached and are fetched now.
    FetchingWeights(EncoderKind),
    ExtractStarted(&'a ExtractStarted),
    Extracted(&'a Extracted),
    SweepStarted(&'a SweepStarted),
    /// The best configuration is trained again with these many seeds.
    RetrainingSeeds(usize),
    Swept(&'a Swept),
    /// `graft tune` begins (or continues) a search.
    TuneStarted(&'a TuneStarted<'a>),
    Evaluated(&'a Evaluated),
    /// INT8 calibration begins.
    Calibrating(&'a Calibrating),
    /// The exported file was run on the held-out images and compared with graft.
    Validated(&'a Agreement),
    /// An INT8 file's accuracy against the float model's.
    AccuracyChecked(&'a AccuracyChecked),
    /// An INT8 file past the accuracy limit is written all the same, as asked.
    ForcedPastLimit {
        max: f64,
    },
    /// Every stage of `graft train DIR` is done.
    Trained(&'a [StageRun]),
    /// The command's run is recorded in the tracking store.
    Tracked {
        id: &'a str,
        db: &'a Path,
        /// The MLflow server it was sent to, and its id there.
        mlflow: Option<(&'a str, &'a str)>,
    },
    /// A remark that does not stop the work ("the chart was not drawn").
    Note(String),
}

/// A count of steps done, drawn by the front end. Dropping it ends it.
pub trait Bar: Send + Sync {
    fn set_length(&self, len: u64);
    fn set_position(&self, done: u64);
    fn inc(&self, n: u64);
}

/// Where events and progress go.
pub trait Reporter: Sync {
    fn event(&self, event: Event<'_>);
    /// A bar counting `len` steps of `what` ("extract", "sweep").
    fn bar(&self, what: &str, len: u64) -> Box<dyn Bar>;
}

/// A reporter that shows nothing: events go to the log at debug level.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

struct NoBar;

impl Bar for NoBar {
    fn set_length(&self, _: u64) {}
    fn set_position(&self, _: u64) {}
    fn inc(&self, _: u64) {}
}

impl Reporter for Silent {
    fn event(&self, event: Event<'_>) {
        tracing::debug!(?event, "graft-run");
    }

    fn bar(&self, _: &str, _: u64) -> Box<dyn Bar> {
        Box::new(NoBar)
    }
}
