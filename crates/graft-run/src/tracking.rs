//! Every command's run, recorded in the tracking store (graft-track): it starts as `running`
//! with its parameters, samples system metrics while the work goes on, and when the work ends
//! reads what the stage wrote — step and final metrics, the files with their SHA-256, the
//! dataset hash — and ends `finished` or `failed`. Recording never changes the work's result:
//! a store that cannot be written is one note, and the command goes on untracked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use graft_track::{Artifact, Metric, NewRun, Params, RunId, Status, Store, SystemMetrics};

use crate::files::{read_json, read_json_if_exists, FinetuneMetrics};
use crate::report::{Event, Reporter};
use crate::{ExportRecords, Metrics, RunDir};

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

/// What a finished stage left to record.
struct Outputs {
    folder: PathBuf,
    params: Params,
    metrics: Vec<Metric>,
}

fn outputs(job: Job, run: &RunDir, start_ms: i64) -> Outputs {
    let mut out = Outputs {
        folder: run.root().to_path_buf(),
        params: Params::new(),
        metrics: Vec::new(),
    };
    let now = graft_track::now_ms();
    let final_metric = |metrics: &mut Vec<Metric>, key: &str, value: f64| {
        metrics.push(Metric {
            key: key.to_string(),
            value,
            step: 0,
            time_ms: now,
        })
    };
    match job {
        Job::Train | Job::TrainHeads => {
            if let Ok(m) = read_json::<Metrics>(&run.metrics()) {
                let b = &m.best;
                out.params.insert("best.head".into(), b.head.clone());
                out.params.insert("best.lr".into(), b.lr.to_string());
                out.params
                    .insert("best.epoch".into(), b.best_epoch.to_string());
                out.params.insert("best.balance".into(), b.balance.clone());
                let mx = &mut out.metrics;
                final_metric(mx, "val_macro_f1", b.val_macro_f1);
                final_metric(mx, "val_accuracy", b.val_accuracy);
                if let Some(v) = b.test_macro_f1 {
                    final_metric(mx, "test_macro_f1", v);
                }
                if let Some(v) = b.test_accuracy {
                    final_metric(mx, "test_accuracy", v);
                }
                final_metric(mx, "temperature", m.temperature.value as f64);
                final_metric(mx, "val_nll_calibrated", m.temperature.val_nll_after);
                final_metric(mx, "sweep_seconds", m.sweep_seconds);
                if job == Job::Train {
                    for e in m.eval.values() {
                        eval_metrics(e, &mut |k, v| final_metric(mx, &k, v));
                    }
                }
            }
            out.metrics.extend(epoch_metrics(&run.history(), start_ms));
            out.metrics.extend(sweep_metrics(&run.sweep(), now));
        }
        Job::Eval => {
            if let Ok(m) = read_json::<Metrics>(&run.metrics()) {
                for e in m.eval.values() {
                    eval_metrics(e, &mut |k, v| final_metric(&mut out.metrics, &k, v));
                }
            }
        }
        Job::Export => {
            if let Ok(Some(records)) = read_json_if_exists::<ExportRecords>(&run.export_records()) {
                for (precision, r) in &records {
                    let mx = &mut out.metrics;
                    final_metric(mx, &format!("{precision}_bytes"), r.bytes as f64);
                    final_metric(mx, &format!("{precision}_max_diff"), r.max_diff as f64);
                    if r.validated > 0 {
                        let share = r.same_top1 as f64 / r.validated as f64;
                        final_metric(mx, &format!("{precision}_same_top1"), share);
                    }
                    if let Some(a) = r.accuracy_file {
                        final_metric(mx, &format!("{precision}_accuracy"), a);
                    }
                    if let Some(w) = r.int8_weights {
                        out.params
                            .insert(format!("{precision}.weights"), w.name().to_string());
                    }
                }
            }
        }
        Job::Explain => {
            let explained = run.root().join("explain");
            if let Some(dir) = newest_written(&explained, crate::explain::record::FILE, start_ms) {
                if let Ok(records) =
                    crate::explain::record::read(&dir.join(crate::explain::record::FILE))
                {
                    explain_metrics(&records, &mut |k, v| final_metric(&mut out.metrics, k, v));
                }
                out.folder = dir;
            }
        }
        Job::Tune | Job::Ablate | Job::Baseline => {
            let recorded = match job {
                Job::Tune => crate::tune::tracked::newest(run, start_ms),
                Job::Ablate => crate::ablate::tracked(run, start_ms),
                _ => crate::baseline::tracked(run, start_ms),
            };
            if let Some(r) = recorded {
                out.folder = r.folder;
                out.params.extend(r.params);
                out.metrics
                    .extend(r.metrics.into_iter().map(|(key, value, step)| Metric {
                        key,
                        value,
                        step,
                        time_ms: now,
                    }));
            }
        }
        Job::Finetune => {
            let tuned = run.finetune();
            out.folder = tuned.root().to_path_buf();
            if let Ok(m) = read_json::<FinetuneMetrics>(&tuned.metrics()) {
                out.params.extend(flatten(
                    &serde_json::to_value(&m.config).unwrap_or_default(),
                ));
                let mx = &mut out.metrics;
                final_metric(mx, "val_macro_f1", m.val_macro_f1.finetuned);
                final_metric(mx, "val_macro_f1_frozen", m.val_macro_f1.frozen);
                final_metric(mx, "test_accuracy", m.test.scores.finetuned.accuracy);
                final_metric(mx, "test_macro_f1", m.test.scores.finetuned.macro_f1);
                final_metric(mx, "test_accuracy_frozen", m.test.scores.frozen.accuracy);
                final_metric(mx, "training_seconds", m.seconds.training);
            }
            out.metrics
                .extend(epoch_metrics(&tuned.history(), start_ms));
        }
    }
    // A value found twice (the best head's test score is also the evaluation's) is one value.
    let mut seen = std::collections::BTreeSet::new();
    out.metrics.retain(|m| seen.insert((m.key.clone(), m.step)));
    out
}

