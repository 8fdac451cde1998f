//! Grad-CAM inside the ONNX graph (what `POST /explain` runs) against graft explain's own
//! arithmetic in Rust: the head's gradient (graft-train) and the class activation map
//! (graft-explain), on a tiny network run by ONNX Runtime, for a linear, an MLP and an
//! attention head. Needs the ONNX Runtime library (scripts/test.sh fetches it).

use graft_data::rng::SplitMix64;
use graft_explain::cam::{broadcast, class_activation, CamKind};
use graft_model::ort_backend::{run_images, run_images_outputs, session_from_onnx, OrtOptions};
use graft_train::{Head, HeadModel, HeadSpec, ModelMeta, Standardizer, TrainConfig};

#[path = "../../graft-model/tests/common/mod.rs"]
mod common;
use common::ort::require_ort;
use common::tiny::tiny_net;

const SIZE: u32 = 32;

fn model(head: HeadSpec, channels: usize, locations: usize, seed: u64) -> HeadModel {
    let mut rng = SplitMix64::new(seed);
    let classes = 4;
    let (mean, std) = (0..channels)
        .map(|_| (rng.next_f64() as f32 * 0.5, 0.5 + rng.next_f64() as f32))
        .unzip();
    HeadModel {
        meta: ModelMeta {
            format_version: 1,
            head,
            classes: (0..classes).map(|c| format!("c{c}")).collect(),
            feature_dim: channels,
            locations: if head.spatial() { locations } else { 1 },
            encoder: graft_model::arch::EncoderKind::MobileNetV2.into(),
            weights: "test".into(),
            preprocess: graft_data::preprocess::Preprocess {
                size: SIZE,
                resize_shorter: SIZE,
                mean: [0.5; 3],
                std: [0.25; 3],
                filter: Default::default(),
            },
            train: TrainConfig::default(),
            temperature: 1.4,
            encoder_file: None,
        },
        head: Head::new(head, channels, classes, &mut rng),
        standardizer: Standardizer { mean, std },
    }
}

/// Probabilities and every class's map, from the Grad-CAM graph on `n` images.
fn run(bytes: &[u8], input: &[f32], n: usize) -> (Vec<f32>, Vec<f32>) {
    let opts = OrtOptions {
        intra_threads: Some(1),
        ..OrtOptions::default()
    };
    let mut session = session_from_onnx(bytes, opts).expect("session");
    let outs = run_images_outputs(
        &mut session,
        input,
        n,
        SIZE as usize,
        &[graft_export::PROBABILITIES, graft_export::CAMS],
    )
    .expect("runs");
    let mut outs = outs.into_iter();
    (
        outs.next().unwrap_or_default(),
        outs.next().unwrap_or_default(),
    )
}

/// The last feature map of `n` images, from the graph graft explain runs.
fn feature_maps(bytes: &[u8], input: &[f32], n: usize) -> Vec<f32> {
    let mut session = session_from_onnx(bytes, OrtOptions::default()).expect("session");
    run_images(
        &mut session,
        input,
        n,
        SIZE as usize,
        graft_export::FEATURE_MAP,
    )
    .expect("map")
}

#[test]
fn the_graph_gives_graft_explains_grad_cam() {
    require_ort("the Grad-CAM graph");
    let (spec, weights) = tiny_net(SIZE);
    let channels = spec.feature_dim;
    let side = spec.feature_map_size(SIZE as usize);
    let locations = side * side;
    let n = 3;
    let mut rng = SplitMix64::new(9);
    let input: Vec<f32> = (0..n * 3 * (SIZE * SIZE) as usize)
        .map(|_| rng.next_f64() as f32 * 4.0 - 2.0)
        .collect();
    for (h, head) in [HeadSpec::Linear, HeadSpec::DEFAULT_MLP]
        .into_iter()
        .enumerate()
    {
        let m = model(head, channels, locations, 100 + h as u64);
        let k = m.meta.classes.len();
        let explainer =
            graft_export::explainer_to_onnx(&spec, &weights, &m, None).expect("explainer");
        let maps = feature_maps(&explainer, &input, n);
        let bytes = graft_export::grad_cam_to_onnx(&spec, &weights, &m).expect("graph");
        let (probs, cams) = run(&bytes, &input, n);
        assert_eq!(probs.len(), n * k);
        assert_eq!(cams.len(), n * k * locations);
        let per_map = channels * locations;
        let mut lit = 0;
        for i in 0..n {
            let map = &maps[i * per_map..(i + 1) * per_map];
            let pooled: Vec<f32> = map
                .chunks_exact(locations)
                .map(|p| p.iter().sum::<f32>() / locations as f32)
                .collect();
            let centred: Vec<f32> = map
                .chunks_exact(locations)
                .zip(&m.standardizer.mean)
                .flat_map(|(p, mu)| p.iter().map(move |a| a - mu))
                .collect();
            for c in 0..k {
                let g = m
                    .logit_gradient(&pooled, &m.centred(c))
                    .expect("pooled head");
                let grads = broadcast(&g, locations);
                let want = class_activation(CamKind::GradCam, &centred, &grads, locations);
                let at = (i * k + c) * locations;
                let got = &cams[at..at + locations];
                // Both sum `channels` products in f32, in different orders, from gradients
                // that went through the same layers in different orders: a few
                // `(channels + hidden) · ε` of the sum of the terms' magnitudes bounds the
                // difference.
                for l in 0..locations {
                    let magnitude: f32 = (0..channels)
                        .map(|ch| (grads[ch * locations + l] * centred[ch * locations + l]).abs())
                        .sum();
                    let bound = 4.0 * (channels as f32 + 64.0) * f32::EPSILON * magnitude + 1e-7;
                    assert!(
                        (got[l] - want[l]).abs() <= bound,
                        "{head} image {i} class {c} location {l}: graph {} vs Rust {} (bound {bound})",
                        got[l],
                        want[l]
                    );
                }
                lit += want.iter().filter(|v| **v > 0.0).count();
            }
        }
        assert!(
            lit > 0,
            "{head}: every map is zero, the comparison says nothing"
        );
    }
}

#[test]
fn an_attention_head_answers_with_its_attention() {
    require_ort("the Grad-CAM graph");
    let (spec, weights) = tiny_net(SIZE);
    let channels = spec.feature_dim;
    let side = spec.feature_map_size(SIZE as usize);
    let locations = side * side;
    let m = model(HeadSpec::Attention, channels, locations, 7);
    let k = m.meta.classes.len();
    let mut rng = SplitMix64::new(3);
    let input: Vec<f32> = (0..3 * (SIZE * SIZE) as usize)
        .map(|_| rng.next_f64() as f32 * 4.0 - 2.0)
        .collect();
    let explainer = graft_export::explainer_to_onnx(&spec, &weights, &m, None).expect("explainer");
    let map = feature_maps(&explainer, &input, 1);
    let want = m.attention(&map, 1);
    let bytes = graft_export::grad_cam_to_onnx(&spec, &weights, &m).expect("graph");
    let (_, cams) = run(&bytes, &input, 1);
    assert_eq!(cams.len(), k * want.len());
    for cam in cams.chunks_exact(want.len()) {
        let sum: f32 = cam.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "attention sums to 1, got {sum}");
        for (g, w) in cam.iter().zip(&want) {
            // Softmax over the same scores in f32: a few ε of each weight.
            assert!((g - w).abs() <= 1e-5, "graph {g} vs Rust {w}");
        }
    }
}
