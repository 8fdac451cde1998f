//! Stage 2 of a run: the frozen encoder over every image, into a resumable feature cache.

use std::path::{Path, PathBuf};

use graft_features::{ExtractOptions, ExtractSummary, Shard, Source};
use graft_model::Encoder;

use crate::encoder::{open_encoder, weights_id};
use crate::error::Context;
use crate::report::{Event, Reporter};
use crate::{Backend, RunError};

/// What to extract, and how.
#[derive(Debug, Clone)]
pub struct ExtractRequest {
    /// A manifest (manifest.csv) or an image folder.
    pub data: PathBuf,
    pub encoder: Encoder,
    /// The cache folder.
    pub out: PathBuf,
    pub batch: usize,
    pub chunk: usize,
    pub shard: Shard,
    /// Also keep the last feature maps (for attention heads).
    pub spatial: bool,
    pub backend: Backend,
    /// Start over instead of continuing the chunks already written.
    pub force: bool,
}

/// Told before the first image is encoded.
#[derive(Debug)]
pub struct ExtractStarted {
    pub images: usize,
    pub encoder: Encoder,
    /// The engine that runs it ("onnxruntime", "burn-ndarray", …).
    pub backend: &'static str,
    pub out: PathBuf,
    pub shard: Shard,
}

/// What an extraction did.
#[derive(Debug)]
pub struct Extracted {
    pub summary: ExtractSummary,
    pub encoder: Encoder,
    pub backend: &'static str,
    pub out: PathBuf,
    pub shard: Shard,
}

impl Extracted {
    /// Wall-clock seconds, never zero (it divides).
    pub fn seconds(&self) -> f64 {
        self.summary.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn images_per_second(&self) -> f64 {
        self.summary.images_encoded as f64 / self.seconds()
    }
}

/// Build, or continue, the feature cache `req.out`.
pub fn extract(req: &ExtractRequest, reporter: &dyn Reporter) -> Result<Extracted, RunError> {
    let data = &req.data;
    if !data.exists() {
        return Err(RunError::Missing { path: data.clone() });
    }
    // Encoder before data: loading weights fails fast, hashing a large folder does not.
    let req = &ExtractRequest {
        encoder: req.encoder.resolve()?,
        ..req.clone()
    };
    let mut encoder = open_encoder(&req.encoder, req.backend)?;
    let source = Source::open(data).with_context(|| format!("reading {}", data.display()))?;
    let opts = ExtractOptions {
        batch: req.batch,
        chunk: req.chunk,
        shard: req.shard,
        spatial: req.spatial,
        force: req.force,
        ..ExtractOptions::new(
            req.encoder.clone(),
            weights_id(&req.encoder)?,
            req.encoder.preprocess(),
        )
    };
    let backend = encoder.backend();
    reporter.event(Event::ExtractStarted(&ExtractStarted {
        images: source.len(),
        encoder: req.encoder.clone(),
        backend,
        out: req.out.clone(),
        shard: req.shard,
    }));
    let bar = reporter.bar("extract", 0);
    let summary = graft_features::extract(&req.out, &source, encoder.as_mut(), &opts, &mut |p| {
        bar.set_length(p.todo as u64);
        bar.set_position(p.done as u64);
    })
    .with_context(|| format!("extracting features into {}", req.out.display()))?;
    drop(bar);
    graft_features::Origin::of(data).write(&req.out)?;
    let done = Extracted {
        summary,
        encoder: req.encoder.clone(),
        backend,
        out: req.out.clone(),
        shard: req.shard,
    };
    reporter.event(Event::Extracted(&done));
    Ok(done)
}

/// True when the cache in `features` was built from another manifest than `manifest`.
pub fn cache_stale(features: &Path, manifest: &Path) -> bool {
    let (Ok(header), Ok(rows)) = (
        graft_features::format::read_header(features),
        graft_data::split::read_manifest(manifest),
    ) else {
        return false;
    };
    header.total != rows.len()
        || header
            .items
            .iter()
            .zip(&rows)
            .any(|(item, row)| item.hash != row.hash || item.label != row.label)
}

/// True when the cache in `features` exists and was made by another encoder or other weights
/// than `encoder`'s as they are now.
pub fn other_weights(features: &Path, encoder: &Encoder) -> Result<bool, RunError> {
    let Ok(header) = graft_features::format::read_header(features) else {
        return Ok(false);
    };
    Ok(header.encoder != *encoder || header.weights != weights_id(encoder)?)
}

/// True when the cache in `features` exists and holds (or lacks) feature maps against `spatial`.
pub fn spatial_changed(features: &Path, spatial: bool) -> bool {
    graft_features::format::read_header(features)
        .is_ok_and(|header| header.spatial.is_some() != spatial)
}
