//! Bringing the parts of a sharded run together and checking that nothing is missing.

use std::path::{Path, PathBuf};

use crate::format::{
    chunk_complete, failed_name, header_path, read_header, remove_if_exists, shard_name,
    spatial_name, tmp_name, write_atomic, CacheHeader, HEADER_FILE,
};
use crate::FeatureError;

#[derive(Debug, Clone)]
pub struct MergeReport {
    pub chunks_total: usize,
    /// Chunks copied in, with the folder each came from.
    pub copied: Vec<(usize, PathBuf)>,
    /// Chunks that are still missing (complete in no folder).
    pub missing: Vec<usize>,
    pub header: CacheHeader,
}

impl MergeReport {
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
    /// The missing chunks and their image ranges in words ("chunks 3, 5-7 (images 768-1023, …)").
    pub fn describe_missing(&self) -> String {
        describe_missing(&self.header, &self.missing)
    }
}

/// Complete the cache in `out` with chunks from the folders `from` (each must hold the same
/// cache: identical `cache.json`). With no `from`, only checks `out`. When `out` has no
/// `cache.json` yet, the first folder's is used.
pub fn merge(out: &Path, from: &[PathBuf]) -> Result<MergeReport, FeatureError> {
    std::fs::create_dir_all(out).map_err(|e| FeatureError::io("create", out, e))?;
    let header = if header_path(out).exists() {
        read_header(out)?
    } else {
        let first = from.first().ok_or_else(|| FeatureError::BadHeader {
            path: header_path(out),
            why: "missing; nothing to merge".into(),
        })?;
        let h = read_header(first)?;
        let bytes = std::fs::read(header_path(first))
            .map_err(|e| FeatureError::io("read", header_path(first), e))?;
        let tmp = format!("{HEADER_FILE}.tmp.{}", std::process::id());
        write_atomic(out, HEADER_FILE, &tmp, &bytes)?;
        h
    };
    for dir in from {
        if let Some(what) = read_header(dir)?.difference(&header) {
            return Err(FeatureError::Mismatch {
                dir: dir.clone(),
                what: format!("{what} than {}", out.display()),
            });
        }
    }
    let mut copied = Vec::new();
    let mut missing = Vec::new();
    for k in 0..header.chunks() {
        if chunk_complete(out, &header, k) {
            continue;
        }
        match from.iter().find(|d| chunk_complete(d, &header, k)) {
            Some(src) => {
                copy_chunk(src, out, &header, k)?;
                copied.push((k, src.clone()));
            }
            None => missing.push(k),
        }
    }
    Ok(MergeReport {
        chunks_total: header.chunks(),
        copied,
        missing,
        header,
    })
}

/// Same order as extraction: failures, spatial, features last.
fn copy_chunk(src: &Path, dst: &Path, header: &CacheHeader, k: usize) -> Result<(), FeatureError> {
    let failed = failed_name(k);
    match std::fs::read(src.join(&failed)) {
        Ok(bytes) => write_atomic(dst, &failed, &tmp_name(&failed), &bytes)?,
        Err(_) => remove_if_exists(&dst.join(&failed))?,
    }
    let mut names = Vec::new();
    if header.spatial.is_some() {
        names.push(spatial_name(k));
    }
    names.push(shard_name(k));
    for name in names {
        let path = src.join(&name);
        let bytes = std::fs::read(&path).map_err(|e| FeatureError::io("read", &path, e))?;
        write_atomic(dst, &name, &tmp_name(&name), &bytes)?;
    }
    Ok(())
}

/// "chunks 3, 5-7 (images 768-1023, 1280-2047)": runs of consecutive chunks collapsed.
pub fn describe_missing(header: &CacheHeader, missing: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &k in missing {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == k => *end = k,
            _ => runs.push((k, k)),
        }
    }
    let fmt = |a: usize, b: usize| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    let chunks: Vec<String> = runs.iter().map(|&(a, b)| fmt(a, b)).collect();
    let images: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            fmt(
                header.chunk_range(a).start,
                header.chunk_range(b).end.saturating_sub(1),
            )
        })
        .collect();
    let word = if missing.len() == 1 {
        "chunk"
    } else {
        "chunks"
    };
    format!(
        "{word} {} (images {})",
        chunks.join(", "),
        images.join(", ")
    )
}
