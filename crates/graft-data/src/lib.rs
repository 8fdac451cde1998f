//! graft's data layer: everything between a folder of photos and a split manifest.
//!
//! - [`scan`] finds images in an ImageFolder (`DIR/<class>/…`) or pre-split
//!   (`DIR/{train,val,test}/<class>/…`) layout.
//! - [`decode`] turns any supported file into RGB8, honouring EXIF orientation.
//! - [`hash`] computes content hashes and perceptual hashes, and finds near duplicates.
//! - [`audit`] checks a dataset before training.
//! - [`split`] writes a stratified, deterministic train/val/test manifest.
//! - [`idx`] imports MNIST-format idx files.
//! - [`atomic`] is the one atomic file write every crate uses.
//! - [`class_info`] reads the per-class information (`classes.toml`) shown with predictions.

pub mod analyze;
pub mod atomic;
pub mod audit;
pub mod augment;
pub mod class_info;
pub mod decode;
pub mod drift;
pub mod embedding;
pub mod error;
pub mod hash;
pub mod idx;
pub mod image_stats;
pub mod manifest_diff;
pub mod preprocess;
pub mod rng;
pub mod scan;
pub mod split;
pub mod table;

pub use error::DataError;
