//! `RUN/cluster/jobs.json`: every job `graft cluster` submitted for the run, so `status`
//! knows what to ask the queue about and `resume` what the array's shape was.

use std::path::{Path, PathBuf};

use graft_run::files::{read_json_if_exists, write_json};
use graft_run::RunDir;
use serde::{Deserialize, Serialize};

use crate::ClusterError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionKind {
    /// An array of `graft extract --shard i/N` tasks.
    Extract,
    /// The job after them: merge check, then (unless `--then none`) `graft train`.
    Collect,
    /// An array of `graft tune --trial I` tasks.
    TuneTrials,
    /// The whole `graft tune` after them: gathers the trials, writes the summary.
    TuneCollect,
    /// An array of `graft ablate --cell I` tasks.
    AblateCells,
    /// The whole `graft ablate` after them.
    AblateCollect,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submission {
    pub kind: SubmissionKind,
    pub job_id: String,
    /// The array indices (shards) submitted, as sbatch's `--array` reads them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<String>,
    /// For a tune's or an ablation's array: its folder name under `RUN/tune/` or
    /// `RUN/ablate/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub submitted_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Book {
    /// Shards of the cache (the array's size): fixed for the run once submitted.
    pub tasks: usize,
    pub submissions: Vec<Submission>,
}

impl Book {
    pub fn path(run: &RunDir) -> PathBuf {
        run.cluster().join("jobs.json")
    }

    pub fn load(run: &RunDir) -> Result<Option<Book>, ClusterError> {
        Ok(read_json_if_exists(&Book::path(run))?)
    }

    pub fn save(&self, run: &RunDir) -> Result<(), ClusterError> {
        Ok(write_json(&Book::path(run), self)?)
    }

    pub fn record(
        &mut self,
        kind: SubmissionKind,
        job_id: &str,
        array: Option<&str>,
        folder: Option<&str>,
    ) {
        self.submissions.push(Submission {
            kind,
            job_id: job_id.to_string(),
            array: array.map(str::to_string),
            folder: folder.map(str::to_string),
            submitted_ms: now_ms(),
        });
    }

    /// Every job id on record (array jobs by their array id).
    pub fn job_ids(&self) -> Vec<&str> {
        self.submissions.iter().map(|s| s.job_id.as_str()).collect()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The book's folder exists once scripts are written; `path` is for errors.
pub(crate) fn ensure_dir(path: &Path) -> Result<(), ClusterError> {
    std::fs::create_dir_all(path).map_err(|e| ClusterError::io("create", path, e))
}
