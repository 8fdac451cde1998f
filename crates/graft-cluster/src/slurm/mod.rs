//! Slurm: the plan as `sbatch` scripts in `RUN/cluster/`, submitted as an array and an
//! `afterok` job, resubmitted for the missing shards only, and read back from the queue.

mod array;
mod command;
mod script;

use std::path::PathBuf;

pub use array::{ArrayKind, ArrayPlan};
pub use command::{queue, require, scancel, QueuedJob};
pub use script::{collect_script, extract_script, line, shell_word};

use crate::book::ensure_dir;
use crate::{missing_shards, Book, ClusterError, ExtractPlan, SubmissionKind};

/// The scripts of a plan, written: the array, and the job after it.
#[derive(Debug, Clone)]
pub struct Scripts {
    /// The array job's script.
    pub extract: PathBuf,
    pub collect: PathBuf,
    pub logs: PathBuf,
}

/// Write `RUN/cluster/{extract,collect}.sbatch` (and the logs folder they name).
pub fn write_scripts(plan: &ExtractPlan) -> Result<Scripts, ClusterError> {
    let dir = plan.run.cluster();
    let logs = dir.join("logs");
    ensure_dir(&logs)?;
    let scripts = Scripts {
        extract: dir.join("extract.sbatch"),
        collect: dir.join("collect.sbatch"),
        logs,
    };
    graft_run::files::write_file(&scripts.extract, extract_script(plan).as_bytes())?;
    graft_run::files::write_file(&scripts.collect, collect_script(plan).as_bytes())?;
    Ok(scripts)
}

/// How to submit.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubmitOptions {
    /// Submit the array held (`scontrol release JOBID` starts it).
    pub hold: bool,
}

/// The jobs submitted.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub extract: Option<String>,
    /// Which shards the array covers (`--array`).
    pub array: Vec<usize>,
    pub collect: String,
}

/// Submit the array for `shards` (every shard when `None`) and the collect job after it,
/// and record both in the run's book.
pub fn submit(
    plan: &ExtractPlan,
    scripts: &Scripts,
    shards: Option<&[usize]>,
    options: SubmitOptions,
) -> Result<Submitted, ClusterError> {
    let all: Vec<usize> = (0..plan.tasks).collect();
    let shards = shards.unwrap_or(&all);
    let (extract, collect) = submit_jobs(
        &plan.run,
        Some(plan.tasks),
        (!shards.is_empty()).then(|| array_spec(shards)),
        scripts,
        ([SubmissionKind::Extract, SubmissionKind::Collect], None),
        options,
    )?;
    Ok(Submitted {
        extract,
        array: shards.to_vec(),
        collect,
    })
}

/// Submit `scripts.extract` as an array over `array` (none: skip it) and `scripts.collect`
/// after it (`afterok`; cancelled should the array fail), recording both as `kinds` (with
/// the tune's or ablation's folder name).
pub(crate) fn submit_jobs(
    run: &graft_run::RunDir,
    tasks: Option<usize>,
    array: Option<String>,
    scripts: &Scripts,
    (kinds, folder): ([SubmissionKind; 2], Option<&str>),
    options: SubmitOptions,
) -> Result<(Option<String>, String), ClusterError> {
    require("sbatch")?;
    let mut book = Book::load(run)?.unwrap_or_default();
    if let Some(t) = tasks {
        book.tasks = t;
    }
    let mut first = None;
    if let Some(array) = array {
        let mut args = vec![format!("--array={array}")];
        if options.hold {
            args.push("--hold".into());
        }
        let id = command::sbatch(&args, &scripts.extract)?;
        book.record(kinds[0], &id, Some(&array), folder);
        book.save(run)?;
        first = Some(id);
    }
    let mut args = Vec::new();
    if let Some(id) = &first {
        // A cancelled or failed task must not leave this job pending for ever.
        args.push(format!("--dependency=afterok:{id}"));
        args.push("--kill-on-invalid-dep=yes".into());
    }
    let collect = command::sbatch(&args, &scripts.collect)?;
    book.record(kinds[1], &collect, None, folder);
    book.save(run)?;
    Ok((first, collect))
}

/// Resubmit what a run still lacks: the array for the shards with missing chunks only, and
/// the collect job after it (alone, when the cache is already complete). Refused while any
/// of the run's jobs is still queued or running.
pub fn resume(plan: &ExtractPlan, options: SubmitOptions) -> Result<Submitted, ClusterError> {
    require("squeue")?;
    let Some(book) = Book::load(&plan.run)? else {
        return Err(ClusterError::NoBook {
            run: plan.run.root().to_path_buf(),
            book: Book::path(&plan.run),
        });
    };
    let active: Vec<String> = queue(&book.job_ids())?
        .into_iter()
        .filter(|j| j.active())
        .map(|j| format!("{} {}", j.id, j.state))
        .collect();
    if !active.is_empty() {
        return Err(ClusterError::StillQueued {
            run: plan.run.root().to_path_buf(),
            jobs: active.join(", "),
        });
    }
    let missing = missing_shards(&plan.run, plan.tasks)?;
    let scripts = write_scripts(plan)?;
    submit(plan, &scripts, Some(&missing), options)
}

/// `0-3`, or `1,3` for a subset: sbatch's `--array` syntax.
pub fn array_spec(shards: &[usize]) -> String {
    let contiguous = shards.windows(2).all(|w| w[1] == w[0] + 1);
    match (shards.first(), shards.last()) {
        (Some(a), Some(b)) if contiguous && b > a => format!("{a}-{b}"),
        _ => shards
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Tasks in sbatch's `--array` (`0-7%4`: 8; `1,3`: 2).
pub fn array_size(spec: &str) -> usize {
    let spec = spec.split('%').next().unwrap_or("");
    spec.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => b
                .parse::<usize>()
                .ok()
                .zip(a.parse::<usize>().ok())
                .map_or(0, |(b, a)| b.saturating_sub(a) + 1),
            None => usize::from(!part.is_empty()),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_are_ranges_or_lists() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[2]), "2");
        assert_eq!(array_spec(&[1, 3]), "1,3");
        for (spec, n) in [("0-7%4", 8), ("1,3", 2), ("2", 1), ("0-3,6", 5)] {
            assert_eq!(array_size(spec), n, "{spec}");
        }
    }
}
