//! What the cluster runs for one run folder: the array of extraction tasks and the job after
//! them, as plain commands — the same `graft extract` and `graft train` a user would type.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use graft_features::format::{chunk_complete, read_header, HEADER_FILE};
use graft_run::settings::ClusterConfig;
use graft_run::{RunDir, Settings};

use crate::ClusterError;

/// What the job after the array does once the cache is complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// `graft train --config RUN/config.toml`: the head sweep and eval, as a local run.
    Train,
    /// Only check that the cache is complete.
    Nothing,
}

/// One run's extraction as `tasks` array tasks, and what follows.
#[derive(Debug, Clone)]
pub struct ExtractPlan {
    /// The graft binary every node runs (the same path on each).
    pub graft: PathBuf,
    /// Where the jobs start (the submit directory: `runs = "runs"` in the config is relative).
    pub workdir: PathBuf,
    pub run: RunDir,
    pub name: String,
    pub encoder: String,
    pub backend: String,
    pub batch: usize,
    pub chunk: usize,
    pub spatial: bool,
    pub tasks: usize,
    pub then: Then,
    /// Global flags for the graft commands (`--no-track`, `--tracking-db FILE`).
    pub global: Vec<String>,
    pub resources: ClusterConfig,
}

/// Array tasks when neither the flag nor `[cluster] tasks` says.
pub const DEFAULT_TASKS: usize = 4;

impl ExtractPlan {
    /// The plan for `settings`' run folder `run` (absolute, on shared storage).
    pub fn new(
        settings: &Settings,
        run: RunDir,
        graft: PathBuf,
        workdir: PathBuf,
        then: Then,
    ) -> Result<ExtractPlan, ClusterError> {
        let tasks = settings.cluster.tasks.unwrap_or(DEFAULT_TASKS);
        if tasks == 0 {
            return Err(ClusterError::Invalid(
                "tasks must be at least 1 (--tasks, or [cluster] tasks)".into(),
            ));
        }
        let Some(kind) = settings.encoder.known() else {
            return Err(ClusterError::Invalid(format!(
                "graft cluster extracts with graft's own encoders; {} is an ONNX file, which \
                 `graft train` or `graft extract --shard` on each machine can run",
                settings.encoder
            )));
        };
        let name = run
            .root()
            .file_name()
            .map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
        Ok(ExtractPlan {
            graft,
            workdir,
            name,
            encoder: kind.name().to_string(),
            backend: settings.backend.name().to_string(),
            batch: settings.extract.batch,
            chunk: settings.extract.chunk,
            spatial: graft_run::pipeline::spatial_needed(settings)?,
            run,
            tasks,
            then,
            global: Vec::new(),
            resources: settings.cluster.clone(),
        })
    }

    /// `graft extract` for shard `index` (a shell word: `"${SLURM_ARRAY_TASK_ID}"` in a script).
    pub fn extract_command(&self, index: &str) -> Vec<String> {
        let mut c = vec![path_word(&self.graft)];
        c.extend(self.global.iter().cloned());
        c.extend(
            [
                "extract",
                "--data",
                &path_word(&self.run.manifest()),
                "--encoder",
                &self.encoder,
                "--out",
                &path_word(&self.run.features()),
                "--batch",
                &self.batch.to_string(),
                "--chunk",
                &self.chunk.to_string(),
                "--backend",
                &self.backend,
                "--shard",
                &format!("{index}/{}", self.tasks),
            ]
            .map(String::from),
        );
        if self.spatial {
            c.push("--spatial".into());
        }
        c
    }

    /// The job after the array: the merge check, then `graft train` on the run's config.
    pub fn collect_commands(&self) -> Vec<Vec<String>> {
        let graft = path_word(&self.graft);
        let mut out = vec![vec![
            graft.clone(),
            "extract".into(),
            "--merge".into(),
            "--out".into(),
            path_word(&self.run.features()),
        ]];
        if self.then == Then::Train {
            let mut train = vec![graft];
            train.extend(self.global.iter().cloned());
            train.extend([
                "train".into(),
                "--config".into(),
                path_word(&self.run.config()),
            ]);
            out.push(train);
        }
        out
    }
}

impl ExtractPlan {
    /// Make the run's cache ready for the tasks, as `graft train` would before extracting:
    /// a cache of other images (a changed split) or of the other layout (feature maps or
    /// not) is cleared, and `true` returned; one made with another encoder or chunk size is
    /// refused here rather than by every task.
    pub fn ready_cache(&self) -> Result<bool, ClusterError> {
        let dir = self.run.features();
        if !dir.join(HEADER_FILE).is_file() {
            return Ok(false);
        }
        let manifest = self.run.manifest();
        if graft_run::extract::cache_stale(&dir, &manifest)
            || graft_run::extract::spatial_changed(&dir, self.spatial)
        {
            std::fs::remove_dir_all(&dir).map_err(|e| ClusterError::io("clear", &dir, e))?;
            return Ok(true);
        }
        let header = read_header(&dir)?;
        if header.encoder.to_string() != self.encoder || header.chunk != self.chunk {
            return Err(ClusterError::Invalid(format!(
                "{} holds a cache made with {} in chunks of {}, not {} in chunks of {}: give \
                 the run another --name, or delete that folder",
                dir.display(),
                header.encoder,
                header.chunk,
                self.encoder,
                self.chunk
            )));
        }
        Ok(false)
    }
}

fn path_word(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The shards (of `tasks`) with a chunk still missing from the run's cache: all of them
/// before any task wrote the cache's header.
pub fn missing_shards(run: &RunDir, tasks: usize) -> Result<Vec<usize>, ClusterError> {
    let dir = run.features();
    if !dir.join(HEADER_FILE).is_file() {
        return Ok((0..tasks).collect());
    }
    let header = read_header(&dir)?;
    let missing: BTreeSet<usize> = (0..header.chunks())
        .filter(|&k| !chunk_complete(&dir, &header, k))
        .map(|k| k % tasks.max(1))
        .collect();
    Ok(missing.into_iter().collect())
}
