//! Fine-tuning on a tiny encoder with made-up weights: accumulation, rollback, exact resume.

use std::sync::Arc;

use burn::tensor::Device;
use graft_data::rng::SplitMix64;
use graft_model::arch::NetSpec;
use graft_model::weights::StateDict;

use super::*;
use crate::head::{Head, HeadSpec};
use crate::trainer::TrainConfig;
use crate::{HeadModel, ModelMeta, Standardizer};
use nets::{pre, tiny, tiny_resnet, tiny_se};

mod nets;

fn model(spec: HeadSpec, classes: usize) -> HeadModel {
    let mut rng = SplitMix64::new(3);
    HeadModel {
        meta: ModelMeta {
            format_version: 1,
            head: spec,
            classes: (0..classes).map(|c| format!("c{c}")).collect(),
            feature_dim: 6,
            locations: 1,
            encoder: graft_model::arch::EncoderKind::MobileNetV2.into(),
            weights: "tiny".into(),
            preprocess: pre(),
            train: TrainConfig::default(),
            temperature: 1.0,
            encoder_file: None,
        },
        head: Head::new(spec, 6, classes, &mut rng),
        standardizer: Standardizer {
            mean: vec![0.1; 6],
            std: vec![0.5; 6],
        },
    }
}

/// `n` random activations at the cut; labels from `label`.
fn acts(net: &TopNet, n: usize, seed: u64, label: impl Fn(&[f32]) -> usize) -> Acts {
    let mut rng = SplitMix64::new(seed);
    let d = net.input_len();
    let x: Vec<f32> = (0..n * d).map(|_| rng.next_f64() as f32 * 3.0).collect();
    let labels = x.chunks(d).map(label).collect();
    Acts::new(net.input(), &x, labels)
}

/// Labels a simple function of the input, learnable by the net.
fn rule(row: &[f32]) -> usize {
    let half = row.len() / 2;
    usize::from(row[..half].iter().sum::<f32>() > row[half..].iter().sum::<f32>())
}

fn cached(acts: Acts) -> CachedSource {
    CachedSource {
        acts,
        start: 1,
        classes: 3,
    }
}

/// Stages 1–2 on cached activations (stage 3 unused).
fn stages(train: Acts, val: Acts) -> [StageData; 3] {
    let s = StageData {
        train: Arc::new(cached(train)),
        val: Arc::new(cached(val)),
    };
    [s.clone(), s.clone(), s]
}

fn quiet(_: &Event<'_>) -> bool {
    true
}

/// `n` random 3×16×16 images (the tiny encoder's input), values in [-1, 1).
fn images(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n * 3 * 16 * 16)
        .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
        .collect()
}

/// Loss and gradient of every slot of `net` at `values`, for inputs `x` of block `start`.
fn gradients(
    net: &TopNet,
    values: &Values,
    start: usize,
    x: &[f32],
    targets: &[f32],
    cfg: &FinetuneConfig,
    dev: &Device,
) -> (f64, Values) {
    let mask = vec![true; net.slots.len()];
    let mut g: Values = values.iter().map(|v| vec![0.0; v.len()]).collect();
    let loss = batch_gradients(
        net,
        values,
        &mask,
        start,
        x,
        targets,
        cfg,
        &|_| 0,
        dev,
        &mut g,
    )
    .expect("grads");
    (loss, g)
}

#[test]
fn accumulating_4x8_equals_one_batch_of_32() {
    let (spec, sd) = tiny();
    let (net, start) = TopNet::new(&spec, &sd, &model(HeadSpec::Linear, 3), 1, 1).expect("net");
    assert_eq!(net.input(), [4, 8, 8]);
    let data = cached(acts(&net, 32, 1, rule));
    let rows: Vec<usize> = (0..32).collect();
    let (x, targets) = data.train_batch(&rows, 0).expect("batch");
    let dev = Device::flex().autodiff();
    let mut out = Vec::new();
    for micro in [32, 8] {
        let cfg = FinetuneConfig {
            micro_batch: micro,
            ..FinetuneConfig::default()
        };
        out.push(gradients(&net, &start, 1, &x, &targets, &cfg, &dev));
    }
    let ((l1, g1), (l2, g2)) = (&out[0], &out[1]);
    assert!((l1 - l2).abs() < 1e-6, "{l1} vs {l2}");
    let norm: f32 = g1.iter().flatten().map(|v| v * v).sum::<f32>().sqrt();
    assert!(norm > 1e-4, "the gradient is not trivially zero");
    for (slot, (a, b)) in net.slots.iter().zip(g1.iter().zip(g2)) {
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-5 * norm.max(1.0),
                "{}: {x} vs {y}",
                slot.name
            );
        }
    }
}

