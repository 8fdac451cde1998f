//! A tune as the tracking store records it: every trial's val macro-F1 as a step metric (the
//! step is the trial's number), the best so far, the winner's settings as parameters and its
//! scores as final metrics.

use std::collections::BTreeMap;

use super::trials::{self, SearchSpec, TuneDir};
use super::TuneSummary;
use crate::files::read_json;
use crate::tracking::Recorded;
use crate::RunDir;

/// What the tune written last (at or after `since_ms`) in `run` leaves to record.
pub fn newest(run: &RunDir, since_ms: i64) -> Option<Recorded> {
    let folder =
        crate::tracking::newest_written(&run.root().join("tune"), trials::SUMMARY, since_ms)?;
    let dir = TuneDir::new(&folder);
    let summary: TuneSummary = read_json(&dir.summary()).ok()?;
    let spec: SearchSpec = read_json(&dir.search()).ok()?;
    let all = trials::read(&dir.trials(), &spec.space).ok()?;
    let mut metrics = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for t in &all {
        best = best.max(t.val_macro_f1);
        let step = t.trial as i64;
        metrics.push(("trial_val_macro_f1".to_string(), t.val_macro_f1, step));
        metrics.push(("best_val_macro_f1_so_far".to_string(), best, step));
    }
    let b = &summary.best;
    let mut put = |k: &str, v: f64| metrics.push((k.to_string(), v, 0));
    put("best_val_macro_f1", b.val_macro_f1);
    put("best_val_accuracy", b.val_accuracy);
    put("trials_finished", summary.trials_finished as f64);
    put("tune_seconds", summary.seconds);
    if let Some(t) = &b.test {
        put("test_macro_f1", t.macro_f1);
        put("test_accuracy", t.accuracy);
    }
    if let Some(s) = summary.sweep_best_val_macro_f1 {
        put("sweep_best_val_macro_f1", s);
    }
    let mut params: BTreeMap<String, String> = b
        .params
        .iter()
        .map(|(k, v)| (format!("best.{k}"), v.clone()))
        .collect();
    params.insert("best.trial".into(), b.trial.to_string());
    params.insert(
        "stopped".into(),
        format!("{:?}", summary.stopped).to_lowercase(),
    );
    Some(Recorded {
        folder,
        params,
        metrics,
    })
}
