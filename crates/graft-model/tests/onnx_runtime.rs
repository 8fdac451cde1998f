//! The hand-written ONNX export, run by ONNX Runtime, against a naive pure-Rust forward pass
//! (BatchNorm applied unfused, f64 accumulation) that shares nothing with the exporter but
//! the spec. Needs the ONNX Runtime library (scripts/fetch-onnxruntime.sh or ORT_DYLIB_PATH)
//! and, for the real encoders, GRAFT_TEST_WEIGHTS_DIR (scripts/fetch-test-assets.sh). Without
//! them the tests fail (scripts/test.sh fetches both). INT8 is graft-export's (its tests/int8.rs).

use std::path::PathBuf;

use graft_model::arch::{spec_for, Act, ConvBn, EncoderKind, NetSpec};
use graft_model::encoder::ImageEncoder;
use graft_model::onnx::{encoder_to_onnx, ExportOptions};
use graft_model::ort_backend::{OrtEncoder, OrtOptions};
use graft_model::{load_pth, StateDict};

mod common;
use common::ort::{argmax, find_file as find, load_image, max_diff, require_ort, softmax};
use common::tiny::{tiny_net, Lcg};

fn weights_dir() -> PathBuf {
    common::required_dir("GRAFT_TEST_WEIGHTS_DIR")
}

// ---- reference forward pass -------------------------------------------------------------

/// One image `[c, s, s]` through one conv + BN + activation.
fn conv_bn_ref(l: &ConvBn, w: &StateDict, eps: f32, x: &[f32], s: usize) -> (Vec<f32>, usize) {
    let (pb, pa) = l.padding.amounts(s, l.kernel, l.stride);
    let (k, st) = (l.kernel, l.stride);
    let os = (s + pb + pa - k) / st + 1;
    let cin_g = l.in_ch / l.groups;
    let cout_g = l.out_ch / l.groups;
    let wt = &w.get(&l.conv).expect("conv weight").data;
    let bn = |p: &str| &w.get(&format!("{}.{p}", l.bn)).expect("bn").data;
    let (gamma, beta, mean, var) = (
        bn("weight"),
        bn("bias"),
        bn("running_mean"),
        bn("running_var"),
    );
    let mut out = vec![0f32; l.out_ch * os * os];
    let mut acc = vec![0f64; os * os];
    for o in 0..l.out_ch {
        acc.iter_mut().for_each(|a| *a = 0.0);
        let g = o / cout_g;
        for cl in 0..cin_g {
            let plane = &x[(g * cin_g + cl) * s * s..][..s * s];
            for ky in 0..k {
                for kx in 0..k {
                    let wv = f64::from(wt[((o * cin_g + cl) * k + ky) * k + kx]);
                    for oy in 0..os {
                        let iy = (oy * st + ky) as isize - pb as isize;
                        if iy < 0 || iy >= s as isize {
                            continue;
                        }
                        let row = &plane[iy as usize * s..][..s];
                        let arow = &mut acc[oy * os..][..os];
                        for (ox, a) in arow.iter_mut().enumerate() {
                            let ix = (ox * st + kx) as isize - pb as isize;
                            if ix >= 0 && ix < s as isize {
                                *a += wv * f64::from(row[ix as usize]);
                            }
                        }
                    }
                }
            }
        }
        let inv = 1.0 / (f64::from(var[o]) + f64::from(eps)).sqrt();
        for (dst, &a) in out[o * os * os..][..os * os].iter_mut().zip(&acc) {
            let mut y = (a - f64::from(mean[o])) * inv * f64::from(gamma[o]) + f64::from(beta[o]);
            if l.act == Some(Act::Relu6) {
                y = y.clamp(0.0, 6.0);
            }
            *dst = y as f32;
        }
    }
    (out, os)
}

struct RefOut {
    features: Vec<f32>,
    logits: Vec<f32>,
    feature_map: Vec<f32>,
}

/// Naive forward pass of one image `[3, size, size]`.
fn reference(spec: &NetSpec, w: &StateDict, image: &[f32], size: usize) -> RefOut {
    let (mut x, mut s) = (image.to_vec(), size);
    for block in &spec.blocks {
        let input = x.clone();
        for l in &block.layers {
            (x, s) = conv_bn_ref(l, w, spec.bn_eps, &x, s);
        }
        if block.residual {
            x.iter_mut().zip(&input).for_each(|(a, b)| *a += b);
        }
    }
    let area = (s * s) as f64;
    let features: Vec<f32> = x
        .chunks(s * s)
        .map(|p| (p.iter().map(|&v| f64::from(v)).sum::<f64>() / area) as f32)
        .collect();
    let c = spec.classifier.as_ref().expect("a classifier");
    let (wt, b) = (
        &w.get(&c.weight).expect("fc").data,
        &w.get(&c.bias).expect("fc").data,
    );
    let logits = (0..c.out_features)
        .map(|o| {
            let row = &wt[o * c.in_features..][..c.in_features];
            let dot: f64 = row
                .iter()
                .zip(&features)
                .map(|(&a, &f)| f64::from(a) * f64::from(f))
                .sum();
            (dot + f64::from(b[o])) as f32
        })
        .collect();
    RefOut {
        features,
        logits,
        feature_map: x,
    }
}