#[test]
fn a_stage_that_lowers_val_f1_is_rolled_back() {
    let (spec, sd) = tiny();
    let (net, start) = TopNet::new(&spec, &sd, &model(HeadSpec::Linear, 3), 1, 1).expect("net");
    // Val labels are the starting model's own predictions: it scores 1.0 there. Train labels
    // are shifted by one class, so training can only make val worse.
    let dev = Device::flex();
    let label_by_start = |seed, shift: usize| {
        let a = acts(&net, 48, seed, |_| 0);
        let pred = predictions(&net, &start, &cached(a.clone()), &dev).expect("predict");
        let labels = pred.iter().map(|p| (p + shift) % 3).collect();
        Acts::new(net.input(), &a.gather(&(0..48).collect::<Vec<_>>()), labels)
    };
    let data = stages(label_by_start(1, 1), label_by_start(2, 0));
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = FinetuneConfig {
        epochs: [0, 3, 0],
        batch: 16,
        micro_batch: 16,
        lr: 1e-2,
        layer_decay: 1.0,
        ..FinetuneConfig::default()
    };
    let o = run(
        &net,
        start.clone(),
        &cfg,
        &data,
        &tmp.path().join("ck"),
        &dev,
        &mut quiet,
    )
    .expect("run");
    assert_eq!(o.start_f1, 1.0);
    assert_eq!(o.stages.len(), 1, "a stage of 0 epochs is skipped");
    let s = &o.stages[0];
    assert!(
        s.rolled_back && s.best_f1 < 1.0 && s.before_f1 == 1.0,
        "{s:?}"
    );
    assert_eq!(o.values, start, "rolled back to the starting weights");
    assert_eq!(o.best_f1, 1.0);
}

#[test]
fn killed_mid_stage_two_and_resumed_gives_the_same_weights() {
    let (spec, sd) = tiny();
    let (net, start) =
        TopNet::new(&spec, &sd, &model(HeadSpec::DEFAULT_MLP, 3), 1, 1).expect("net");
    let data = stages(acts(&net, 40, 1, rule), acts(&net, 20, 2, rule));
    let cfg = FinetuneConfig {
        epochs: [1, 2, 0],
        batch: 8,
        micro_batch: 4,
        lr: 3e-3,
        checkpoint_every: 2,
        ..FinetuneConfig::default()
    };
    let dev = Device::flex();
    let whole = tempfile::tempdir().expect("tmp");
    let a = run(
        &net,
        start.clone(),
        &cfg,
        &data,
        &whole.path().join("ck"),
        &dev,
        &mut quiet,
    )
    .expect("uninterrupted");
    assert!(!a.resumed);

    let cut = tempfile::tempdir().expect("tmp");
    let ck = cut.path().join("ck");
    let mut seen = 0;
    let mut stop_in_stage_two = |e: &Event<'_>| {
        if let Event::Checkpoint { stage: 1, update } = e {
            seen += 1;
            // Stop at the second mid-epoch checkpoint of stage 2 (update 4 of 10).
            return !(seen == 2 && *update == 4);
        }
        true
    };
    let err = run(
        &net,
        start.clone(),
        &cfg,
        &data,
        &ck,
        &dev,
        &mut stop_in_stage_two,
    )
    .expect_err("stopped");
    assert!(err.to_string().contains("stopped"));
    // A different configuration on resume is ignored: the checkpoint's is used.
    let other = FinetuneConfig {
        lr: 1.0,
        ..cfg.clone()
    };
    let b = run(&net, start, &other, &data, &ck, &dev, &mut quiet).expect("resumed");
    assert!(b.resumed);
    assert_eq!(b.config, cfg);
    let plain = |h: &[EpochRow]| -> Vec<EpochRow> {
        h.iter()
            .map(|r| EpochRow {
                images_per_second: 0.0,
                ..r.clone()
            })
            .collect()
    };
    assert_eq!(plain(&a.history), plain(&b.history));
    assert_eq!(a.values, b.values, "bit-identical after resume");
}

