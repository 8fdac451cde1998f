//! Reading a finished cache: shards are memory-mapped and converted to f32 on access.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use graft_data::scan::Split;
use memmap2::Mmap;

use crate::format::{
    chunk_complete, f16_bytes_to_f32, read_failed, read_header, shard_name, spatial_name,
    CacheHeader, FailedItem,
};
use crate::merge::describe_missing;
use crate::FeatureError;

/// A complete feature cache, opened for reading.
#[derive(Debug)]
pub struct FeatureCache {
    dir: PathBuf,
    header: CacheHeader,
    shards: Vec<Mmap>,
    spatial: Vec<Mmap>,
    failed: Vec<FailedItem>,
    is_failed: Vec<bool>,
    /// Class index of every item.
    labels: Vec<usize>,
}

/// Every usable row, ready for head training.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedFeatures {
    pub feature_dim: usize,
    /// `len × feature_dim`, row-major.
    pub features: Vec<f32>,
    /// Index into [`CacheHeader::classes`].
    pub labels: Vec<usize>,
    pub splits: Vec<Option<Split>>,
    /// Position of each row among the cache's items (failed images are left out).
    pub items: Vec<usize>,
}

impl LoadedFeatures {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.feature_dim..(i + 1) * self.feature_dim]
    }
}

impl FeatureCache {
    /// Open the cache in `dir`; every chunk must be complete.
    pub fn open(dir: &Path) -> Result<FeatureCache, FeatureError> {
        let header = read_header(dir)?;
        let index: HashMap<&str, usize> = header
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let labels = header
            .items
            .iter()
            .map(|it| index.get(it.label.as_str()).copied())
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| FeatureError::BadHeader {
                path: dir.join(crate::format::HEADER_FILE),
                why: "an item's label is not in the class list".into(),
            })?;
        let missing: Vec<usize> = (0..header.chunks())
            .filter(|&k| !chunk_complete(dir, &header, k))
            .collect();
        if !missing.is_empty() {
            return Err(FeatureError::Incomplete {
                dir: dir.to_path_buf(),
                count: missing.len(),
                total: header.chunks(),
                missing: describe_missing(&header, &missing),
            });
        }
        let mut shards = Vec::with_capacity(header.chunks());
        let mut spatial = Vec::new();
        let mut failed = Vec::new();
        for k in 0..header.chunks() {
            shards.push(map(&dir.join(shard_name(k)))?);
            if header.spatial.is_some() {
                spatial.push(map(&dir.join(spatial_name(k)))?);
            }
            failed.extend(read_failed(dir, k)?);
        }
        let mut is_failed = vec![false; header.total];
        for f in &failed {
            if let Some(x) = is_failed.get_mut(f.index) {
                *x = true;
            }
        }
        Ok(FeatureCache {
            dir: dir.to_path_buf(),
            header,
            shards,
            spatial,
            failed,
            is_failed,
            labels,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn header(&self) -> &CacheHeader {
        &self.header
    }
    pub fn len(&self) -> usize {
        self.header.total
    }
    pub fn is_empty(&self) -> bool {
        self.header.total == 0
    }
    pub fn feature_dim(&self) -> usize {
        self.header.feature_dim
    }
    pub fn classes(&self) -> &[String] {
        &self.header.classes
    }
    /// Class index of item `i`.
    pub fn label(&self, i: usize) -> Option<usize> {
        self.labels.get(i).copied()
    }
    /// Images that got a zero row, in item order.
    pub fn failed(&self) -> &[FailedItem] {
        &self.failed
    }
    pub fn is_failed(&self, i: usize) -> bool {
        self.is_failed.get(i).copied().unwrap_or(false)
    }

    fn bytes<'a>(&self, maps: &'a [Mmap], i: usize, width: usize) -> Option<&'a [u8]> {
        if i >= self.header.total {
            return None;
        }
        let (k, r) = (i / self.header.chunk, i % self.header.chunk);
        maps.get(k)?.get(r * width * 2..(r + 1) * width * 2)
    }

    /// Features of item `i` as f32 into `out` (length `feature_dim`); false if `i` is out of range.
    pub fn row_into(&self, i: usize, out: &mut [f32]) -> bool {
        let dim = self.header.feature_dim;
        match self.bytes(&self.shards, i, dim) {
            Some(b) if out.len() == dim => {
                f16_bytes_to_f32(b, out);
                true
            }
            _ => false,
        }
    }

    pub fn row(&self, i: usize) -> Option<Vec<f32>> {
        let mut out = vec![0.0; self.header.feature_dim];
        self.row_into(i, &mut out).then_some(out)
    }

    /// Spatial map of item `i` (C × H × W), when the cache has them.
    pub fn spatial_row(&self, i: usize) -> Option<Vec<f32>> {
        let width = self.header.spatial?.len();
        let b = self.bytes(&self.spatial, i, width)?;
        let mut out = vec![0.0; width];
        f16_bytes_to_f32(b, &mut out);
        Some(out)
    }

    /// Spatial maps (C × H × W each) of `items`, in that order; `None` when the cache has none.
    pub fn load_spatial(&self, items: &[usize]) -> Option<Vec<f32>> {
        let width = self.header.spatial?.len();
        let mut out = vec![0.0; items.len() * width];
        for (row, &i) in out.chunks_exact_mut(width.max(1)).zip(items) {
            let b = self.bytes(&self.spatial, i, width)?;
            f16_bytes_to_f32(b, row);
        }
        Some(out)
    }

    /// All usable rows (failed images left out) with their labels and splits.
    pub fn load_all(&self) -> LoadedFeatures {
        let dim = self.header.feature_dim;
        let keep: Vec<usize> = (0..self.len()).filter(|&i| !self.is_failed(i)).collect();
        let mut features = vec![0.0; keep.len() * dim];
        for (row, &i) in features.chunks_exact_mut(dim.max(1)).zip(&keep) {
            self.row_into(i, row);
        }
        let items = &self.header.items;
        let labels = keep.iter().map(|&i| self.labels[i]).collect();
        LoadedFeatures {
            feature_dim: dim,
            features,
            labels,
            splits: keep.iter().map(|&i| items[i].split).collect(),
            items: keep,
        }
    }
}

#[allow(unsafe_code)]
fn map(path: &Path) -> Result<Mmap, FeatureError> {
    let file = File::open(path).map_err(|e| FeatureError::io("open", path, e))?;
    // SAFETY: shards are only ever created by rename and never modified in place, so the
    // mapped bytes do not change under us unless someone truncates a finished shard by hand.
    unsafe { Mmap::map(&file) }.map_err(|e| FeatureError::io("memory-map", path, e))
}
