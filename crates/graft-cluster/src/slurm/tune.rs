//! `graft tune` as an array: task `i` runs trial `i` alone (`graft tune --trial i`), at most
//! `parallel` at once (`--array=0-(T-1)%P`), so trial `i` is proposed from trials
//! `0 ..= i - parallel` exactly as in a local search with `--parallel P`; the whole
//! `graft tune` after them gathers the trials and writes the summary, the plots and best.toml.

use std::fmt::Write as _;
use std::path::PathBuf;

use graft_run::settings::ClusterConfig;
use graft_run::RunDir;

use super::script::{line, JobHeader};
use super::{submit_jobs, Scripts, SubmitOptions};
use crate::book::ensure_dir;
use crate::{ClusterError, SubmissionKind};

/// One search as an array of trials.
#[derive(Debug, Clone)]
pub struct TunePlan {
    pub graft: PathBuf,
    pub workdir: PathBuf,
    pub run: RunDir,
    /// The tune's folder name under `RUN/tune/`.
    pub name: String,
    pub trials: usize,
    pub parallel: usize,
    /// `graft tune`'s flags that name the search (`--run`, `--name`, `--method`, `--trials`,
    /// `--parallel`, `--seed`, `--config`): the same for every task and the job after them.
    pub tune_args: Vec<String>,
    /// Global flags for graft (`--no-track`, …).
    pub global: Vec<String>,
    pub resources: ClusterConfig,
}

impl TunePlan {
    fn command(&self, trial: bool) -> Vec<String> {
        let mut c = vec![self.graft.to_string_lossy().into_owned()];
        c.extend(self.global.iter().cloned());
        c.push("tune".into());
        c.extend(self.tune_args.iter().cloned());
        if trial {
            c.extend(["--trial".into(), "${SLURM_ARRAY_TASK_ID}".into()]);
        }
        c
    }

    fn header(&self, collect: bool) -> String {
        let logs = self.run.cluster().join("logs");
        JobHeader {
            name: format!(
                "graft-tune{}-{}",
                if collect { "-collect" } else { "" },
                self.name
            ),
            workdir: &self.workdir,
            output: logs.join(if collect {
                format!("tune-{}-collect-%j.out", self.name)
            } else {
                format!("tune-{}-%A_%a.out", self.name)
            }),
            array: (!collect).then(|| self.array()),
            resources: &self.resources,
            heavy: !collect,
        }
        .render()
    }

    /// Every trial, `parallel` at a time.
    pub fn array(&self) -> String {
        format!(
            "0-{}%{}",
            self.trials.saturating_sub(1),
            self.parallel.max(1)
        )
    }
}

/// The trials' array script and the job after it.
pub fn tune_scripts(plan: &TunePlan) -> (String, String) {
    let mut trials = plan.header(false);
    let _ = write!(
        trials,
        "\
# Written by `graft cluster slurm tune`: task i runs trial i of the search {name} on
# {run}'s cached features, into RUN/tune/{name}/trials/trial-i.csv. At most {p} run at once:
# trial i is proposed from trials 0..i-{p}, as in `graft tune --parallel {p}` (a task waits
# for those it needs).
set -euo pipefail
exec {cmd}
",
        name = plan.name,
        run = plan.run.root().display(),
        p = plan.parallel,
        cmd = line(&plan.command(true)),
    );
    let mut collect = plan.header(true);
    let _ = write!(
        collect,
        "\
# Written by `graft cluster slurm tune`: after every trial finished, gather them and write
# the search's summary, plots and best.toml (no trial runs again).
set -euo pipefail
exec {cmd}
",
        cmd = line(&plan.command(false)),
    );
    (trials, collect)
}

/// Write `RUN/cluster/tune-NAME.sbatch` and `tune-NAME-collect.sbatch`.
pub fn write_tune_scripts(plan: &TunePlan) -> Result<Scripts, ClusterError> {
    let dir = plan.run.cluster();
    let logs = dir.join("logs");
    ensure_dir(&logs)?;
    let (trials, collect) = tune_scripts(plan);
    let scripts = Scripts {
        extract: dir.join(format!("tune-{}.sbatch", plan.name)),
        collect: dir.join(format!("tune-{}-collect.sbatch", plan.name)),
        logs,
    };
    graft_run::files::write_file(&scripts.extract, trials.as_bytes())?;
    graft_run::files::write_file(&scripts.collect, collect.as_bytes())?;
    Ok(scripts)
}

/// Submit the trials' array and the job after it; the array's and the collect job's ids.
pub fn submit_tune(
    plan: &TunePlan,
    scripts: &Scripts,
    options: SubmitOptions,
) -> Result<(Option<String>, String), ClusterError> {
    submit_jobs(
        &plan.run,
        None,
        Some(plan.array()),
        scripts,
        [SubmissionKind::TuneTrials, SubmissionKind::TuneCollect],
        options,
    )
}