#[test]
fn gradients_match_finite_differences_in_every_layer() {
    finite_differences(tiny());
}

#[test]
fn squeeze_excite_blocks_gradients_match_finite_differences() {
    let (spec, sd) = tiny_se();
    let (net, _) = TopNet::new(&spec, &sd, &model(HeadSpec::Linear, 3), 0, 1).expect("net");
    assert!(net.slots.iter().any(|s| s.name == "b1.se.fc2.bias"));
    finite_differences((spec, sd));
}

/// The trainable net computes what graft's inference encoder computes: for every block kind,
/// its probabilities equal the head's on the burn encoder's features.
#[test]
fn the_trainable_net_computes_the_encoders_function() {
    use graft_model::burn_backend::EncoderNet;
    for (name, (spec, sd)) in [
        ("tiny", tiny()),
        ("resnet", tiny_resnet()),
        ("se", tiny_se()),
    ] {
        let m = model(HeadSpec::Linear, 3);
        let (net, start) = TopNet::new(&spec, &sd, &m, 0, 1).expect("net");
        let x = images(3, 8);
        let dev = Device::flex();
        let (logits, _, _) = net.forward(&start, &vec![false; start.len()], 0, &x, 3, None, &dev);
        let mut ours = logits.into_data().try_to_vec::<f32>().expect("f32");
        crate::dense::softmax_rows(&mut ours, 3);
        let enc = EncoderNet::from_spec(&spec, &sd, &dev).expect("encoder");
        let s = spec.preprocess.size as usize;
        let input = burn::tensor::Tensor::<4>::from_data(
            burn::tensor::TensorData::new(x.clone(), [3, 3, s, s]),
            &dev,
        );
        let features = enc
            .forward(input)
            .features
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let theirs = m.predict_proba(&features, 3);
        let diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{name}: {diff}");
    }
}

#[test]
fn resnet_blocks_gradients_match_finite_differences() {
    // Projection shortcut, ReLU after the sum and the stem's max pool included.
    let (spec, sd) = tiny_resnet();
    assert_eq!(spec.block_input(1), [4, 4, 4]);
    finite_differences((spec, sd));
}

fn finite_differences((spec, sd): (NetSpec, StateDict)) {
    let (net, start) = TopNet::new(&spec, &sd, &model(HeadSpec::Linear, 3), 0, 1).expect("net");
    // From the stem: a batch of small images.
    let x = images(4, 5);
    let targets = graft_data::augment::one_hot(&[0, 1, 2, 1], 3);
    let cfg = FinetuneConfig {
        label_smoothing: 0.0,
        ..FinetuneConfig::default()
    };
    let dev = Device::flex().autodiff();
    let loss_at = |v: &Values| gradients(&net, v, 0, &x, &targets, &cfg, &dev).0;
    let (_, g) = gradients(&net, &start, 0, &x, &targets, &cfg, &dev);
    assert_eq!(g.len(), net.slots.len());
    for (si, slot) in net.slots.iter().enumerate() {
        // The largest-gradient entry of each slot, where rounding matters least.
        let (j, &gj) = g[si]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .expect("non-empty");
        assert!(gj != 0.0, "{}: no gradient reaches it", slot.name);
        let eps = 2e-3f32;
        let mut plus = start.clone();
        plus[si][j] += eps;
        let mut minus = start.clone();
        minus[si][j] -= eps;
        let numeric = ((loss_at(&plus) - loss_at(&minus)) / (2.0 * f64::from(eps))) as f32;
        assert!(
            (numeric - gj).abs() <= 0.05 * gj.abs().max(1e-3),
            "{}: analytic {gj} vs numeric {numeric}",
            slot.name
        );
    }
}

