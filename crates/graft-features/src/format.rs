//! The on-disk cache format.
//!
//! ```text
//! DIR/cache.json          header: encoder, weights, preprocess, dims, chunk size, items in order
//! DIR/shard-00000.f16     chunk 0: rows × feature_dim little-endian f16, row-major
//! DIR/spatial-00000.f16   chunk 0 (with --spatial): rows × C × H × W little-endian f16
//! DIR/failed-00000.json   chunk 0: images that could not be used (only when there are any)
//! ```
//! Chunk `k` holds items `[k*chunk, min((k+1)*chunk, total))`. Every file is written to
//! `NAME.tmp`, fsynced and renamed, so a file under its final name is always whole; the feature
//! shard is written last, so a chunk is complete exactly when its feature shard (and spatial
//! shard, if any) exist with the expected byte length.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use graft_data::preprocess::Preprocess;
use graft_data::scan::Split;
use half::f16;
use serde::{Deserialize, Serialize};

use crate::FeatureError;

pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_FILE: &str = "cache.json";
pub const DTYPE: &str = "f16";

/// One image of the cache, in cache order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheItem {
    /// blake3 of the file's bytes ([`graft_data::hash::content_hash`]).
    pub hash: String,
    /// Relative to the manifest's folder (or the dataset root), `/`-separated.
    pub path: String,
    pub label: String,
    pub split: Option<Split>,
}

/// Shape of the spatial map stored per image with `--spatial` (C × H × W).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpatialDims {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl SpatialDims {
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `cache.json`. It never changes after it is written (no timestamps, no progress), so every
/// process of a sharded run writes the identical file and resumes can compare it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheHeader {
    pub format_version: u32,
    pub encoder: graft_model::Encoder,
    /// Identity of the weights (sha256 or a prefix of it), as given by the caller.
    pub weights: String,
    pub preprocess: Preprocess,
    pub feature_dim: usize,
    pub dtype: String,
    pub spatial: Option<SpatialDims>,
    pub chunk: usize,
    pub total: usize,
    /// Class names; labels of `items` are among them.
    pub classes: Vec<String>,
    pub items: Vec<CacheItem>,
}

/// An image that got a zero row instead of features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedItem {
    pub index: usize,
    pub path: String,
    pub reason: String,
}

impl CacheHeader {
    pub fn chunks(&self) -> usize {
        self.total.div_ceil(self.chunk)
    }

    pub fn chunk_range(&self, k: usize) -> Range<usize> {
        let start = k * self.chunk;
        start..(start + self.chunk).min(self.total)
    }

    pub fn shard_bytes(&self, k: usize) -> u64 {
        (self.chunk_range(k).len() * self.feature_dim * 2) as u64
    }

    pub fn spatial_bytes(&self, k: usize) -> Option<u64> {
        self.spatial
            .map(|s| (self.chunk_range(k).len() * s.len() * 2) as u64)
    }

    /// What differs from `other`, in words, or `None` when they describe the same cache.
    pub fn difference(&self, other: &CacheHeader) -> Option<String> {
        let what = if self.format_version != other.format_version {
            format!(
                "format version ({} vs {})",
                self.format_version, other.format_version
            )
        } else if self.encoder != other.encoder {
            format!("encoder ({} vs {})", self.encoder, other.encoder)
        } else if self.weights != other.weights {
            format!("weights ({} vs {})", self.weights, other.weights)
        } else if self.preprocess != other.preprocess {
            "preprocessing".to_string()
        } else if self.feature_dim != other.feature_dim || self.dtype != other.dtype {
            "feature size or type".to_string()
        } else if self.spatial != other.spatial {
            "--spatial setting".to_string()
        } else if self.chunk != other.chunk {
            format!("--chunk ({} vs {})", self.chunk, other.chunk)
        } else if self.total != other.total || self.items != other.items {
            let first = self
                .items
                .iter()
                .zip(&other.items)
                .position(|(a, b)| a != b);
            match first {
                Some(i) => format!("image list (item {i} differs: {})", self.items[i].path),
                None => format!("image list ({} vs {} images)", self.total, other.total),
            }
        } else if self.classes != other.classes {
            "class list".to_string()
        } else {
            return None;
        };
        Some(what)
    }
}

pub fn shard_name(k: usize) -> String {
    format!("shard-{k:05}.f16")
}
pub fn spatial_name(k: usize) -> String {
    format!("spatial-{k:05}.f16")
}
pub fn failed_name(k: usize) -> String {
    format!("failed-{k:05}.json")
}
pub fn tmp_name(name: &str) -> String {
    format!("{name}.tmp")
}

