//! INT8 export run by ONNX Runtime: a tiny network against a pure-Rust simulation of the
//! quantized arithmetic (so the bounds hold on every x86-64, VNNI or not), and a real encoder
//! that must still recognise the photos. Needs the ONNX Runtime library and, for the real
//! encoder, GRAFT_TEST_WEIGHTS_DIR; without them the tests fail (scripts/test.sh fetches both).

use std::path::PathBuf;

use graft_export::quant::{quantize_bias, quantize_weights, QParams};
use graft_export::{calibrate, Calibration, Int8, WeightBits};
use graft_model::arch::{spec_for, Act, ConvBn, EncoderKind, NetSpec};
use graft_model::onnx::{encoder_graph, encoder_to_onnx, fold_bn, ExportOptions};
use graft_model::ort_backend::{run_images, session_from_onnx, OrtOptions};
use graft_model::{load_pth, StateDict};

// The graft-model tests' helpers: the tiny network and the ONNX Runtime test utilities.
#[path = "../../graft-model/tests/common/mod.rs"]
mod common;
use common::ort::{argmax, find_file as find, load_image, max_diff, require_ort, softmax};
use common::tiny::{tiny_net, Lcg};

fn weights_dir() -> PathBuf {
    common::required_dir("GRAFT_TEST_WEIGHTS_DIR")
}

const EGYPTIAN_CAT: usize = 285;
const ESPRESSO: usize = 967;

/// `output` of the encoder (INT8 when `int8` is given), run by ONNX Runtime on `n` images.
fn run_in(
    spec: &NetSpec,
    w: &StateDict,
    int8: Option<Int8<'_>>,
    input: &[f32],
    n: usize,
    output: &str,
) -> (Vec<f32>, Vec<u8>) {
    run_graph(spec, w, ExportOptions::default(), int8, input, n, output)
}

/// The graph of `spec` with `opts` (INT8 when `int8` is given), run on one thread; its `output` and bytes.
fn run_graph(
    spec: &NetSpec,
    w: &StateDict,
    opts: ExportOptions,
    int8: Option<Int8<'_>>,
    input: &[f32],
    n: usize,
    output: &str,
) -> (Vec<f32>, Vec<u8>) {
    let eg = match int8 {
        None => encoder_graph(spec, w, opts),
        Some(q) => q.encoder_graph(spec, w, opts),
    }
    .expect("graph");
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
fn int8_of(cal: &Calibration, bits: WeightBits) -> Option<Int8<'_>> {
    Some(Int8 {
        calibration: cal,
        float_blocks: 0,
        weights: bits,
    })
}

/// The "features" output of `spec` (no classifier), INT8 when `int8` is given.
fn run_features(
    spec: &NetSpec,
    w: &StateDict,
    int8: Option<Int8<'_>>,
    input: &[f32],
    n: usize,
) -> Vec<f32> {
    let opts = ExportOptions {
        logits: false,
        ..ExportOptions::default()
    };
    run_graph(spec, w, opts, int8, input, n, "features").0
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

/// Every block INT8 (`float_blocks` 0), as [`Int8`] builds it.
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

    let (float, _) = run_in(&spec, &w, None, &input, n, "features");
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
    let all = Some(Int8 {
        calibration: &cal,
        float_blocks: spec.blocks.len(),
        weights: WeightBits::for_this_cpu(),
    });
    let (same, bytes) = run_in(&spec, &w, all, &input, n, "features");
    assert_eq!(same, float);
    assert!(!contains(&bytes, "QuantizeLinear"));

    // A calibration that misses a tensor is an error naming it, not a panic.
    let empty = Calibration::default();
    let missing = Int8 {
        calibration: &empty,
        float_blocks: 0,
        weights: WeightBits::for_this_cpu(),
    };
    let err = missing
        .encoder_graph(&spec, &w, ExportOptions::default())
        .expect_err("no ranges")
        .to_string();
    assert!(err.contains("`input`"), "{err}");
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
    let int8 = Some(Int8 {
        calibration: &cal,
        float_blocks: 2,
        weights: WeightBits::for_this_cpu(),
    });
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

/// INT8 of the block kinds beyond MobileNetV2's (projection shortcuts, ReLU after the sum,
/// max pooling; SiLU, hard-swish and squeeze-and-excitation), on graft's deterministic
/// weights: every quantized place is calibrated, and the INT8 features stay near the float
/// ones. A structural mistake (a bias at the wrong scale, a convolution reading unquantized
/// values as quantized) moves them by their whole size; rounding moves them by a few steps.
#[test]
fn int8_of_every_block_kind_stays_near_float() {
    require_ort("int8_of_every_block_kind_stays_near_float");
    let size = 224;
    let n = 4;
    for kind in [
        EncoderKind::ResNet18,
        EncoderKind::EfficientNetB0,
        EncoderKind::MobileNetV3Small,
    ] {
        let w = graft_model::synthetic::state_dict(kind, 3).expect("a layout");
        let spec = spec_for(kind, &w).expect("spec");
        let input = graft_model::synthetic::input(n, size, 9);
        let opts = OrtOptions {
            intra_threads: Some(1),
            ..OrtOptions::default()
        };
        let cal = calibrate(&spec, &w, &input, n, 2, opts).expect("calibrates");
        let (float, _) = run_in(&spec, &w, None, &input, n, "features");
        // 7 bits: the same integer arithmetic on every x86-64.
        let bits = WeightBits::Seven;
        let int8 = Some(Int8 {
            calibration: &cal,
            float_blocks: 1,
            weights: bits,
        });
        let (q, bytes) = run_in(&spec, &w, int8, &input, n, "features");
        assert!(contains(&bytes, "QuantizeLinear"));
        let scale = float.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = max_diff(&float, &q);
        // How far apart the images' own features are: INT8 must stay well inside it.
        let d = spec.feature_dim;
        let apart = max_diff(&float[..d], &float[d..2 * d]);
        println!(
            "{kind} INT8 (7-bit): max |INT8 − float| {worst:.3e} of features up to {scale:.3e}, \
             two images' features {apart:.3e} apart"
        );
        // Rounding adds about a percent of the scale per quantized block (measured block by
        // block on EfficientNet-B0: 1.0% after one, 7.3% after sixteen, growing smoothly); a
        // structural mistake jumps by the whole scale at its block.
        assert!(worst < 0.1 * scale, "{kind}: {worst} of {scale}");
        // And INT8 keeps two images apart: its error is below their difference.
        assert!(
            worst < apart,
            "{kind}: INT8 error {worst}, images {apart} apart"
        );
    }
}
