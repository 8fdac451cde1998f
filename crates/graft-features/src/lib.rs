//! graft's feature cache: run a frozen encoder over a dataset once and keep the features.
//!
//! - [`extract()`] decodes and preprocesses in parallel, encodes in batches and writes one f16
//!   shard per chunk of images; it resumes after a crash and splits work with [`Shard`].
//! - [`merge()`] gathers the chunks of a sharded run and reports exactly what is missing.
//! - [`FeatureCache`] memory-maps a finished cache for training.
//!
//! See [`format`] for the files on disk.

pub mod error;
pub mod extract;
pub mod format;
pub mod merge;
pub mod origin;
pub mod reader;
pub mod shard;
pub mod source;

pub use error::FeatureError;
pub use extract::{
    extract, ExtractOptions, ExtractSummary, Progress, DEFAULT_BATCH, DEFAULT_CHUNK,
};
pub use format::{CacheHeader, CacheItem, FailedItem, SpatialDims};
pub use merge::{merge, MergeReport};
pub use origin::Origin;
pub use reader::{FeatureCache, LoadedFeatures};
pub use shard::Shard;
pub use source::Source;
