//! Grad-CAM at an earlier block differentiates the encoder's top blocks on burn: its gradient
//! must match finite differences of the same score, on the real MobileNetV2.

use std::path::{Path, PathBuf};

use graft_data::rng::SplitMix64;
use graft_model::arch::{spec_for, EncoderKind};
use graft_run::explain::layer::LayerGrad;
use graft_train::{Head, HeadModel, HeadSpec, ModelMeta, Standardizer, TrainConfig};

fn weights_file() -> PathBuf {
    let dir = std::env::var_os("GRAFT_TEST_WEIGHTS_DIR").unwrap_or_else(|| {
        panic!("GRAFT_TEST_WEIGHTS_DIR is not set: run the tests with scripts/test.sh")
    });
    walkdir::WalkDir::new(Path::new(&dir))
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_name() == "mobilenet_v2-b0353104.pth")
        .map(|e| e.path().to_path_buf())
        .expect("MobileNetV2 weights under GRAFT_TEST_WEIGHTS_DIR")
}

#[test]
fn block_gradients_match_finite_differences() {
    let weights = graft_model::weights::load_pth(weights_file()).expect("weights");
    let spec = spec_for(EncoderKind::MobileNetV2, &weights).expect("spec");
    let mut rng = SplitMix64::new(5);
    let classes = 3;
    let model = HeadModel {
        meta: ModelMeta {
            format_version: 1,
            head: HeadSpec::DEFAULT_MLP,
            classes: (0..classes).map(|c| format!("c{c}")).collect(),
            feature_dim: spec.feature_dim,
            locations: 1,
            encoder: EncoderKind::MobileNetV2.into(),
            weights: "test".into(),
            preprocess: spec.preprocess,
            train: TrainConfig::default(),
            temperature: 1.3,
            encoder_file: None,
        },
        head: Head::new(HeadSpec::DEFAULT_MLP, spec.feature_dim, classes, &mut rng),
        standardizer: Standardizer {
            mean: vec![0.2; spec.feature_dim],
            std: vec![0.7; spec.feature_dim],
        },
    };
    let size = spec.preprocess.size as usize;
    let input: Vec<f32> = (0..3 * size * size)
        .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
        .collect();
    let layer = LayerGrad::new(&spec, &weights, 13).expect("block 13");
    let target = model.centred(1);
    let (map, grads) = layer
        .map_and_gradients(&input, &model, std::slice::from_ref(&target))
        .expect("gradients");
    let grad = &grads[0];
    assert_eq!(map.len(), grad.len());
    // The largest gradients, checked by central differences (f32 through the top blocks: a step
    // of 1e-2 on activations of order 1 keeps rounding well below the tolerance).
    let mut order: Vec<usize> = (0..grad.len()).collect();
    order.sort_by(|&a, &b| grad[b].abs().total_cmp(&grad[a].abs()));
    let h = 1e-2f32;
    for &i in order.iter().take(6) {
        let (mut up, mut down) = (map.clone(), map.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (layer.score(&up, &model, &target).expect("up")
            - layer.score(&down, &model, &target).expect("down"))
            / (2.0 * h);
        let tol = 0.05 * grad[i].abs() + 1e-4;
        assert!(
            (fd - grad[i]).abs() <= tol,
            "element {i}: burn {} vs finite differences {fd}",
            grad[i]
        );
    }

    // graft explain takes the block's map from ONNX Runtime's run of the whole model (the
    // explainer graph's `block_map` output) and only the blocks above it from burn: the two
    // engines must give the same map (f32 through 14 blocks, summed in different orders).
    let bytes = graft_export::explainer_to_onnx(&spec, &weights, &model, Some(13)).expect("graph");
    let mut session = graft_model::ort_backend::session_from_onnx(
        &bytes,
        graft_model::ort_backend::OrtOptions::default(),
    )
    .expect("ONNX Runtime (run the tests with scripts/test.sh)");
    let ort = graft_model::ort_backend::run_images(
        &mut session,
        &input,
        1,
        size,
        graft_export::BLOCK_MAP,
    )
    .expect("block map");
    assert_eq!(ort.len(), map.len());
    let peak = map.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = ort
        .iter()
        .zip(&map)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-3 * peak,
        "ONNX Runtime and burn differ by {worst} (peak {peak})"
    );
    let from_ort = layer
        .gradients(&ort, &model, std::slice::from_ref(&target))
        .expect("grads");
    let g_peak = grad.iter().fold(0f32, |m, v| m.max(v.abs()));
    let g_worst = from_ort[0]
        .iter()
        .zip(grad)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        g_worst <= 1e-2 * g_peak,
        "gradients differ by {g_worst} (peak {g_peak})"
    );
}
