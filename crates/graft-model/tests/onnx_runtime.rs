//! The hand-written ONNX export, run by ONNX Runtime, against a naive pure-Rust forward pass
//! (BatchNorm applied unfused, f64 accumulation) that shares nothing with the exporter but
//! the spec. Needs the ONNX Runtime library (scripts/fetch-onnxruntime.sh or ORT_DYLIB_PATH)
//! and, for the real encoders, GRAFT_TEST_WEIGHTS_DIR (scripts/fetch-test-assets.sh). Without
//! them the tests fail (scripts/test.sh fetches both).

use std::path::{Path, PathBuf};

use graft_model::arch::{
    spec_for, Act, Block, ConvBn, EncoderKind, Linear, NetSpec, Padding, Preprocess,
};
use graft_model::encoder::ImageEncoder;
use graft_model::onnx::quant::{quantize_bias, quantize_weights, QParams};
use graft_model::onnx::{
    encoder_graph_in, encoder_to_onnx, fold_bn, Calibration, ExportOptions, Precision, WeightBits,
};
use graft_model::ort_backend::{
    self, calibrate, run_images, session_from_onnx, OrtEncoder, OrtOptions,
};
use graft_model::{load_pth, DType, StateDict, Tensor};

/// ONNX Runtime's library must load (scripts/test.sh fetches it); `test` names who needs it.
fn require_ort(test: &str) {
    if let Err(e) = ort_backend::environment() {
        panic!("{test} needs ONNX Runtime: {e} (run the tests with scripts/test.sh)");
    }
}

fn weights_dir() -> PathBuf {
    common::required_dir("GRAFT_TEST_WEIGHTS_DIR")
}

mod common;

/// The file `name` under `dir`; a test cannot go on without it.
fn find(dir: &Path, name: &str, depth: usize) -> PathBuf {
    common::find(dir, name, depth)
        .unwrap_or_else(|| panic!("{name} not found under {}", dir.display()))
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
    let c = &spec.classifier;
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

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = logits.iter().map(|&l| (l - m).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

// ---- tiny synthetic network -------------------------------------------------------------

struct Lcg(u64);
impl Lcg {
    /// Uniform in [-1, 1).
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale + offset).collect()
    }
}

fn f32_tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor {
        shape: shape.to_vec(),
        data,
        dtype: DType::F32,
    }
}

#[allow(clippy::too_many_arguments)]
fn layer(
    w: &mut StateDict,
    rng: &mut Lcg,
    name: &str,
    (in_ch, out_ch): (usize, usize),
    kernel: usize,
    stride: usize,
    groups: usize,
    padding: Padding,
    act: Option<Act>,
) -> ConvBn {
    let shape = [out_ch, in_ch / groups, kernel, kernel];
    let fan_in = (in_ch / groups * kernel * kernel) as f32;
    w.insert(
        format!("{name}.conv"),
        f32_tensor(
            &shape,
            rng.vec(shape.iter().product(), 1.5 / fan_in.sqrt(), 0.0),
        ),
    );
    w.insert(
        format!("{name}.bn.weight"),
        f32_tensor(&[out_ch], rng.vec(out_ch, 0.4, 1.0)),
    );
    w.insert(
        format!("{name}.bn.bias"),
        f32_tensor(&[out_ch], rng.vec(out_ch, 0.3, 0.1)),
    );
    w.insert(
        format!("{name}.bn.running_mean"),
        f32_tensor(&[out_ch], rng.vec(out_ch, 0.3, 0.0)),
    );
    w.insert(
        format!("{name}.bn.running_var"),
        f32_tensor(&[out_ch], rng.vec(out_ch, 0.4, 0.9)),
    );
    ConvBn {
        conv: format!("{name}.conv"),
        bn: format!("{name}.bn"),
        in_ch,
        out_ch,
        kernel,
        stride,
        groups,
        padding,
        act,
    }
}