/// What a command that writes `RUN/<kind>/<name>/` wrote in this run: the sub-folder of
/// `parent` whose `file` changed last, at or after `since_ms`.
pub(crate) fn newest_written(parent: &Path, file: &str, since_ms: i64) -> Option<PathBuf> {
    let since = std::time::UNIX_EPOCH + std::time::Duration::from_millis(since_ms.max(0) as u64);
    std::fs::read_dir(parent)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let modified = e
                .path()
                .join(file)
                .metadata()
                .and_then(|m| m.modified())
                .ok()?;
            (modified >= since).then(|| (modified, e.path()))
        })
        .max()
        .map(|(_, p)| p)
}

/// An explanation set's numbers: how many, how many suspicious, the mean quality metrics and
/// the sanity check's correlations when it ran.
fn explain_metrics(records: &[crate::explain::ExplainRecord], put: &mut dyn FnMut(&str, f64)) {
    if records.is_empty() {
        return;
    }
    let n = records.len() as f64;
    let mean = |f: &dyn Fn(&crate::explain::ExplainRecord) -> f32| {
        records.iter().map(|r| f64::from(f(r))).sum::<f64>() / n
    };
    put("explained_images", n);
    put(
        "suspicious_share",
        records.iter().filter(|r| r.suspicious).count() as f64 / n,
    );
    put("deletion_auc", mean(&|r| r.quality.deletion_auc));
    put("insertion_auc", mean(&|r| r.quality.insertion_auc));
    put("confidence_drop", mean(&|r| r.quality.confidence_drop));
    put("concentration", mean(&|r| r.quality.concentration));
    let sanity: Vec<f64> = records
        .iter()
        .filter_map(|r| r.sanity_rank_correlation)
        .collect();
    if !sanity.is_empty() {
        put(
            "sanity_rank_correlation",
            sanity.iter().sum::<f64>() / sanity.len() as f64,
        );
        let deepest: Vec<f64> = records
            .iter()
            .filter_map(|r| r.sanity_cascade.last().map(|s| s.rank_correlation))
            .collect();
        if !deepest.is_empty() {
            put(
                "sanity_cascade_deepest",
                deepest.iter().sum::<f64>() / deepest.len() as f64,
            );
        }
    }
}

/// An evaluation's numbers, named by split (`test_accuracy`, `test_ece`, …).
fn eval_metrics(e: &graft_eval::Evaluation, put: &mut dyn FnMut(String, f64)) {
    let s = &e.split;
    put(format!("{s}_accuracy"), e.accuracy);
    put(format!("{s}_macro_f1"), e.macro_f1);
    put(format!("{s}_ece"), e.calibration.ece);
    for (k, acc) in &e.top_k {
        put(format!("{s}_top{k}_accuracy"), *acc);
    }
    if let Some(l) = &e.latency {
        put("latency_p50_ms".into(), l.p50_ms);
        put("latency_p95_ms".into(), l.p95_ms);
    }
}

