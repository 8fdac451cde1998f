//! Every command's run, recorded in the tracking store (graft-track): it starts as `running`
//! with its parameters, samples system metrics while the work goes on, and when the work ends
//! reads what the stage wrote — step and final metrics, the files with their SHA-256, the
//! dataset hash — and ends `finished` or `failed`. Recording never changes the work's result:
//! a store that cannot be written is one note, and the command goes on untracked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use graft_track::{NewRun, Params, RunId, Status, Store, SystemMetrics};

use crate::report::{Event, Reporter};
use crate::RunDir;

mod outputs;

pub use outputs::model_files;
pub(crate) use outputs::newest_written;
use outputs::{artifacts, outputs};

/// The file name of the store in a runs folder.
pub const STORE_FILE: &str = "graft.db";

/// Which graft command a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Train,
    TrainHeads,
    Finetune,
    Eval,
    Export,
    Explain,
    Tune,
    Ablate,
    Baseline,
}

impl Job {
    /// The command as users type it.
    pub fn command(self) -> &'static str {
        match self {
            Job::Train => "train",
            Job::TrainHeads => "train heads",
            Job::Finetune => "finetune",
            Job::Eval => "eval",
            Job::Export => "export",
            Job::Explain => "explain",
            Job::Tune => "tune",
            Job::Ablate => "ablate",
            Job::Baseline => "baseline",
        }
    }

    /// Whether the work may change which images the run learns from (`graft train DIR` splits
    /// its folder), so the dataset hash is taken when it ends rather than when it starts.
    fn splits_data(self) -> bool {
        self == Job::Train
    }

    /// The experiment's suffix: `<dataset>-training`, `-evaluation`, `-export`.
    pub fn stage(self) -> &'static str {
        match self {
            Job::Train | Job::TrainHeads | Job::Finetune => "training",
            Job::Eval => "evaluation",
            Job::Export => "export",
            Job::Explain => "explanation",
            Job::Tune => "tuning",
            Job::Ablate => "ablation",
            Job::Baseline => "baseline",
        }
    }
}

/// Whether and where runs are recorded.
#[derive(Debug, Clone)]
pub struct Tracking {
    pub enabled: bool,
    /// The store; by default `graft.db` in the run's runs folder.
    pub db: Option<PathBuf>,
    /// How often system metrics are sampled (and sent to MLflow).
    pub system_every: Duration,
    /// An MLflow tracking server to mirror runs to, as it runs.
    pub mlflow: Option<String>,
}

impl Default for Tracking {
    fn default() -> Tracking {
        Tracking {
            enabled: true,
            db: None,
            system_every: graft_track::system::DEFAULT_INTERVAL,
            mlflow: None,
        }
    }
}

impl Tracking {
    /// The store a run is recorded in.
    pub fn db_for(&self, run: &RunDir) -> PathBuf {
        self.db
            .clone()
            .unwrap_or_else(|| run.runs_folder().join(STORE_FILE))
    }
}

/// Run `work` as a tracked run of `job` on `run`, with `params`; its result is returned as is.
/// With an MLflow server set, the run is sent there from a second thread while `work` runs.
pub fn track<T, E: std::fmt::Display>(
    tracking: &Tracking,
    job: Job,
    run: &RunDir,
    params: Params,
    reporter: &dyn Reporter,
    work: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let note = |text: String| reporter.event(Event::Note(text));
    let active = if tracking.enabled {
        match Active::start(tracking, job, run, &params) {
            Ok(a) => Some(a),
            Err(e) => {
                note(format!("not tracked: {e}"));
                None
            }
        }
    } else {
        None
    };
    let Some(active) = active else {
        return work();
    };
    let client = tracking.mlflow.as_deref().and_then(|uri| {
        graft_track::mlflow::Client::new(uri)
            .map_err(|e| note(format!("warning: not sent to MLflow: {e}")))
            .ok()
    });
    let (id, db) = (active.id.clone(), active.db.clone());
    std::thread::scope(|scope| {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let mirror = client.as_ref().map(|client| {
            let (id, db) = (&id, &db);
            scope.spawn(move || {
                let warn = |e: &graft_track::TrackError| {
                    note(format!(
                        "warning: {e}\n  the run is kept in {}; `graft runs sync` sends it \
                         to MLflow when the server is back",
                        db.display()
                    ))
                };
                graft_track::mlflow::mirror(db, id, client, tracking.system_every, &stopped, &warn)
            })
        });
        let result = work();
        let error = result.as_ref().err().map(|e| format!("{e:#}"));
        let finished = active.finish(error.as_deref());
        drop(stop);
        let sent = mirror.and_then(|m| m.join().ok()).and_then(Result::ok);
        match finished {
            Ok(()) => reporter.event(Event::Tracked {
                id: &id,
                db: &db,
                mlflow: sent
                    .as_ref()
                    .zip(client.as_ref())
                    .map(|(p, c)| (c.uri(), p.remote_id.as_str())),
            }),
            Err(e) => note(format!("tracking run {id}: {e}")),
        }
        result
    })
}

/// A run being recorded.
struct Active {
    store: Store,
    db: PathBuf,
    id: RunId,
    job: Job,
    run: RunDir,
    start_ms: i64,
    system: SystemMetrics,
}

