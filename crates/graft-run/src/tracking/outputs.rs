//! What a finished stage left in the run folder, read for its tracked run: parameters, step
//! and final metrics (history and sweep tables, evaluation, explanations), and the files
//! written, each with its SHA-256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use graft_track::{Artifact, Metric, Params};

use super::{flatten, Job};
use crate::files::{read_json, read_json_if_exists, FinetuneMetrics};
use crate::{ExportRecords, Metrics, RunDir};

/// What a finished stage left to record.
pub(super) struct Outputs {
    pub(super) folder: PathBuf,
    pub(super) params: Params,
    pub(super) metrics: Vec<Metric>,
}

pub(super) fn outputs(job: Job, run: &RunDir, start_ms: i64) -> Outputs {
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
pub(super) fn artifacts(folder: &Path, root: &Path) -> Vec<Artifact> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
