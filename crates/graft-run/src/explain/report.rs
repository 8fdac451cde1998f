//! The "Explanations" section of `report.html`: what `graft explain` wrote for the run's
//! current model — a summary row per explained set, the class means and a few mistakes.

use graft_eval::report::Explanations;

use super::record;
use crate::RunDir;

/// Mistake figures shown at most.
const MISTAKES: usize = 6;

/// The section, or `None` when nothing was explained since the model was last trained.
pub fn section(run: &RunDir) -> Option<Explanations> {
    let root = run.root().join("explain");
    let mut sets: Vec<_> = std::fs::read_dir(&root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    sets.sort();
    let mut out = Explanations {
        header: [
            "set",
            "method",
            "layer",
            "images",
            "suspicious",
            "confidence drop",
            "concentration",
            "deletion AUC",
            "insertion AUC",
        ]
        .map(String::from)
        .to_vec(),
        ..Explanations::default()
    };
    for set in &sets {
        let name = set
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let means = set.join("class_means.png");
        if run.is_current(&means) {
            if let Ok(png) = std::fs::read(&means) {
                out.figures
                    .push(("mean maps per class and per confusion".into(), png));
            }
        }
        let log = set.join(record::FILE);
        if !run.is_current(&log) {
            continue;
        }
        let Ok(recs) = record::read(&log) else {
            continue;
        };
        if recs.is_empty() {
            continue;
        }
        let n = recs.len() as f64;
        let mean = |f: fn(&record::ExplainRecord) -> f32| {
            format!(
                "{:.3}",
                recs.iter().map(|r| f64::from(f(r))).sum::<f64>() / n
            )
        };
        out.rows.push(vec![
            name.clone(),
            recs[0].method.clone(),
            recs[0].layer.clone(),
            recs.len().to_string(),
            recs.iter().filter(|r| r.suspicious).count().to_string(),
            mean(|r| r.quality.confidence_drop),
            mean(|r| r.quality.concentration),
            mean(|r| r.quality.deletion_auc),
            mean(|r| r.quality.insertion_auc),
        ]);
        if name == "misclassified" {
            for r in recs.iter().take(MISTAKES) {
                let Some(png) = r
                    .figure
                    .as_ref()
                    .and_then(|f| std::fs::read(set.join(f)).ok())
                else {
                    continue;
                };
                let caption = format!(
                    "{}: true {}, predicted {} ({:.0} %)",
                    std::path::Path::new(&r.path)
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    r.truth.as_deref().unwrap_or("?"),
                    r.predicted,
                    r.probability * 100.0
                );
                out.figures.push((caption, png));
            }
        }
    }
    (!out.rows.is_empty() || !out.figures.is_empty()).then_some(out)
}
