//! Helpers shared by the tests that use real weights and photos.

use std::path::{Path, PathBuf};

// Each test binary uses some of these.
#[allow(dead_code)]
pub mod ort;
#[allow(dead_code)]
pub mod tiny;

/// Depth-limited search for `name`, so a flat folder or unzipped wheels both work.
pub fn find(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let direct = dir.join(name);
    if direct.is_file() {
        return Some(direct);
    }
    if depth == 0 {
        return None;
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    subdirs.iter().find_map(|d| find(d, name, depth - 1))
}

/// The folder an environment variable names; a test cannot go on without it, so its absence
/// fails the test with how to get it (never a silent early return).
#[allow(dead_code)]
pub fn required_dir(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) => PathBuf::from(v),
        None => panic!(
            "{var} is not set: run the tests with scripts/test.sh, which fetches what they need"
        ),
    }
}