/// Stem 3×3/2, an inverted residual (expand, depthwise, project, skip), a 5×5/2 depthwise
/// with asymmetric TF padding, a symmetric-padding conv, a head conv and a classifier.
fn tiny_net(size: u32) -> (NetSpec, StateDict) {
    let mut rng = Lcg(7);
    let mut w = StateDict::new("tiny");
    let (same, r6) = (Padding::TfSame, Some(Act::Relu6));
    let r = &mut rng;
    let blocks = vec![
        Block {
            layers: vec![layer(&mut w, r, "stem", (3, 8), 3, 2, 1, same, r6)],
            residual: false,
        },
        Block {
            layers: vec![
                layer(&mut w, r, "b1.expand", (8, 16), 1, 1, 1, same, r6),
                layer(&mut w, r, "b1.dw", (16, 16), 3, 1, 16, same, r6),
                layer(&mut w, r, "b1.project", (16, 8), 1, 1, 1, same, None),
            ],
            residual: true,
        },
        Block {
            layers: vec![
                layer(&mut w, r, "b2.dw", (8, 8), 5, 2, 8, same, r6),
                layer(&mut w, r, "b2.project", (8, 12), 1, 1, 1, same, None),
            ],
            residual: false,
        },
        Block {
            layers: vec![layer(
                &mut w,
                r,
                "b3",
                (12, 12),
                3,
                1,
                1,
                Padding::Symmetric(1),
                r6,
            )],
            residual: true,
        },
        Block {
            layers: vec![layer(&mut w, r, "head", (12, 16), 1, 1, 1, same, r6)],
            residual: false,
        },
    ];
    w.insert("fc.weight", f32_tensor(&[5, 16], rng.vec(80, 0.5, 0.0)));
    w.insert("fc.bias", f32_tensor(&[5], rng.vec(5, 0.5, 0.0)));
    let spec = NetSpec {
        kind: EncoderKind::MobileNetV2,
        blocks,
        feature_dim: 16,
        classifier: Linear {
            weight: "fc.weight".into(),
            bias: "fc.bias".into(),
            in_features: 16,
            out_features: 5,
        },
        bn_eps: 1e-3,
        preprocess: Preprocess {
            size,
            resize_shorter: size,
            mean: [0.5; 3],
            std: [0.25; 3],
            filter: Default::default(),
        },
    };
    (spec, w)
}

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

// ---- INT8 -------------------------------------------------------------------------------

/// `output` of the encoder in `precision`, run by ONNX Runtime on `n` images.
fn run_in(
    spec: &NetSpec,
    w: &StateDict,
    precision: Precision<'_>,
    input: &[f32],
    n: usize,
    output: &str,
) -> (Vec<f32>, Vec<u8>) {
    run_graph(
        spec,
        w,
        ExportOptions::default(),
        precision,
        input,
        n,
        output,
    )
}

/// The graph of `spec` with `opts` in `precision`, run on one thread; its `output` and bytes.
fn run_graph(
    spec: &NetSpec,
    w: &StateDict,
    opts: ExportOptions,
    precision: Precision<'_>,
    input: &[f32],
    n: usize,
    output: &str,
) -> (Vec<f32>, Vec<u8>) {
    let eg = encoder_graph_in(spec, w, opts, precision).expect("graph");
    let bytes = eg.graph.to_model("test", "0");
    let ort = OrtOptions {
        intra_threads: Some(1),
        ..OrtOptions::default()
    };
    let mut session = session_from_onnx(&bytes, ort).expect("session");
    let size = spec.preprocess.size as usize;
    let out = run_images(&mut session, input, n, size, output).expect("runs");
    (out, bytes)
}

/// Every block INT8 with `bits` weights.
fn int8_of(cal: &Calibration, bits: WeightBits) -> Precision<'_> {
    Precision::Int8 {
        calibration: cal,
        float_blocks: 0,
        weights: bits,
    }
}

/// The "features" output of `spec` (no classifier) in `precision`.
fn run_features(
    spec: &NetSpec,
    w: &StateDict,
    precision: Precision<'_>,
    input: &[f32],
    n: usize,
) -> Vec<f32> {
    let opts = ExportOptions {
        logits: false,
        ..ExportOptions::default()
    };
    run_graph(spec, w, opts, precision, input, n, "features").0
}

fn contains(bytes: &[u8], s: &str) -> bool {
    bytes.windows(s.len()).any(|w| w == s.as_bytes())
}

/// The INT8 graph's arithmetic, simulated in f64 for one image: the same quantized weights,
/// biases and activation parameters graft writes, every tensor rounded where the graph rounds
/// it. Pure Rust, so the same on every CPU.
///
/// `bound[i]` bounds how far ONNX Runtime's `features[i]` may be from the simulation, derived
/// from the arithmetic, element by element: its integer kernels compute the same integer sums
/// exactly, so an activation can only come out differently where its value lies within
/// [`TIE`] of a rounding boundary (the float requantization multiplier's error, or a tie
/// broken to even), by one step; such a difference spreads through the next convolution as
/// |weight| × step and is absorbed again by any rounding it cannot push across a boundary.
/// With 8-bit weights on a CPU without VNNI, ONNX Runtime's 16-bit pair sums saturate and break
/// this bound; 7-bit weights cannot saturate.
struct QdqSim {
    features: Vec<f64>,
    bound: Vec<f64>,
    float: Vec<f64>,
}