// ---- tiny synthetic network -------------------------------------------------------------

#[test]
fn tiny_network_matches_reference() {
    require_ort("tiny_network_matches_reference");
    let size = 16;
    let (spec, w) = tiny_net(size as u32);
    // 16 → 8 (TF pads 0/1) → 4 (5×5/2 pads 1/2).
    assert_eq!(spec.feature_map_size(size), 4);
    let n = 3;
    let mut rng = Lcg(99);
    let input = rng.vec(n * 3 * size * size, 2.0, 0.0);
    let mut enc = OrtEncoder::new(
        &spec,
        &w,
        OrtOptions {
            intra_threads: Some(1),
            ..OrtOptions::default()
        },
    )
    .expect("session");
    assert_eq!(enc.backend(), "onnxruntime");
    let out = enc.encode(&input, n, true).expect("runs");
    let map = out.feature_map.as_ref().expect("feature map");
    let per = 3 * size * size;
    let mut worst = 0f32;
    for i in 0..n {
        let r = reference(&spec, &w, &input[i * per..][..per], size);
        worst = worst
            .max(max_diff(&out.features[i * 16..][..16], &r.features))
            .max(max_diff(&out.logits[i * 5..][..5], &r.logits))
            .max(max_diff(&map[i * 256..][..256], &r.feature_map));
    }
    println!("tiny net: max |ORT - reference| = {worst:e}");
    assert!(worst < 1e-4, "max abs diff {worst}");
    // Without the map: same numbers, no map.
    let plain = enc.encode(&input, n, false).expect("runs");
    assert!(plain.feature_map.is_none());
    assert_eq!(plain.features, out.features);
    // Wrong input length is an error, not a crash.
    assert!(enc.encode(&input[1..], n, false).is_err());
}

#[test]
fn export_is_well_formed_bytes() {
    // No runtime needed: the model starts with ir_version (field 1, varint) and holds the names.
    let (spec, w) = tiny_net(16);
    let bytes = encoder_to_onnx(&spec, &w, ExportOptions::default()).expect("exports");
    assert_eq!(&bytes[..2], &[0x08, 8]);
    for name in [
        "input",
        "features",
        "logits",
        "Conv",
        "Clip",
        "GlobalAveragePool",
        "Gemm",
    ] {
        assert!(
            bytes.windows(name.len()).any(|win| win == name.as_bytes()),
            "{name}"
        );
    }
}

// ---- real encoders ----------------------------------------------------------------------

/// Export, run ORT on chelsea + coffee, compare chelsea against the reference forward pass,
/// and return the softmax of both images.
fn real_encoder(kind: EncoderKind, file: &str) -> [Vec<f32>; 2] {
    let test = kind.name();
    let dir = weights_dir();
    require_ort(test);
    let w = load_pth(find(&dir, file, 4)).expect("loads");
    let spec = spec_for(kind, &w).expect("spec");
    let pre = spec.preprocess;
    let size = pre.size as usize;
    let cat = load_image(&dir, "chelsea.png", &pre);
    let coffee = load_image(&dir, "coffee.png", &pre);
    let batch = [cat.clone(), coffee].concat();
    let mut enc = OrtEncoder::new(&spec, &w, OrtOptions::default()).expect("session");
    let out = enc.encode(&batch, 2, true).expect("runs");
    let fd = spec.feature_dim;
    assert_eq!(out.features.len(), 2 * fd);

    let t = std::time::Instant::now();
    let r = reference(&spec, &w, &cat, size);
    println!("{test}: reference forward pass took {:.1?}", t.elapsed());
    let m = enc.feature_map_size();
    let map = out.feature_map.as_ref().expect("map");
    let diffs = [
        max_diff(&out.features[..fd], &r.features),
        max_diff(&out.logits[..1000], &r.logits),
        max_diff(&map[..fd * m * m], &r.feature_map),
    ];
    println!(
        "{test}: max |ORT - reference| features {:e}, logits {:e}, feature map {:e}",
        diffs[0], diffs[1], diffs[2]
    );
    assert!(diffs.iter().all(|&d| d < 1e-3), "{diffs:?}");
    [softmax(&out.logits[..1000]), softmax(&out.logits[1000..])]
}

const TABBY: usize = 281;
const TIGER_CAT: usize = 282;
const EGYPTIAN_CAT: usize = 285;
const ESPRESSO: usize = 967;

