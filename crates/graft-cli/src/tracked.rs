//! The command line's tracking settings (the global `--no-track` and `--tracking-db` flags),
//! and the one call every tracked command goes through.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use graft_run::{Job, RunDir, Tracking};
use graft_track::Params;

use crate::terminal::Terminal;

static SETTINGS: OnceLock<Tracking> = OnceLock::new();

/// Set once, from the parsed flags.
pub fn set(tracking: Tracking) {
    let _ = SETTINGS.set(tracking);
}

fn settings() -> Tracking {
    SETTINGS.get().cloned().unwrap_or_default()
}

/// The store `graft runs` reads for a runs folder (`--tracking-db` wins).
pub fn db_in(runs: &Path) -> PathBuf {
    settings()
        .db
        .unwrap_or_else(|| runs.join(graft_run::tracking::STORE_FILE))
}

/// The MLflow server runs go to (`--mlflow` or MLFLOW_TRACKING_URI), if any.
pub fn mlflow() -> Option<String> {
    settings().mlflow
}

/// Run `work` as a tracked run (graft-run's `track`, printing through the terminal).
pub fn tracked<T>(
    job: Job,
    run: &RunDir,
    params: Params,
    work: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    graft_run::track(&settings(), job, run, params, &Terminal, work)
}
