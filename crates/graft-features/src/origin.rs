//! `source.json`: where the images of a cache came from, so later stages (evaluation
//! galleries, prediction reports) can show the pictures behind feature rows. Kept out of
//! `cache.json` on purpose: caches built on different machines from different paths stay
//! identical and mergeable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::FeatureError;

pub const SOURCE_FILE: &str = "source.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The manifest or folder given to `graft extract` (absolute).
    pub data: PathBuf,
    /// Folder the cache's relative image paths start from.
    pub root: PathBuf,
}

impl Origin {
    /// For a manifest, its folder; for a dataset folder, the folder itself.
    pub fn of(data: &Path) -> Origin {
        let data = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
        let root = if data.is_dir() {
            data.clone()
        } else {
            data.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        Origin { data, root }
    }

    pub fn write(&self, cache_dir: &Path) -> Result<(), FeatureError> {
        let path = cache_dir.join(SOURCE_FILE);
        let json = serde_json::to_vec_pretty(self).unwrap_or_default();
        graft_data::atomic::write_atomic(&path, &json)
            .map_err(|e| FeatureError::io("write", &path, e))
    }

    /// The origin recorded in `cache_dir`, if any and readable.
    pub fn read(cache_dir: &Path) -> Option<Origin> {
        let bytes = std::fs::read(cache_dir.join(SOURCE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}