/// How close (in quantization steps) to a rounding boundary a value must come before ONNX
/// Runtime may round it the other way: its requantization multiplies an exact int32 sum by an
/// f32 scale (relative error ≤ 2⁻²³ with the scale's own rounding), on values up to 255 steps:
/// ≤ 255 · 2⁻²³ ≈ 3e-5 steps; 2⁻¹² leaves an 8× margin.
const TIE: f64 = 1.0 / 4096.0;

/// Round `x` onto `p`'s grid as QuantizeLinear + DequantizeLinear do, and turn the pre-rounding
/// error bound `dx` into the bound after rounding.
fn round_bounded(x: &mut [f64], dx: &mut [f64], p: QParams) {
    let step = f64::from(p.scale);
    for (v, d) in x.iter_mut().zip(dx.iter_mut()) {
        let t = *v / step + f64::from(p.zero_point);
        let to_boundary = (t - t.floor() - 0.5).abs();
        // Off by less than the distance to the boundary: the same grid point. Otherwise the two
        // land a whole number of steps apart: at most the steps the error spans, plus one.
        *d = if to_boundary > *d / step + TIE {
            0.0
        } else {
            step * ((*d / step + TIE).floor() + 1.0)
        };
        *v = f64::from(p.dequantize(p.quantize(*v as f32)));
    }
}

/// Every block INT8 (`float_blocks` 0), as [`Precision::Int8`] builds it.
fn qdq_reference(
    spec: &NetSpec,
    w: &StateDict,
    cal: &Calibration,
    bits: WeightBits,
    image: &[f32],
    size: usize,
) -> QdqSim {
    let params = |key: &str| {
        let (lo, hi) = cal.range(key).expect("calibrated");
        QParams::uint8(lo, hi)
    };
    // The simulated tensor, ONNX Runtime's distance bound, the float tensor, and the scale
    // the next convolution reads.
    let p = params("input");
    let mut xf: Vec<f64> = image.iter().map(|&v| f64::from(v)).collect();
    let mut x = xf.clone();
    let mut dx = vec![0.0; x.len()];
    round_bounded(&mut x, &mut dx, p);
    let mut scale = p.scale;
    let mut s = size;
    for (bi, block) in spec.blocks.iter().enumerate() {
        let (block_in, block_in_d, block_in_f) = (x.clone(), dx.clone(), xf.clone());
        for (li, l) in block.layers.iter().enumerate() {
            let ((shape, wf), bf) = fold_bn(l, w, spec.bn_eps).expect("fold");
            let out = shape[0];
            let (qw, ws) = quantize_weights(&wf, out, bits);
            let (qb, bs) = quantize_bias(&bf, scale, &ws);
            let per = wf.len() / out;
            let wq: Vec<f64> = qw
                .iter()
                .enumerate()
                .map(|(i, &q)| f64::from(q) * f64::from(ws[i / per]))
                .collect();
            let bq: Vec<f64> = qb
                .iter()
                .zip(&bs)
                .map(|(&q, &s)| f64::from(q) * f64::from(s))
                .collect();
            let abs_w: Vec<f64> = wq.iter().map(|v| v.abs()).collect();
            let wf64: Vec<f64> = wf.iter().map(|&v| f64::from(v)).collect();
            let bf64: Vec<f64> = bf.iter().map(|&v| f64::from(v)).collect();
            let zeros = vec![0.0; out];
            let os;
            (x, os) = conv_folded(l, &wq, &bq, &x, s, l.act);
            // ReLU6 is 1-Lipschitz: the bound passes through it unchanged.
            (dx, _) = conv_folded(l, &abs_w, &zeros, &dx, s, None);
            (xf, _) = conv_folded(l, &wf64, &bf64, &xf, s, l.act);
            s = os;
            let p = params(&format!("b{bi}.l{li}"));
            round_bounded(&mut x, &mut dx, p);
            scale = p.scale;
        }
        if block.residual {
            x.iter_mut().zip(&block_in).for_each(|(a, b)| *a += b);
            dx.iter_mut().zip(&block_in_d).for_each(|(a, b)| *a += b);
            xf.iter_mut().zip(&block_in_f).for_each(|(a, b)| *a += b);
            let p = params(&format!("b{bi}.add"));
            round_bounded(&mut x, &mut dx, p);
            scale = p.scale;
        }
    }
    let area = (s * s) as f64;
    let pool = |v: &[f64]| -> Vec<f64> {
        v.chunks(s * s)
            .map(|p| p.iter().sum::<f64>() / area)
            .collect()
    };
    QdqSim {
        features: pool(&x),
        bound: pool(&dx),
        float: pool(&xf),
    }
}