impl Active {
    fn start(
        tracking: &Tracking,
        job: Job,
        run: &RunDir,
        params: &Params,
    ) -> Result<Active, graft_track::TrackError> {
        let db = tracking.db_for(run);
        if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Errors show up as the store's own when it opens.
            let _ = std::fs::create_dir_all(parent);
        }
        let store = Store::open(&db)?;
        let dataset_hash = if job.splits_data() {
            None
        } else {
            dataset_hash(run)
        };
        let experiment = format!("{}-{}", dataset_name(run, params), job.stage());
        let name = run.name();
        let id = store.start_run(&NewRun {
            experiment: &experiment,
            name: &name,
            command: job.command(),
            run_dir: &absolute(run.root()),
            dataset_hash: dataset_hash.as_deref(),
            params,
            tags: &Params::from([("graft.command".to_string(), job.command().to_string())]),
        })?;
        let system = SystemMetrics::start(&db, id.clone(), tracking.system_every);
        Ok(Active {
            store,
            db,
            id,
            job,
            run: run.clone(),
            start_ms: graft_track::now_ms(),
            system,
        })
    }

    /// Record what the work left in the folder, then end the run.
    fn finish(self, error: Option<&str>) -> Result<(), graft_track::TrackError> {
        let Active {
            store,
            id,
            job,
            run,
            start_ms,
            system,
            ..
        } = self;
        system.stop();
        let recorded = (|| {
            let out = outputs(job, &run, start_ms);
            store.log_params(&id, &out.params)?;
            store.log_metrics(&id, &out.metrics)?;
            store.log_artifacts(&id, &artifacts(&out.folder, run.root()))?;
            if job.splits_data() {
                if let Some(hash) = dataset_hash(&run) {
                    store.set_dataset_hash(&id, &hash)?;
                }
            }
            Ok(())
        })();
        let status = if error.is_some() {
            Status::Failed
        } else {
            Status::Finished
        };
        store.end_run(&id, status, error)?;
        recorded
    }
}

/// `p` from the root: resolved when it exists, else joined to the working folder (the run
/// folder of `graft train DIR` is made after its run starts).
fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// The dataset a run learns from, for experiment names: the photo folder of `graft train
/// DIR`, else the run's name.
fn dataset_name(run: &RunDir, params: &Params) -> String {
    let base = run.base();
    // `graft train DIR` has it in its parameters (its config.toml is not written yet).
    let data = params.get("data").map(PathBuf::from).or_else(|| {
        std::fs::read_to_string(base.config())
            .ok()
            .and_then(|t| toml::from_str::<crate::Settings>(&t).ok())
            .and_then(|s| s.data)
    });
    data.and_then(|d| {
        absolute(&d)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    })
    .unwrap_or_else(|| base.name())
}

/// The dataset's hash: of every image's content hash, label and split, sorted — the same
/// images with the same labels and split give the same hash wherever they lie.
pub fn dataset_hash(run: &RunDir) -> Option<String> {
    let base = run.base();
    let features = crate::held_out::features_of(&base, None)
        .ok()
        .unwrap_or_else(|| base.features());
    let header = graft_features::format::read_header(&features).ok()?;
    let mut lines: Vec<String> = header
        .items
        .iter()
        .map(|it| {
            let split = it.split.map(|s| s.to_string()).unwrap_or_default();
            format!("{}\t{}\t{}\n", it.hash, it.label, split)
        })
        .collect();
    lines.sort_unstable();
    let mut h = blake3::Hasher::new();
    for l in &lines {
        h.update(l.as_bytes());
    }
    Some(h.finalize().to_hex().to_string())
}

/// What a command that writes its own folder (tune, ablate) leaves to record: the folder,
/// parameters, and metrics as (key, value, step).
pub struct Recorded {
    pub folder: PathBuf,
    pub params: BTreeMap<String, String>,
    pub metrics: Vec<(String, f64, i64)>,
}

/// A JSON value as flat `a.b.c = value` parameters (arrays as JSON text).
pub fn flatten(value: &serde_json::Value) -> Params {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Params) {
        use serde_json::Value;
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            }
        };
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    walk(&key(k), v, out);
                }
            }
            Value::Null => {}
            Value::String(s) => {
                out.insert(prefix.to_string(), s.clone());
            }
            // f32 settings widened to f64 print as 0.10000000149011612; show what was typed.
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or_default();
                let narrow = f as f32;
                let text = if f64::from(narrow) == f {
                    narrow.to_string()
                } else {
                    f.to_string()
                };
                out.insert(prefix.to_string(), text);
            }
            Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| {
                        let mut one = Params::new();
                        walk("v", i, &mut one);
                        one.remove("v").unwrap_or_else(|| i.to_string())
                    })
                    .collect();
                out.insert(prefix.to_string(), format!("[{}]", parts.join(",")));
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = Params::new();
    walk("", value, &mut out);
    out
}

/// [`flatten`] of anything serde can write.
pub fn params_of<T: serde::Serialize>(value: &T) -> Params {
    serde_json::to_value(value)
        .map(|v| flatten(&v))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_flatten_into_dotted_parameters() {
        let p = params_of(&crate::Settings::default());
        assert_eq!(p.get("heads.epochs").map(String::as_str), Some("10"));
        assert_eq!(p.get("split.seed").map(String::as_str), Some("42"));
        assert!(p.get("heads.lrs").is_some_and(|v| v.starts_with('[')));
    }
}
