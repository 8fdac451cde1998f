//! A graft command as an array of independent units, and the whole command after it:
//! `graft tune` (task i runs trial i: `--trial i`) and `graft ablate` (task i trains cell i
//! with every seed: `--cell i`). Each task writes its own file; the whole command afterwards
//! finds every unit done, gathers them and writes the summary.

use std::fmt::Write as _;
use std::path::PathBuf;

use graft_run::settings::ClusterConfig;
use graft_run::RunDir;

use super::script::{line, JobHeader};
use super::{submit_jobs, Scripts, SubmitOptions};
use crate::book::ensure_dir;
use crate::{ClusterError, SubmissionKind};

/// Which command the array runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayKind {
    /// `graft tune`, one trial per task.
    Tune,
    /// `graft ablate`, one cell (all its seeds) per task.
    Ablate,
}

impl ArrayKind {
    fn command(self) -> &'static str {
        match self {
            ArrayKind::Tune => "tune",
            ArrayKind::Ablate => "ablate",
        }
    }
    fn index_flag(self) -> &'static str {
        match self {
            ArrayKind::Tune => "--trial",
            ArrayKind::Ablate => "--cell",
        }
    }
    fn unit(self) -> &'static str {
        match self {
            ArrayKind::Tune => "trial",
            ArrayKind::Ablate => "cell",
        }
    }
    fn kinds(self) -> [SubmissionKind; 2] {
        match self {
            ArrayKind::Tune => [SubmissionKind::TuneTrials, SubmissionKind::TuneCollect],
            ArrayKind::Ablate => [SubmissionKind::AblateCells, SubmissionKind::AblateCollect],
        }
    }
}

/// One tune or ablation as an array.
#[derive(Debug, Clone)]
pub struct ArrayPlan {
    pub kind: ArrayKind,
    pub graft: PathBuf,
    pub workdir: PathBuf,
    pub run: RunDir,
    /// The folder name under `RUN/tune/` or `RUN/ablate/`.
    pub name: String,
    /// Array tasks: trials, or cells.
    pub tasks: usize,
    /// At most this many tasks at once (a search's `--parallel`); all when `None`.
    pub throttle: Option<usize>,
    /// The command's arguments naming the work (run, name, search or ablation file, seeds):
    /// the same for every task and the job after them.
    pub args: Vec<String>,
    /// Global flags for graft (`--no-track`, …).
    pub global: Vec<String>,
    pub resources: ClusterConfig,
}

impl ArrayPlan {
    fn command(&self, task: bool) -> Vec<String> {
        let mut c = vec![self.graft.to_string_lossy().into_owned()];
        c.extend(self.global.iter().cloned());
        c.push(self.kind.command().into());
        c.extend(self.args.iter().cloned());
        if task {
            c.extend([
                self.kind.index_flag().into(),
                "${SLURM_ARRAY_TASK_ID}".into(),
            ]);
        }
        c
    }

    /// sbatch's `--array`: every task, throttled.
    pub fn array(&self) -> String {
        let all = format!("0-{}", self.tasks.saturating_sub(1));
        match self.throttle {
            Some(p) => format!("{all}%{}", p.max(1)),
            None => all,
        }
    }

    fn stem(&self) -> String {
        format!("{}-{}", self.kind.command(), self.name)
    }

    fn header(&self, collect: bool) -> String {
        let logs = self.run.cluster().join("logs");
        JobHeader {
            name: format!(
                "graft-{}{}",
                self.stem(),
                if collect { "-collect" } else { "" }
            ),
            workdir: &self.workdir,
            output: logs.join(if collect {
                format!("{}-collect-%j.out", self.stem())
            } else {
                format!("{}-%A_%a.out", self.stem())
            }),
            array: (!collect).then(|| self.array()),
            resources: &self.resources,
            heavy: !collect,
        }
        .render()
    }

    /// The array's script and the job after it.
    pub fn scripts(&self) -> (String, String) {
        let (cmd, unit) = (self.kind.command(), self.kind.unit());
        let mut tasks = self.header(false);
        let _ = writeln!(
            tasks,
            "# Written by `graft cluster slurm {cmd}`: task i runs {unit} i of {} on {}'s
# cached features, into its own file under RUN/{cmd}/{}/.",
            self.name,
            self.run.root().display(),
            self.name,
        );
        if let Some(p) = self.throttle {
            let _ = writeln!(
                tasks,
                "# At most {p} at once: trial i is proposed from trials 0..i-{p}, as in \
                 `graft tune --parallel {p}`\n# (a task waits for those it needs)."
            );
        }
        let _ = write!(
            tasks,
            "set -euo pipefail\nexec {}\n",
            line(&self.command(true))
        );
        let mut collect = self.header(true);
        let _ = write!(
            collect,
            "# Written by `graft cluster slurm {cmd}`: after every {unit} finished, gather them and
# write the summary (no {unit} runs again).
set -euo pipefail
exec {}
",
            line(&self.command(false)),
        );
        (tasks, collect)
    }

    /// Write `RUN/cluster/{tune,ablate}-NAME.sbatch` and `…-collect.sbatch`.
    pub fn write_scripts(&self) -> Result<Scripts, ClusterError> {
        let dir = self.run.cluster();
        let logs = dir.join("logs");
        ensure_dir(&logs)?;
        let (tasks, collect) = self.scripts();
        let scripts = Scripts {
            extract: dir.join(format!("{}.sbatch", self.stem())),
            collect: dir.join(format!("{}-collect.sbatch", self.stem())),
            logs,
        };
        graft_run::files::write_file(&scripts.extract, tasks.as_bytes())?;
        graft_run::files::write_file(&scripts.collect, collect.as_bytes())?;
        Ok(scripts)
    }

    /// Submit the array and the job after it: their ids.
    pub fn submit(
        &self,
        scripts: &Scripts,
        options: SubmitOptions,
    ) -> Result<(Option<String>, String), ClusterError> {
        submit_jobs(
            &self.run,
            None,
            Some(self.array()),
            scripts,
            (self.kind.kinds(), Some(&self.name)),
            options,
        )
    }
}