/// One image `[c, s, s]` through one convolution with folded weights `[out, in/groups, k, k]`,
/// bias and activation `act`, in f64.
fn conv_folded(
    l: &ConvBn,
    wt: &[f64],
    bias: &[f64],
    x: &[f64],
    s: usize,
    act: Option<Act>,
) -> (Vec<f64>, usize) {
    let (pb, pa) = l.padding.amounts(s, l.kernel, l.stride);
    let (k, st) = (l.kernel, l.stride);
    let os = (s + pb + pa - k) / st + 1;
    let cin_g = l.in_ch / l.groups;
    let cout_g = l.out_ch / l.groups;
    let mut out = vec![0f64; l.out_ch * os * os];
    for o in 0..l.out_ch {
        let g = o / cout_g;
        let dst = &mut out[o * os * os..][..os * os];
        dst.iter_mut().for_each(|v| *v = bias[o]);
        for cl in 0..cin_g {
            let plane = &x[(g * cin_g + cl) * s * s..][..s * s];
            for ky in 0..k {
                for kx in 0..k {
                    let wv = wt[((o * cin_g + cl) * k + ky) * k + kx];
                    for oy in 0..os {
                        let iy = (oy * st + ky) as isize - pb as isize;
                        if iy < 0 || iy >= s as isize {
                            continue;
                        }
                        for ox in 0..os {
                            let ix = (ox * st + kx) as isize - pb as isize;
                            if ix >= 0 && ix < s as isize {
                                dst[oy * os + ox] += wv * plane[iy as usize * s + ix as usize];
                            }
                        }
                    }
                }
            }
        }
        if act == Some(Act::Relu6) {
            dst.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
        }
    }
    (out, os)
}

#[test]
fn int8_tiny_network_stays_close_to_float() {
    require_ort("int8_tiny_network_stays_close_to_float");
    let size = 16;
    let (spec, w) = tiny_net(size as u32);
    let n = 8;
    let input = Lcg(5).vec(n * 3 * size * size, 2.0, 0.0);
    let opts = OrtOptions {
        intra_threads: Some(1),
        ..OrtOptions::default()
    };
    let cal = calibrate(&spec, &w, &input, n, 3, opts).expect("calibrates");
    assert_eq!(cal.images, n);
    // Every activation INT8 reads is observed: the input, each layer, each residual sum.
    for key in ["input", "b0.l0", "b1.l2", "b1.add", "b3.add", "b4.l0"] {
        let (lo, hi) = cal
            .range(key)
            .unwrap_or_else(|| panic!("no range for {key}"));
        assert!(lo < hi, "{key}: {lo}..{hi}");
    }
    // A ReLU6 layer's range lies within [0, 6].
    let (lo, hi) = cal.range("b0.l0").expect("stem");
    assert!(lo >= 0.0 && hi <= 6.0, "{lo}..{hi}");

    let (float, _) = run_in(&spec, &w, Precision::Float, &input, n, "features");
    let scale = float.iter().fold(0f32, |m, v| m.max(v.abs()));
    // The weights this CPU gets by default, and 7 bits, which must hold on every x86-64.
    let mut kinds = vec![WeightBits::for_this_cpu()];
    if kinds[0] != WeightBits::Seven {
        kinds.push(WeightBits::Seven);
    }
    // f32 outputs and float pooling add a few ulps of the values.
    let ulps = 8.0 * f64::from(f32::EPSILON) * f64::from(scale);
    for bits in kinds {
        let (q, bytes) = run_in(&spec, &w, int8_of(&cal, bits), &input, n, "features");
        assert!(contains(&bytes, "QuantizeLinear") && contains(&bytes, "DequantizeLinear"));
        assert_eq!(q, run_features(&spec, &w, int8_of(&cal, bits), &input, n));
        let worst = max_diff(&float, &q);
        assert!(worst > 0.0, "INT8 rounding left no trace: not quantized?");
        // The simulation (the same on every CPU) against float: the quantization error INT8
        // allows.
        let sims: Vec<QdqSim> = (0..n)
            .map(|i| {
                let image = &input[i * 3 * size * size..][..3 * size * size];
                qdq_reference(&spec, &w, &cal, bits, image, size)
            })
            .collect();
        let off_float = sims
            .iter()
            .flat_map(|sim| sim.features.iter().zip(&sim.float))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "tiny net INT8, {} weights: max |ORT - float| = {worst:e}, max |simulated - float| \
             = {off_float:e}, of values up to {scale:e}",
            bits.name()
        );
        assert!(
            off_float < 0.08 * f64::from(scale),
            "{off_float} vs {scale}"
        );
        // ONNX Runtime against the simulation, within the rounding bound, for the network cut
        // after each block: after the first, one rounding stands between the input and the
        // output, and the bound is tight (a saturated sum breaks it by many steps).
        for cut in 1..=spec.blocks.len() {
            let mut prefix = spec.clone();
            prefix.blocks.truncate(cut);
            prefix.feature_dim = prefix.blocks[cut - 1].layers.last().expect("layer").out_ch;
            let d = prefix.feature_dim;
            let got = run_features(&prefix, &w, int8_of(&cal, bits), &input, n);
            let (mut off, mut bound, mut slack) = (0f64, 0f64, f64::INFINITY);
            for i in 0..n {
                let image = &input[i * 3 * size * size..][..3 * size * size];
                let sim = qdq_reference(&prefix, &w, &cal, bits, image, size);
                for j in 0..d {
                    let o = (f64::from(got[i * d + j]) - sim.features[j]).abs();
                    off = off.max(o);
                    bound = bound.max(sim.bound[j]);
                    slack = slack.min(sim.bound[j] + ulps - o);
                }
            }
            println!("  after block {cut}: max |ORT - simulated| = {off:e}, bound up to {bound:e}");
            assert!(
                slack >= 0.0,
                "after block {cut}: ONNX Runtime is {off} from the simulation, past its bound"
            );
        }
    }

    // All blocks kept float: the float graph, bit for bit.
    let all = Precision::Int8 {
        calibration: &cal,
        float_blocks: spec.blocks.len(),
        weights: WeightBits::for_this_cpu(),
    };
    let (same, bytes) = run_in(&spec, &w, all, &input, n, "features");
    assert_eq!(same, float);
    assert!(!contains(&bytes, "QuantizeLinear"));

    // A calibration that misses a tensor is an error naming it, not a panic.
    let empty = Calibration::default();
    let missing = Precision::Int8 {
        calibration: &empty,
        float_blocks: 0,
        weights: WeightBits::for_this_cpu(),
    };
    let err = encoder_graph_in(&spec, &w, ExportOptions::default(), missing)
        .expect_err("no ranges")
        .to_string();
    assert!(err.contains("`input`"), "{err}");
}