/// Whether `name` is a file this crate writes (so `--force` may delete it).
pub(crate) fn is_cache_file(name: &str) -> bool {
    let base = name.strip_suffix(".tmp").unwrap_or(name);
    base == HEADER_FILE
        || base.starts_with("cache.json.")
        || ((base.starts_with("shard-") || base.starts_with("spatial-")) && base.ends_with(".f16"))
        || (base.starts_with("failed-") && base.ends_with(".json"))
}

fn file_len(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.len())
}

/// A chunk is complete when its shard files exist with exactly the expected length.
pub fn chunk_complete(dir: &Path, header: &CacheHeader, k: usize) -> bool {
    let shard_ok = file_len(&dir.join(shard_name(k))) == Some(header.shard_bytes(k));
    let spatial_ok = header
        .spatial_bytes(k)
        .is_none_or(|b| file_len(&dir.join(spatial_name(k))) == Some(b));
    shard_ok && spatial_ok
}

pub fn read_header(dir: &Path) -> Result<CacheHeader, FeatureError> {
    let path = dir.join(HEADER_FILE);
    let bytes = std::fs::read(&path).map_err(|e| FeatureError::io("read", &path, e))?;
    let header: CacheHeader =
        serde_json::from_slice(&bytes).map_err(|e| FeatureError::BadHeader {
            path: path.clone(),
            why: e.to_string(),
        })?;
    let bad = |why: &str| FeatureError::BadHeader {
        path: path.clone(),
        why: why.to_string(),
    };
    if header.format_version != FORMAT_VERSION {
        return Err(bad("unsupported format version"));
    }
    if header.dtype != DTYPE {
        return Err(bad("dtype is not f16"));
    }
    if header.chunk == 0 || header.items.len() != header.total {
        return Err(bad("chunk size is 0 or item count differs from total"));
    }
    Ok(header)
}

pub fn read_failed(dir: &Path, k: usize) -> Result<Vec<FailedItem>, FeatureError> {
    let path = dir.join(failed_name(k));
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| FeatureError::BadHeader {
            path,
            why: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(FeatureError::io("read", path, e)),
    }
}

/// Write `bytes` to `dir/name` so that a crash leaves either the old file, no file, or the
/// whole new one. The temporary name is the cache's own (`NAME.tmp`, `cache.json.tmp.PID`), which `--force`
/// recognises and clears ([`graft_data::atomic::write_atomic_via`] does the rest).
pub fn write_atomic(dir: &Path, name: &str, tmp: &str, bytes: &[u8]) -> Result<(), FeatureError> {
    let path = dir.join(name);
    graft_data::atomic::write_atomic_via(&path, &dir.join(tmp), |f| f.write_all(bytes))
        .map_err(|e| FeatureError::io("write", &path, e))
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<(), FeatureError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(FeatureError::io("delete", path, e))
        }
        _ => Ok(()),
    }
}

pub(crate) fn header_path(dir: &Path) -> PathBuf {
    dir.join(HEADER_FILE)
}

/// f32 → little-endian f16 bytes (round to nearest even; out-of-range values become ±inf).
pub fn f32_to_f16_bytes(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 2);
    for &v in values {
        out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
    }
    out
}

/// Little-endian f16 bytes → f32, into `out` (length `bytes.len() / 2`).
pub fn f16_bytes_to_f32(bytes: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_round_trip() {
        let v = [0.0f32, 1.0, -2.5, 0.1, 65504.0, 1e-8, 1e6, f32::NAN];
        let bytes = f32_to_f16_bytes(&v);
        assert_eq!(bytes.len(), v.len() * 2);
        assert_eq!(&bytes[2..4], &[0x00, 0x3c]); // 1.0 in f16, little-endian
        let mut back = [0.0f32; 8];
        f16_bytes_to_f32(&bytes, &mut back);
        assert_eq!(&back[..3], &[0.0, 1.0, -2.5]);
        assert!((back[3] - 0.1).abs() < 1e-4);
        assert_eq!(back[4], 65504.0);
        assert_eq!(back[5], 0.0); // below f16's smallest subnormal
        assert!(back[6].is_infinite());
        assert!(back[7].is_nan());
    }

    #[test]
    fn cache_files_are_recognised() {
        for n in [
            "cache.json",
            "cache.json.tmp.123",
            "shard-00001.f16",
            "shard-00001.f16.tmp",
            "spatial-00000.f16",
            "failed-00002.json",
        ] {
            assert!(is_cache_file(n), "{n}");
        }
        for n in ["notes.txt", "shard.txt", "model.safetensors"] {
            assert!(!is_cache_file(n), "{n}");
        }
    }
}