#[test]
fn mobilenet_v2_matches_reference_and_knows_the_cat() {
    let [cat, coffee] = real_encoder(EncoderKind::MobileNetV2, "mobilenet_v2-b0353104.pth");
    println!(
        "mobilenet-v2: Egyptian cat {:.3}, tiger cat {:.3}, tabby {:.3}; espresso {:.3}",
        cat[EGYPTIAN_CAT], cat[TIGER_CAT], cat[TABBY], coffee[ESPRESSO]
    );
    assert_eq!(argmax(&cat), EGYPTIAN_CAT);
    assert!(
        (cat[EGYPTIAN_CAT] - 0.71).abs() < 0.03,
        "{}",
        cat[EGYPTIAN_CAT]
    );
    assert_eq!(argmax(&coffee), ESPRESSO);
    assert!(coffee[ESPRESSO] > 0.95);
}

#[test]
fn efficientnet_lite0_matches_reference_and_knows_the_cat() {
    let [cat, coffee] = real_encoder(
        EncoderKind::EfficientNetLite0,
        "efficientnet-lite0-57934424.pth",
    );
    println!(
        "efficientnet-lite0: tiger cat {:.3}, Egyptian cat {:.3}, tabby {:.3}; espresso {:.3}",
        cat[TIGER_CAT], cat[EGYPTIAN_CAT], cat[TABBY], coffee[ESPRESSO]
    );
    // DESIGN.md: tiger cat ≈0.39, Egyptian cat ≈0.36, tabby ≈0.17 — close, so only check the top 3.
    let mut top: Vec<usize> = (0..1000).collect();
    top.sort_by(|&a, &b| cat[b].total_cmp(&cat[a]));
    let mut top3 = top[..3].to_vec();
    top3.sort_unstable();
    assert_eq!(top3, vec![TABBY, TIGER_CAT, EGYPTIAN_CAT]);
    assert_eq!(argmax(&coffee), ESPRESSO);
}

/// Nodes added to an ONNX file graft did not write (here: one it wrote, read back as
/// bytes only): a classifier head appended after the file's "features" output runs in ONNX
/// Runtime and computes softmax(W·features + b), while the file's own outputs are unchanged.
#[test]
fn nodes_appended_to_a_foreign_graph_run() {
    use graft_model::onnx::{batch, gemm, read_model, Dim, Graph};
    use graft_model::ort_backend::{run_images_outputs, session_from_onnx};
    require_ort("nodes_appended_to_a_foreign_graph_run");
    let size = 16;
    let (spec, w) = tiny_net(size as u32);
    let opts = ExportOptions {
        input_size: None,
        logits: false,
        feature_map: false,
    };
    let original = encoder_to_onnx(&spec, &w, opts).expect("export");
    let info = read_model(&original).expect("reads");
    let fd = spec.feature_dim;
    assert_eq!(
        info.output("features").and_then(|o| o.dims.clone()),
        Some(vec![batch(), Dim::Fixed(fd)])
    );
    assert_eq!(info.inputs[0].name, "input");

    let classes = 3;
    let mut rng = Lcg(11);
    let wt = rng.vec(classes * fd, 0.5, 0.0);
    let b = rng.vec(classes, 0.5, 0.0);
    let mut head = Graph::extending("head", &info.names);
    let wn = head.initializer("head.weight", &[classes, fd], &wt);
    let bn = head.initializer("head.bias", &[classes], &b);
    let logits = gemm(&mut head, "features", &wn, &bn, "head.logits");
    let probs = head.node(
        "Softmax",
        &[&logits],
        "probabilities",
        &[("axis", graft_model::onnx::Attr::Int(1))],
    );
    head.output(&probs, &[batch(), Dim::Fixed(classes)]);
    let extended = head.append_to(&original);
    // The file's own bytes come first, untouched.
    assert_eq!(&extended[..original.len()], &original[..]);
    let after = read_model(&extended).expect("reads");
    assert!(after.output("probabilities").is_some() && after.output("features").is_some());

    let n = 4;
    let input = Lcg(12).vec(n * 3 * size * size, 1.0, 0.0);
    let mut session = session_from_onnx(&extended, OrtOptions::default()).expect("session");
    let out = run_images_outputs(
        &mut session,
        &input,
        n,
        size,
        &["features", "probabilities"],
    )
    .expect("runs");
    let mut plain = session_from_onnx(&original, OrtOptions::default()).expect("session");
    let features = run_images_outputs(&mut plain, &input, n, size, &["features"]).expect("runs");
    assert_eq!(out[0], features[0], "the file's own output changed");
    for i in 0..n {
        let f = &out[0][i * fd..][..fd];
        let logits: Vec<f32> = (0..classes)
            .map(|c| b[c] + (0..fd).map(|k| wt[c * fd + k] * f[k]).sum::<f32>())
            .collect();
        let expected = softmax(&logits);
        let got = &out[1][i * classes..][..classes];
        assert!(max_diff(got, &expected) < 1e-6, "{got:?} vs {expected:?}");
    }
}
