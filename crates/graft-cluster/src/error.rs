//! Errors of `graft cluster`: each names the command, file or job, and the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "{tool} not found: Slurm's client commands are not installed here (on Debian: \
         apt-get install slurm-client; on a cluster, run graft on a login node that has them)"
    )]
    Missing { tool: &'static str },
    #[error("{tool} failed ({status}): {stderr}")]
    Failed {
        tool: &'static str,
        status: String,
        stderr: String,
    },
    #[error("{tool} answered {answer:?}, expected a job id")]
    Unparsed { tool: &'static str, answer: String },
    #[error("cannot {op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{run} has no cluster jobs on record ({book} is missing); start with \
         graft cluster slurm extract"
    )]
    NoBook { run: PathBuf, book: PathBuf },
    #[error(
        "jobs of {run} are still queued or running ({jobs}); wait for them (graft cluster \
         status), or scancel them, before resubmitting"
    )]
    StillQueued { run: PathBuf, jobs: String },
    #[error("invalid cluster settings: {0}")]
    Invalid(String),
    #[error(transparent)]
    Run(#[from] graft_run::RunError),
    #[error(transparent)]
    Features(#[from] graft_features::FeatureError),
}

impl ClusterError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        ClusterError::Io {
            op,
            path: path.into(),
            cause,
        }
    }
}
