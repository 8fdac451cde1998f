//! Helpers of the tests that run ONNX Runtime on real weights and photos.

use std::path::{Path, PathBuf};

use graft_model::arch::Preprocess;
use graft_model::ort_backend;

/// ONNX Runtime's library must load (scripts/test.sh fetches it); `test` names who needs it.
pub fn require_ort(test: &str) {
    if let Err(e) = ort_backend::environment() {
        panic!("{test} needs ONNX Runtime: {e} (run the tests with scripts/test.sh)");
    }
}

/// The file `name` under `dir`; a test cannot go on without it.
pub fn find_file(dir: &Path, name: &str, depth: usize) -> PathBuf {
    super::find(dir, name, depth)
        .unwrap_or_else(|| panic!("{name} not found under {}", dir.display()))
}

pub fn load_image(dir: &Path, name: &str, pre: &Preprocess) -> Vec<f32> {
    let img = image::open(find_file(dir, name, 4))
        .expect("decodes")
        .to_rgb8();
    pre.apply(&img)
}

pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&l| (l - m).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

pub fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}
