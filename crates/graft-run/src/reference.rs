//! A run's reference profile (`reference.json`): what the images the model learnt from look
//! like — the statistics graft serve records for each request (size, channel means and
//! spreads, brightness, sharpness), the class prior, and the validation split's confidence —
//! so `graft monitor` judges production traffic against what the model learnt from.

use std::collections::BTreeMap;

use graft_data::embedding::Projection;
use graft_data::image_stats::{image_stats, ImageStats};
use graft_data::scan::Split;
use graft_train::HeadModel;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::Context;
use crate::files::write_json;
use crate::held_out::{
    features_of, held_out_rows, model_inputs, open_run_cache, origin_of, spread,
};
use crate::{RunDir, RunError};

/// Training images whose statistics are taken, at most (spread over the split).
pub const MAX_IMAGES: usize = 2000;
/// Training rows whose embedding summaries are kept, at most (the MMD test is quadratic).
pub const MAX_EMBEDDINGS: usize = 500;

/// The reference profile of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Statistics of the training images (a spread sample of at most [`MAX_IMAGES`]).
    pub images: Vec<ImageStats>,
    /// Share of each class among the training images.
    pub class_prior: BTreeMap<String, f64>,
    /// Mean top-1 probability on the validation split (calibrated, as served); none without
    /// a validation split.
    pub val_mean_confidence: Option<f64>,
    /// Validation images scored.
    pub val_images: usize,
    /// Embedding summaries ([`graft_data::embedding`]) of training rows, from the feature
    /// cache (a spread sample of at most [`MAX_EMBEDDINGS`]); none for a fine-tuned run, whose
    /// encoder no longer gives the cached features, and in profiles from before they existed.
    #[serde(default)]
    pub embeddings: Option<Vec<Vec<f32>>>,
}

/// Build the profile of `run` from its feature cache (labels, splits and image paths) and its
/// model (validation confidence); the images are decoded again, the encoder is not run.
pub fn build(run: &RunDir) -> Result<Reference, RunError> {
    let model = HeadModel::load(run.root())
        .with_context(|| format!("loading the model of run {}", run.root().display()))?;
    let features = features_of(run, None)?;
    let cache = open_run_cache(&features, &model)?;
    let origin = origin_of(&features)?;
    let items = &cache.header().items;
    let train: Vec<usize> = (0..cache.len())
        .filter(|&i| !cache.is_failed(i) && items[i].split == Some(Split::Train))
        .collect();
    if train.is_empty() {
        return Err(RunError::Invalid(format!(
            "{} has no training images",
            features.display()
        )));
    }
    let mut prior: BTreeMap<String, f64> = BTreeMap::new();
    for &i in &train {
        *prior.entry(items[i].label.clone()).or_default() += 1.0;
    }
    for v in prior.values_mut() {
        *v /= train.len() as f64;
    }
    let images: Vec<ImageStats> = spread(&train, MAX_IMAGES)
        .par_iter()
        .filter_map(|&i| {
            let path = origin.root.join(&items[i].path);
            graft_data::decode::read_and_decode(&path)
                .ok()
                .map(|(_, img)| image_stats(&img))
        })
        .collect();
    let embeddings = model.meta.encoder_file.is_none().then(|| {
        let projection = Projection::new(cache.feature_dim());
        spread(&train, MAX_EMBEDDINGS)
            .into_iter()
            .filter_map(|i| cache.row(i).and_then(|r| projection.project(&r)))
            .map(|e| e.to_vec())
            .collect()
    });
    let (_, val) = held_out_rows(&cache, Split::Val);
    let (val_mean_confidence, val_images) = if val.is_empty() {
        (None, 0)
    } else {
        let (_, x) = model_inputs(&cache, &model, &val, &features)?;
        let probs = model.predict_proba(&x, val.len());
        let k = model.meta.classes.len();
        let sum: f64 = probs
            .chunks(k)
            .map(|p| f64::from(p.iter().copied().fold(0.0f32, f32::max)))
            .sum();
        (Some(sum / val.len() as f64), val.len())
    };
    Ok(Reference {
        images,
        class_prior: prior,
        val_mean_confidence,
        val_images,
        embeddings,
    })
}

/// Build the profile and write it to `RUN/reference.json`.
pub fn write(run: &RunDir) -> Result<Reference, RunError> {
    let r = build(run)?;
    write_json(&run.reference(), &r)?;
    Ok(r)
}
