//! The `sbatch` scripts, plain enough to read and submit by hand.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use graft_run::settings::ClusterConfig;

use crate::ExtractPlan;

/// `word` quoted for a POSIX shell (single quotes; a single quote inside as `'\''`).
pub fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Words as one shell command line (`${…}` expansions kept).
pub fn line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            // The task's index stays a shell expansion.
            if w.contains("${") {
                format!("\"{w}\"")
            } else {
                shell_word(w)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One job's `#SBATCH` lines.
pub(crate) struct JobHeader<'a> {
    pub name: String,
    pub workdir: &'a Path,
    pub output: PathBuf,
    /// `--array`, for an array job.
    pub array: Option<String>,
    pub resources: &'a ClusterConfig,
    /// The tasks that do the heavy work get the GPUs and CPUs asked for; the job after them
    /// gathers and trains small heads.
    pub heavy: bool,
}

impl JobHeader<'_> {
    pub(crate) fn render(&self) -> String {
        let mut h = String::from("#!/bin/bash\n");
        let r = self.resources;
        let mut opts = vec![
            format!("--job-name={}", self.name),
            format!("--chdir={}", self.workdir.display()),
            format!("--output={}", self.output.display()),
        ];
        if let Some(a) = &self.array {
            opts.push(format!("--array={a}"));
        }
        let mut add = |flag: &str, v: &Option<String>| {
            if let Some(v) = v {
                opts.push(format!("--{flag}={v}"));
            }
        };
        add("partition", &r.partition);
        add("account", &r.account);
        add("time", &r.time);
        add("mem", &r.mem);
        if self.heavy {
            add("gres", &r.gres);
            if let Some(c) = r.cpus {
                opts.push(format!("--cpus-per-task={c}"));
            }
        }
        for o in opts {
            let _ = writeln!(h, "#SBATCH {}", shell_word(&o));
        }
        h
    }
}

fn header(plan: &ExtractPlan, job: &str, log: &str) -> String {
    JobHeader {
        name: format!("graft-{job}-{}", plan.name),
        workdir: &plan.workdir,
        output: plan.run.cluster().join("logs").join(log),
        array: (job == "extract").then(|| format!("0-{}", plan.tasks - 1)),
        resources: &plan.resources,
        heavy: job == "extract",
    }
    .render()
}

/// The array: task `i` extracts shard `i` of `plan.tasks` into the run's cache.
pub fn extract_script(plan: &ExtractPlan) -> String {
    let mut s = header(plan, "extract", "extract-%A_%a.out");
    let manifest = plan.run.manifest();
    let m = shell_word(&manifest.to_string_lossy());
    let _ = write!(
        s,
        "\
# Written by `graft cluster slurm extract`: task i of the array extracts shard i/{tasks} of
# {run}'s feature cache (chunks k with k % {tasks} == i). Submit by hand with
#   sbatch {this}
# or only some shards with sbatch --array=1,3 {this}. A rerun skips finished chunks, and a
# shard is locked while one task extracts it.
set -euo pipefail
# The run folder must be on storage every node mounts at the same path.
if [ ! -f {m} ]; then
    echo \"graft: node $(hostname) cannot see {m_plain}: the run folder must be on a \\
filesystem every node mounts at the same path (shared storage)\" >&2
    exit 2
fi
exec {cmd}
",
        tasks = plan.tasks,
        run = plan.run.root().display(),
        this = plan.run.cluster().join("extract.sbatch").display(),
        m_plain = manifest.display(),
        cmd = line(&plan.extract_command("${SLURM_ARRAY_TASK_ID}")),
    );
    s
}

/// The job after the array: the cache checked complete, then the heads and the report.
pub fn collect_script(plan: &ExtractPlan) -> String {
    let mut s = header(plan, "collect", "collect-%j.out");
    let _ = writeln!(
        s,
        "\
# Written by `graft cluster slurm extract`: after every extraction task succeeded, check
# that {run}'s cache is complete, then continue the run as `graft train` would (the
# finished stages are skipped).
set -euo pipefail",
        run = plan.run.root().display(),
    );
    for c in plan.collect_commands() {
        let _ = writeln!(s, "{}", line(&c));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_survive_spaces_and_quotes() {
        assert_eq!(shell_word("/runs/a-b_1"), "/runs/a-b_1");
        assert_eq!(shell_word("my runs/x"), "'my runs/x'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
