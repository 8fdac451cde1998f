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

/// The tracking flags this command was given, for the graft commands it writes into scripts
/// (`graft cluster`), with the store's path made absolute.
pub fn global_flags() -> Vec<String> {
    let t = settings();
    let mut flags = Vec::new();
    if !t.enabled {
        flags.push("--no-track".into());
    }
    if let Some(db) = t.db {
        let db = std::path::absolute(&db).unwrap_or(db);
        flags.extend(["--tracking-db".into(), db.to_string_lossy().into_owned()]);
    }
    if let Some(uri) = t.mlflow {
        flags.extend(["--mlflow".into(), uri]);
    }
    flags
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