// ---- real encoders ----------------------------------------------------------------------

fn load_image(dir: &Path, name: &str, pre: &Preprocess) -> Vec<f32> {
    let img = image::open(find(dir, name, 4)).expect("decodes").to_rgb8();
    pre.apply(&img)
}

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
fn mobilenet_v2_int8_still_knows_the_cat_and_the_espresso() {
    let test = "mobilenet_v2_int8";
    let dir = weights_dir();
    require_ort(test);
    let w = load_pth(find(&dir, "mobilenet_v2-b0353104.pth", 4)).expect("loads");
    let spec = spec_for(EncoderKind::MobileNetV2, &w).expect("spec");
    let pre = spec.preprocess;
    let batch = [
        load_image(&dir, "chelsea.png", &pre),
        load_image(&dir, "coffee.png", &pre),
    ]
    .concat();
    let cal = calibrate(&spec, &w, &batch, 2, 2, OrtOptions::default()).expect("calibrates");
    let int8 = Precision::Int8 {
        calibration: &cal,
        float_blocks: 2,
        weights: WeightBits::for_this_cpu(),
    };
    let (logits, bytes) = run_in(&spec, &w, int8, &batch, 2, "logits");
    let (cat, coffee) = (softmax(&logits[..1000]), softmax(&logits[1000..]));
    println!(
        "mobilenet-v2 INT8: Egyptian cat {:.3}, espresso {:.3}; {:.1} MB",
        cat[EGYPTIAN_CAT],
        coffee[ESPRESSO],
        bytes.len() as f64 / 1e6
    );
    assert_eq!(argmax(&cat), EGYPTIAN_CAT);
    assert_eq!(argmax(&coffee), ESPRESSO);
    // The encoder's weights shrink 4×; the float ImageNet classifier (5 MB) stays.
    let float = encoder_to_onnx(&spec, &w, ExportOptions::default()).expect("exports");
    assert!(
        bytes.len() * 10 < float.len() * 6,
        "{} vs {}",
        bytes.len(),
        float.len()
    );
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