#[test]
fn bf16_mixed_precision_tracks_f32_loss_and_gradients() {
    let (spec, sd) = tiny();
    let (mut net, start) = TopNet::new(&spec, &sd, &model(HeadSpec::Linear, 3), 0, 1).expect("net");
    let x = images(8, 6);
    let targets = graft_data::augment::one_hot(&[0, 1, 2, 1, 0, 2, 2, 1], 3);
    let cfg = FinetuneConfig::default();
    let dev = Device::flex().autodiff();
    let (loss32, g32) = gradients(&net, &start, 0, &x, &targets, &cfg, &dev);
    net.precision = Precision::Bf16;
    let (loss16, g16) = gradients(&net, &start, 0, &x, &targets, &cfg, &dev);
    // bfloat16 keeps 8 bits of mantissa: a few tenths of a percent per op.
    assert!(
        (loss32 - loss16).abs() < 0.02 * loss32.abs(),
        "loss {loss32} vs {loss16}"
    );
    let a: Vec<f32> = g32.concat();
    let b: Vec<f32> = g16.concat();
    assert!(b.iter().all(|v| v.is_finite()));
    let dot: f64 = a.iter().zip(&b).map(|(p, q)| f64::from(p * q)).sum();
    let na: f64 = a.iter().map(|p| f64::from(p * p)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|q| f64::from(q * q)).sum::<f64>().sqrt();
    let cosine = dot / (na * nb);
    assert!(cosine > 0.99, "gradient direction: cosine {cosine}");
    assert!((nb / na - 1.0).abs() < 0.05, "gradient norm {na} vs {nb}");
    // And not by accident the same arithmetic.
    assert_ne!(a, b, "bf16 must actually run in bf16");
    assert!(
        "f16".parse::<Precision>().is_err(),
        "f16 is refused (needs loss scaling)"
    );
    assert_eq!("bf16".parse::<Precision>(), Ok(Precision::Bf16));
}

/// Only in builds with `--features tch` (needs libtorch; CI builds without it).
#[cfg(feature = "tch")]
#[test]
#[allow(deprecated)]
fn libtorch_depthwise_gradients_equal_flex() {
    let (spec, sd) = tiny();
    let (mut net, start) = TopNet::new(&spec, &sd, &model(HeadSpec::Linear, 3), 0, 1).expect("net");
    let x = images(4, 7);
    let targets = graft_data::augment::one_hot(&[0, 1, 2, 1], 3);
    let cfg = FinetuneConfig::default();
    let (_, reference) = gradients(
        &net,
        &start,
        0,
        &x,
        &targets,
        &cfg,
        &Device::flex().autodiff(),
    );
    net.libtorch = true;
    let dev = Device::libtorch().autodiff();
    let (_, ours) = gradients(&net, &start, 0, &x, &targets, &cfg, &dev);
    for (slot, (a, b)) in net.slots.iter().zip(reference.iter().zip(&ours)) {
        let scale = a.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
        for (p, q) in a.iter().zip(b) {
            assert!((p - q).abs() <= 1e-4 * scale, "{}: {p} vs {q}", slot.name);
        }
    }
}

#[test]
fn the_fine_tune_range_test_falls_then_blows_up_and_suggests_a_rate_before_the_blow_up() {
    use crate::lr_find::{RangeTest, Rule};
    let (spec, sd) = tiny();
    let (net, start) = TopNet::new(&spec, &sd, &model(HeadSpec::Linear, 3), 1, 1).expect("net");
    let train = cached(acts(&net, 96, 5, rule));
    let cfg = FinetuneConfig {
        batch: 16,
        micro_batch: 8,
        clip: 0.0,
        label_smoothing: 0.0,
        ..FinetuneConfig::default()
    };
    let test = RangeTest {
        start: 1e-5,
        end: 10.0,
        steps: 120,
        ..RangeTest::default()
    };
    let dev = Device::flex();
    let curve =
        super::lr_range::range_test(&net, &start, &train, &cfg, &test, &dev).expect("range test");
    let first = curve.smoothed[0];
    let low = curve.smoothed.iter().copied().fold(f32::INFINITY, f32::min);
    assert!(low < 0.8 * first, "the loss falls: {first} → {low}");
    for rule in [Rule::Steepest, Rule::Valley] {
        let s = curve.suggestion(rule).expect("a suggestion");
        assert!(
            s > test.start && s <= curve.minimum,
            "{rule:?}: {s} vs {}",
            curve.minimum
        );
    }
    // The same seed draws the same curve.
    let again =
        super::lr_range::range_test(&net, &start, &train, &cfg, &test, &dev).expect("again");
    assert_eq!(again.losses, curve.losses);
}