/// `history.csv`'s numeric columns as step metrics; steps count rows from 1 (a fine-tune's
/// stages continue one another), times from the run's start plus the epochs' seconds.
fn epoch_metrics(path: &Path, start_ms: i64) -> Vec<Metric> {
    let Some((header, rows)) = read_csv(path) else {
        return Vec::new();
    };
    let seconds_col = header.iter().position(|h| h == "seconds");
    let mut elapsed = 0.0f64;
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if let Some(s) = seconds_col.and_then(|c| row.get(c)?.parse::<f64>().ok()) {
            elapsed += s;
        }
        let time_ms = start_ms + (elapsed * 1000.0) as i64;
        for (col, name) in header.iter().enumerate() {
            // Row numbers, not metrics.
            if name == "epoch" || name == "stage" || Some(col) == seconds_col {
                continue;
            }
            if let Some(value) = row.get(col).and_then(|v| v.parse::<f64>().ok()) {
                out.push(Metric {
                    key: name.clone(),
                    value,
                    step: i as i64 + 1,
                    time_ms,
                });
            }
        }
    }
    out
}

/// A CSV file of the run (header, rows); `None` when it is not there or not CSV — a stage
/// that did not write it has nothing to record.
fn read_csv(path: &Path) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(path).ok()?;
    graft_data::table::parse_csv(&text).ok()
}

/// Each sweep configuration's validation scores, step = its row in `sweep.csv`.
fn sweep_metrics(path: &Path, time_ms: i64) -> Vec<Metric> {
    let Some((header, rows)) = read_csv(path) else {
        return Vec::new();
    };
    let cols: BTreeMap<&str, usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| (h.as_str(), i))
        .collect();
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        for name in ["val_macro_f1", "val_accuracy"] {
            if let Some(v) = cols
                .get(name)
                .and_then(|&c| row.get(c)?.parse::<f64>().ok())
            {
                out.push(Metric {
                    key: format!("sweep_{name}"),
                    value: v,
                    step: i as i64,
                    time_ms,
                });
            }
        }
    }
    out
}

/// The files `folder` holds (not its sub-folders: the feature cache and checkpoints are large
/// and rebuilt), with size and SHA-256; paths are relative to the run folder `root`
/// (`finetune/metrics.json` for a fine-tune's).
fn artifacts(folder: &Path, root: &Path) -> Vec<Artifact> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let prefix: String = folder
        .strip_prefix(root)
        .ok()
        .map(|p| {
            p.components()
                .map(|c| format!("{}/", c.as_os_str().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    let mut out: Vec<Artifact> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with(".tmp") {
                return None;
            }
            artifact_at(&e.path(), format!("{prefix}{name}"))
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The files that make a run's model — what `graft serve` loads and the registry keeps for a
/// version, with the manifest of the images it learnt from — that exist, with size and
/// SHA-256, relative to the run folder.
pub fn model_files(run: &RunDir) -> Vec<Artifact> {
    [
        run.model_meta(),
        run.model_weights(),
        run.onnx(crate::Precision::Fp32),
        run.model_card(),
        run.class_info(),
        run.config(),
        run.manifest(),
        run.encoder_weights(),
    ]
    .iter()
    .filter_map(|path| artifact_at(path, path.file_name()?.to_string_lossy().into_owned()))
    .collect()
}

/// The file at `path`, recorded as `name`, with its size and SHA-256 (`None` when it is not a
/// readable file).
fn artifact_at(path: &Path, name: String) -> Option<Artifact> {
    let bytes = std::fs::metadata(path).ok().filter(|m| m.is_file())?.len();
    Some(Artifact {
        path: name,
        bytes,
        sha256: graft_data::hash::sha256_file(path).ok()?,
    })
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

    #[test]
    fn history_rows_become_step_metrics_with_times_from_their_seconds() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("history.csv");
        std::fs::write(
            &path,
            "epoch,train_loss,val_macro_f1,seconds\n1,1.5,0.5,0.25\n2,1.0,0.7,0.25\n",
        )
        .expect("write");
        let m = epoch_metrics(&path, 1_000);
        assert_eq!(m.len(), 4);
        let f1: Vec<_> = m.iter().filter(|m| m.key == "val_macro_f1").collect();
        assert_eq!((f1[1].step, f1[1].value, f1[1].time_ms), (2, 0.7, 1_500));
        assert!(m.iter().all(|m| m.key != "seconds" && m.key != "epoch"));
    }
}
