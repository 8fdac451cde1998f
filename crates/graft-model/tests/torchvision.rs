//! graft's architectures against torchvision's, without torch: the weights are regenerated
//! here bit for bit (`graft_model::synthetic`), and the outputs torchvision gave for them are
//! committed fixtures (`scripts/torchvision-fixtures.py`, run once with torch installed).
//! burn and ONNX Runtime must both match them.

mod common;

use std::path::PathBuf;

use common::ort::{max_diff, require_ort};
use graft_model::arch::{spec_for, torchvision_tensors, EncoderKind};
use graft_model::burn_backend::BurnEncoder;
use graft_model::encoder::ImageEncoder;
use graft_model::ort_backend::{OrtEncoder, OrtOptions};
use graft_model::{load_pth, synthetic};
use serde::Deserialize;

/// One fixture file (see the script).
#[derive(Debug, Deserialize)]
struct Fixture {
    arch: String,
    torch: String,
    seed: u64,
    input: Input,
    keys: Vec<(String, Vec<usize>)>,
    features: Vec<f32>,
    logits: Vec<f32>,
}

#[derive(Debug, Deserialize)]
struct Input {
    batch: usize,
    size: usize,
    seed: u64,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchvision")
}

fn fixture(kind: EncoderKind) -> Fixture {
    let path = fixtures().join(format!("{}.json", kind.name()));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (committed with the tests)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// f32 through the whole network, summed in other orders than PyTorch's: outputs of order one
/// agree to a few ulps per layer, far inside the 1e-4.
const TOLERANCE: f32 = 1e-4;

fn check(kind: EncoderKind) {
    let f = fixture(kind);
    assert_eq!(f.arch, kind.name());
    // The layout graft writes down is torchvision's, key for key and shape for shape.
    assert_eq!(
        f.keys,
        torchvision_tensors(kind).expect("a layout"),
        "{kind}: torchvision {}",
        f.torch
    );
    let weights = synthetic::state_dict(kind, f.seed).expect("weights");
    let spec = spec_for(kind, &weights).expect("spec");
    assert_eq!(f.input.size, spec.preprocess.size as usize);
    let (n, fd) = (f.input.batch, spec.feature_dim);
    let input = synthetic::input(n, f.input.size, f.input.seed);

    let mut burn = BurnEncoder::new(kind, &weights).expect("burn");
    let b = burn.encode(&input, n, false).expect("burn runs");
    require_ort(kind.name());
    let mut ort = OrtEncoder::new(&spec, &weights, OrtOptions::default()).expect("session");
    let o = ort.encode(&input, n, false).expect("ORT runs");
    assert_eq!(f.features.len(), n * fd);
    // The weights carry the input through: the two images' features differ (else the test
    // would check little more than the biases).
    let size = f.features.iter().fold(0f32, |m, v| m.max(v.abs()));
    let apart = max_diff(&f.features[..fd], &f.features[fd..]);
    assert!(
        apart > 0.01 * size,
        "{kind}: features {size}, apart {apart}"
    );
    let diffs = [
        max_diff(&b.features, &f.features),
        max_diff(&b.logits, &f.logits),
        max_diff(&o.features, &f.features),
        max_diff(&o.logits, &f.logits),
    ];
    println!(
        "{kind}: max |burn − torchvision| features {:.2e}, logits {:.2e}; \
         max |ORT − torchvision| features {:.2e}, logits {:.2e}",
        diffs[0], diffs[1], diffs[2], diffs[3]
    );
    assert!(diffs.iter().all(|&d| d < TOLERANCE), "{kind}: {diffs:?}");
}

#[test]
fn resnet18_matches_torchvision() {
    check(EncoderKind::ResNet18);
}

#[test]
fn resnet34_matches_torchvision() {
    check(EncoderKind::ResNet34);
}

#[test]
fn resnet50_matches_torchvision() {
    check(EncoderKind::ResNet50);
}

#[test]
fn efficientnet_b0_matches_torchvision() {
    check(EncoderKind::EfficientNetB0);
}

#[test]
fn mobilenet_v3_small_matches_torchvision() {
    check(EncoderKind::MobileNetV3Small);
}

#[test]
fn mobilenet_v3_large_matches_torchvision() {
    check(EncoderKind::MobileNetV3Large);
}

/// A file torch.save wrote (zip format, int64 BatchNorm counter) reads back with the exact
/// bits of the synthetic weights it was filled with.
#[test]
fn reads_what_torch_save_wrote() {
    let sd = load_pth(fixtures().join("resnet18-stem.pth")).expect("torch's zip format");
    let seed = fixture(EncoderKind::ResNet18).seed;
    let mut names: Vec<&str> = sd.names().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "bn1.bias",
            "bn1.num_batches_tracked",
            "bn1.running_mean",
            "bn1.running_var",
            "bn1.weight",
            "conv1.weight"
        ]
    );
    for (name, t) in sd
        .iter()
        .filter(|(n, _)| !n.ends_with("num_batches_tracked"))
    {
        let expected = synthetic::tensor(EncoderKind::ResNet18, name, &t.shape, seed);
        assert_eq!(t.shape, expected.shape, "{name}");
        assert!(
            t.data
                .iter()
                .zip(&expected.data)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name} differs from the generator"
        );
    }
}
