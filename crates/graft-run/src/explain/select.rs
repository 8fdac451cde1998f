//! Which images a mode explains: a folder's, or the run's test mistakes.

use std::path::Path;

use graft_data::scan::Split;
use graft_train::HeadModel;

use super::Item;
use crate::held_out::{features_of, held_out_rows, model_inputs, open_run_cache, origin_of};
use crate::{RunDir, RunError};

/// Every image under `dir` (sorted), its true class the name of its folder when the model knows
/// that class.
pub fn folder_images(dir: &Path, classes: &[String]) -> Result<Vec<Item>, RunError> {
    if !dir.is_dir() {
        return Err(RunError::Missing {
            path: dir.to_path_buf(),
        });
    }
    let mut items = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry =
            entry.map_err(|e| RunError::Invalid(format!("reading {}: {e}", dir.display())))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if !entry.file_type().is_file() || hidden || !graft_data::scan::is_image_name(path) {
            continue;
        }
        items.push(Item::in_class_folder(path.to_path_buf(), classes));
    }
    Ok(items)
}

/// Up to `limit` images of the run's `split` (test falls back to val), spread over it, with
/// their labels.
pub fn split_items(
    run: &RunDir,
    model: &HeadModel,
    split: Split,
    limit: usize,
) -> Result<Vec<Item>, RunError> {
    Ok(crate::held_out::split_images(run, model, split, limit)?
        .into_iter()
        .map(|(path, label)| Item {
            path,
            truth: Some(label),
        })
        .collect())
}

/// The order of `--misclassified`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum MistakeOrder {
    /// The most confident mistakes first: the ones a user trusts wrongly.
    #[default]
    Confidence,
    /// A seeded shuffle: a fair sample.
    Random,
}

/// The run's test-split mistakes (val when it has no test split), by the head on the cached
/// features, at most `limit`.
pub fn misclassified(
    run: &RunDir,
    model: &HeadModel,
    limit: usize,
    order: MistakeOrder,
    seed: u64,
) -> Result<Vec<Item>, RunError> {
    let features = features_of(run, None)?;
    let cache = open_run_cache(&features, model)?;
    let origin = origin_of(&features)?;
    let (_, rows) = held_out_rows(&cache, Split::Test);
    let (labels, x) = model_inputs(&cache, model, &rows, &features)?;
    let probs = model.predict_proba(&x, rows.len());
    let k = model.meta.classes.len();
    // Predicted as graft eval predicts, so these are the report's mistakes.
    let predicted = graft_train::metrics::argmax_rows(&probs, k);
    let mut wrong: Vec<(usize, f32)> = Vec::new();
    for (i, ((&row, &y), &pred)) in rows.iter().zip(&labels).zip(&predicted).enumerate() {
        if pred != y {
            wrong.push((row, probs[i * k + pred]));
        }
    }
    match order {
        MistakeOrder::Confidence => wrong.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))),
        MistakeOrder::Random => {
            let mut rng = graft_data::rng::SplitMix64::new(seed);
            for i in (1..wrong.len()).rev() {
                let j = (rng.next_f64() * (i + 1) as f64) as usize;
                wrong.swap(i, j.min(i));
            }
        }
    }
    let items = &cache.header().items;
    Ok(wrong
        .into_iter()
        .take(limit)
        .map(|(row, _)| Item {
            path: origin.root.join(&items[row].path),
            truth: Some(items[row].label.clone()),
        })
        .collect())
}
