//! The images to extract, in the one order the cache uses: manifest order, or scan order
//! (sorted by relative path) for a dataset folder.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::format::CacheItem;
use crate::FeatureError;

/// The images of a run and where to read them.
#[derive(Debug, Clone)]
pub struct Source {
    /// Items as stored in `cache.json` (relative paths).
    pub items: Vec<CacheItem>,
    /// Where each item is read from (same order as `items`).
    pub files: Vec<PathBuf>,
    pub classes: Vec<String>,
}

fn rel_string(path: &Path, base: &Path) -> String {
    let rel = path.strip_prefix(base).unwrap_or(path);
    rel.to_string_lossy().replace('\\', "/")
}

impl Source {
    /// Items of a split manifest (`path,label,split,hash`), in file order. Classes are the
    /// sorted distinct labels.
    pub fn from_manifest(manifest: &Path) -> Result<Source, FeatureError> {
        let rows = graft_data::split::read_manifest(manifest)?;
        let base = manifest.parent().unwrap_or_else(|| Path::new("."));
        let mut classes: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
        classes.sort();
        classes.dedup();
        let items = rows
            .iter()
            .map(|r| CacheItem {
                hash: r.hash.clone(),
                path: rel_string(&r.path, base),
                label: r.label.clone(),
                split: Some(r.split),
            })
            .collect();
        let files = rows.into_iter().map(|r| r.path).collect();
        Ok(Source {
            items,
            files,
            classes,
        })
    }

    /// Items of an ImageFolder (or pre-split) folder in scan order. Files are hashed here, in
    /// parallel, so a resumed run notices an image that changed in between. An unreadable file
    /// gets an empty hash (and fails again, recorded, during extraction).
    pub fn from_dir(dir: &Path) -> Result<Source, FeatureError> {
        let ds = graft_data::scan::scan(dir)?;
        let hashes: Vec<String> = ds
            .entries
            .par_iter()
            .map(|e| {
                std::fs::read(&e.path)
                    .map(|b| graft_data::hash::content_hash(&b))
                    .unwrap_or_default()
            })
            .collect();
        let items = ds
            .entries
            .iter()
            .zip(hashes)
            .map(|(e, hash)| CacheItem {
                hash,
                path: e.rel.clone(),
                label: e.class.clone(),
                split: e.split,
            })
            .collect();
        Ok(Source {
            items,
            files: ds.entries.into_iter().map(|e| e.path).collect(),
            classes: ds.classes,
        })
    }

    /// A manifest file or a dataset folder, whichever `path` is.
    pub fn open(path: &Path) -> Result<Source, FeatureError> {
        if path.is_dir() {
            Source::from_dir(path)
        } else {
            Source::from_manifest(path)
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}
