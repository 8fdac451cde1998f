//! Slurm's client commands (`sbatch`, `squeue`, `scancel`), run as programs: their output
//! formats are documented and stable, and no maintained crate wraps them.

use std::path::Path;
use std::process::Command;

use crate::ClusterError;

/// Fail with what to install when `tool` is not on the PATH.
pub fn require(tool: &'static str) -> Result<(), ClusterError> {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()));
    if found {
        Ok(())
    } else {
        Err(ClusterError::Missing { tool })
    }
}

fn run(tool: &'static str, args: &[String]) -> Result<String, ClusterError> {
    require(tool)?;
    let out = Command::new(tool)
        .args(args)
        .output()
        .map_err(|e| ClusterError::io("run", tool, e))?;
    if !out.status.success() {
        return Err(ClusterError::Failed {
            tool,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `sbatch --parsable ARGS SCRIPT`: the job id.
pub(crate) fn sbatch(args: &[String], script: &Path) -> Result<String, ClusterError> {
    let mut all = vec!["--parsable".to_string()];
    all.extend(args.iter().cloned());
    all.push(script.to_string_lossy().into_owned());
    let answer = run("sbatch", &all)?;
    // `--parsable` prints `ID` or `ID;CLUSTER`.
    let id = answer.trim().split(';').next().unwrap_or_default();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(ClusterError::Unparsed {
            tool: "sbatch",
            answer: answer.trim().to_string(),
        });
    }
    Ok(id.to_string())
}

/// One job (or array task) as the queue shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    /// `123`, or `123_4` for an array task (`123_[2-3]` for tasks not started yet).
    pub id: String,
    /// PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, …
    pub state: String,
    /// Why it waits, or `None`.
    pub reason: String,
}

impl QueuedJob {
    /// Still to run or running.
    pub fn active(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "REQUEUED"
                | "RESIZING"
                | "SUSPENDED"
        )
    }
}

/// The queue's view of `ids` (array jobs expanded into their tasks), finished jobs included
/// while the controller still keeps them (its `MinJobAge`). This user's queue is read whole
/// and filtered here: `squeue --jobs` refuses the whole list once one id has been forgotten.
pub fn queue(ids: &[&str]) -> Result<Vec<QueuedJob>, ClusterError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let args = [
        "--me".to_string(),
        "--noheader".into(),
        "--array".into(),
        "--states=all".into(),
        // The array's id (a plain job's own), the task's id, state, reason.
        "--format=%F|%i|%T|%r".into(),
    ];
    let out = run("squeue", &args)?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let array = f.next()?.trim();
            let id = f.next()?.trim();
            ids.contains(&array).then(|| QueuedJob {
                id: id.to_string(),
                state: f.next().unwrap_or("").trim().to_string(),
                reason: f.next().unwrap_or("").trim().to_string(),
            })
        })
        .collect())
}

/// `scancel ID` (an array task as `ID_I`).
pub fn scancel(id: &str) -> Result<(), ClusterError> {
    run("scancel", &[id.to_string()]).map(drop)
}
