//! A run's feature cache and the images it holds back from training: what evaluation scores,
//! export validates on and INT8 calibrates from.

use std::path::{Path, PathBuf};

use graft_data::scan::Split;
use graft_features::{FeatureCache, Origin};
use graft_train::HeadModel;

use crate::files::{read_json, RunInfo};
use crate::{RunDir, RunError};

/// The feature cache a run was trained on (from its run.json), unless given.
pub fn features_of(run: &RunDir, given: Option<&Path>) -> Result<PathBuf, RunError> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let path = run.info();
    let info: RunInfo = read_json(&path).map_err(|e| match e {
        RunError::Missing { .. } | RunError::Read { .. } => RunError::Invalid(format!(
            "reading {} (is {} a run folder from `graft train`? Or pass --features): {e}",
            path.display(),
            run.root().display()
        )),
        other => other,
    })?;
    Ok(info.features)
}

/// The feature cache in `features`, checked to hold the encoder and weights `model` was
/// trained on.
pub fn open_run_cache(features: &Path, model: &HeadModel) -> Result<FeatureCache, RunError> {
    let cache = FeatureCache::open(features).map_err(|e| {
        RunError::Invalid(format!(
            "opening the feature cache {}: {e}",
            features.display()
        ))
    })?;
    let h = cache.header();
    if h.encoder != model.meta.encoder || h.weights != model.meta.weights {
        return Err(RunError::Invalid(format!(
            "{} holds {} ({}) features, but the run was trained on {} ({})",
            features.display(),
            h.encoder,
            h.weights,
            model.meta.encoder,
            model.meta.weights
        )));
    }
    Ok(cache)
}

/// Usable rows (failed images left out) of `split`; when that is test and there is none, the
/// val rows instead. Returns the split the rows belong to.
pub fn held_out_rows(cache: &FeatureCache, split: Split) -> (Split, Vec<usize>) {
    let items = &cache.header().items;
    let rows_of = |s: Split| -> Vec<usize> {
        (0..cache.len())
            .filter(|&i| !cache.is_failed(i) && items[i].split == Some(s))
            .collect()
    };
    let rows = rows_of(split);
    if rows.is_empty() && split == Split::Test {
        let val = rows_of(Split::Val);
        if !val.is_empty() {
            return (Split::Val, val);
        }
    }
    (split, rows)
}

/// Paths of up to `n` images of the run's test split (val if none), from its feature cache.
pub fn held_out_images(
    run: &RunDir,
    model: &HeadModel,
    n: usize,
) -> Result<Vec<PathBuf>, RunError> {
    Ok(split_images(run, model, Split::Test, n)?
        .into_iter()
        .map(|(p, _)| p)
        .collect())
}

/// Up to `n` images (path, label) of the run's `split`, spread evenly over the split (a cache
/// is often ordered by class); test falls back to val as in [`held_out_rows`].
pub fn split_images(
    run: &RunDir,
    model: &HeadModel,
    split: Split,
    n: usize,
) -> Result<Vec<(PathBuf, String)>, RunError> {
    let features = features_of(run, None)?;
    let cache = open_run_cache(&features, model)?;
    let origin = origin_of(&features)?;
    let items = &cache.header().items;
    let (_, rows) = held_out_rows(&cache, split);
    Ok(spread(&rows, n)
        .into_iter()
        .map(|i| (origin.root.join(&items[i].path), items[i].label.clone()))
        .collect())
}

/// Where the images of the feature cache in `features` lie.
pub fn origin_of(features: &Path) -> Result<Origin, RunError> {
    Origin::read(features).ok_or_else(|| {
        RunError::Invalid(format!(
            "{} does not say where its images are (source.json)",
            features.display()
        ))
    })
}

/// At most `n` of `rows`, spread evenly over them (a cache is often ordered by class).
pub fn spread(rows: &[usize], n: usize) -> Vec<usize> {
    let take = n.min(rows.len());
    (0..take).map(|k| rows[k * rows.len() / take]).collect()
}

/// The model's inputs for `rows` of the cache (pooled rows, or feature maps for heads that
/// read them) and their labels as the model's class indices.
pub fn model_inputs(
    cache: &FeatureCache,
    model: &HeadModel,
    rows: &[usize],
    features: &Path,
) -> Result<(Vec<usize>, Vec<f32>), RunError> {
    let h = cache.header();
    let mut labels = Vec::with_capacity(rows.len());
    let mut x = Vec::with_capacity(rows.len() * model.row_len());
    for &i in rows {
        let name = &h.items[i].label;
        let Some(y) = model.meta.classes.iter().position(|c| c == name) else {
            return Err(RunError::Invalid(format!(
                "class {name:?} of {} is unknown to the model",
                h.items[i].path
            )));
        };
        labels.push(y);
        let row = if model.reads_maps() {
            cache.spatial_row(i).ok_or_else(|| {
                RunError::Invalid(format!(
                    "the run's {} head reads feature maps, and {} has none (extract with --spatial)",
                    model.meta.head,
                    features.display()
                ))
            })?
        } else {
            cache
                .row(i)
                .ok_or_else(|| RunError::Invalid(format!("{}: no row {i}", features.display())))?
        };
        x.extend(row);
    }
    Ok((labels, x))
}
