//! Pretrained encoders on burn classify real photos like the PyTorch reference
//! (probabilities from DESIGN.md, "Known-good outputs").
//! Gated on `GRAFT_TEST_WEIGHTS_DIR` (scripts/fetch-test-assets.sh DIR fills it, photos under
//! DIR/photos; scripts/test.sh does). Without it these tests fail.
//! Run with `--nocapture` to see the top-5 lists.

use std::path::{Path, PathBuf};

use graft_model::arch::EncoderKind;
use graft_model::burn_backend::BurnEncoder;
use graft_model::encoder::ImageEncoder;
use graft_model::imagenet::{class_name, top_k};
use graft_model::load_pth;

fn assets() -> PathBuf {
    common::required_dir("GRAFT_TEST_WEIGHTS_DIR")
}

mod common;
use common::find;

fn must_find(dir: &Path, name: &str) -> PathBuf {
    find(dir, name, 4).unwrap_or_else(|| panic!("{name} not found under {}", dir.display()))
}

/// Softmax probabilities per photo, best first (top 5), printed for the log.
fn classify(dir: &Path, kind: EncoderKind, pth: &str, photos: &[&str]) -> Vec<Vec<(usize, f32)>> {
    let sd = load_pth(must_find(dir, pth)).expect("weights load");
    let mut enc = BurnEncoder::new(kind, &sd).expect("encoder builds");
    let pre = enc.spec().preprocess;
    let mut input = Vec::new();
    for p in photos {
        let (_, img) = graft_data::decode::read_and_decode(&must_find(dir, p)).expect("decode");
        input.extend(pre.apply(&img));
    }
    let out = enc.encode(&input, photos.len(), true).expect("forward");
    let fd = enc.feature_dim();
    assert_eq!(out.features.len(), photos.len() * fd);
    let map = out.feature_map.expect("feature map requested");
    let side = enc.spec().feature_map_size(pre.size as usize);
    assert_eq!(map.len(), photos.len() * fd * side * side);
    assert_eq!(out.logits.len(), photos.len() * 1000);
    photos
        .iter()
        .zip(out.logits.chunks(1000))
        .map(|(p, logits)| {
            let top = top_k(logits, 5);
            println!("{kind} {p}:");
            for &(i, prob) in &top {
                println!("  {prob:.4} {i:>3} {}", class_name(i).unwrap_or("?"));
            }
            top
        })
        .collect()
}

fn prob(top: &[(usize, f32)], class: usize) -> f32 {
    top.iter().find(|t| t.0 == class).map_or(0.0, |t| t.1)
}

fn expect(top: &[(usize, f32)], refs: &[(usize, f32)], tol: f32, what: &str) {
    for &(class, want) in refs {
        let got = prob(top, class);
        assert!(
            (got - want).abs() <= tol,
            "{what}: class {class} ({:?}) has p={got:.4}, reference {want} ± {tol}",
            class_name(class)
        );
    }
}

const EGYPTIAN: usize = 285;
const TIGER_CAT: usize = 282;
const TABBY: usize = 281;
const ESPRESSO: usize = 967;
const BALD_EAGLE: usize = 22;
const PHOTOS: [&str; 4] = ["chelsea.png", "coffee.png", "dog.jpg", "eagle.jpg"];

/// `eagle_rank`: position bald eagle must reach (Lite0 ranks "kite" first on this photo).
fn check_dog_and_eagle(tops: &[Vec<(usize, f32)>], eagle_rank: usize) {
    // ImageNet's dog breeds are labels 151..=268.
    assert!(
        (151..=268).contains(&tops[2][0].0),
        "dog.jpg top-1 {:?}",
        tops[2][0]
    );
    assert!(
        tops[3][..eagle_rank].iter().any(|t| t.0 == BALD_EAGLE),
        "eagle.jpg: bald eagle not in top {eagle_rank}: {:?}",
        tops[3]
    );
}

#[test]
fn mobilenet_v2_matches_pytorch_reference() {
    let dir = assets();
    let tops = classify(
        &dir,
        EncoderKind::MobileNetV2,
        "mobilenet_v2-b0353104.pth",
        &PHOTOS,
    );
    assert_eq!(tops[0][0].0, EGYPTIAN);
    expect(
        &tops[0],
        &[(EGYPTIAN, 0.71), (TIGER_CAT, 0.15), (TABBY, 0.13)],
        0.02,
        "chelsea",
    );
    assert_eq!(tops[1][0].0, ESPRESSO);
    expect(&tops[1], &[(ESPRESSO, 0.99)], 0.02, "coffee");
    check_dog_and_eagle(&tops, 1);
}

#[test]
fn efficientnet_lite0_matches_reference() {
    let dir = assets();
    let tops = classify(
        &dir,
        EncoderKind::EfficientNetLite0,
        "efficientnet-lite0-57934424.pth",
        &PHOTOS,
    );
    // The reference needs bicubic resizing: with bilinear, Egyptian cat comes out 0.023 high.
    assert_eq!(tops[0][0].0, TIGER_CAT);
    expect(
        &tops[0],
        &[(TIGER_CAT, 0.39), (EGYPTIAN, 0.36), (TABBY, 0.17)],
        0.02,
        "chelsea",
    );
    assert_eq!(tops[1][0].0, ESPRESSO);
    expect(&tops[1], &[(ESPRESSO, 0.95)], 0.02, "coffee");
    check_dog_and_eagle(&tops, 2);
}

#[test]
fn efficientnet_lite1_and_lite2_classify_coffee() {
    let dir = assets();
    for (kind, pth) in [
        (
            EncoderKind::EfficientNetLite1,
            "efficientnet-lite1-77cc7160.pth",
        ),
        (
            EncoderKind::EfficientNetLite2,
            "efficientnet-lite2-9656183e.pth",
        ),
    ] {
        let tops = classify(&dir, kind, pth, &["coffee.png"]);
        assert_eq!(tops[0][0].0, ESPRESSO, "{kind}");
    }
}
