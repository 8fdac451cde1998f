//! INT8 post-training quantization in the QDQ form ONNX Runtime fuses into integer kernels
//! (QLinearConv and friends): weights int8, symmetric, one scale per output channel;
//! activations uint8, asymmetric, one scale per tensor from ranges observed on calibration
//! images; biases int32 at the product of input and weight scales.
//!
//! x86-64 CPUs without VNNI (AVX2, AVX-512 without VNNI) run ONNX Runtime's uint8×int8 kernels
//! with `VPMADDUBSW`, which adds pairs of u8·s8 products in 16 bits with saturation: with
//! weights up to ±127 a pair reaches 2·255·127 = 64,770 and clips at 32,767. Weights kept
//! within ±63 ([`WeightBits::Seven`]) cannot clip (2·255·63 = 32,130); VNNI accumulates in
//! 32 bits and takes the full ±127.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use graft_model::onnx::{Attr, Graph};

/// Observed `[min, max]` of each activation tensor, keyed by its place in the network
/// ("input", "b3.l1" for block 3 layer 1 after its activation, "b3.add" for a residual sum).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub ranges: BTreeMap<String, (f32, f32)>,
    /// Images the ranges were observed on.
    pub images: usize,
}

impl Calibration {
    /// Widen `key`'s range to cover `values` (non-finite values are ignored).
    pub fn observe(&mut self, key: &str, values: &[f32]) {
        let (mut lo, mut hi) = self
            .ranges
            .get(key)
            .copied()
            .unwrap_or((f32::INFINITY, f32::NEG_INFINITY));
        for &v in values.iter().filter(|v| v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        self.ranges.insert(key.to_string(), (lo, hi));
    }

    pub fn range(&self, key: &str) -> Option<(f32, f32)> {
        self.ranges.get(key).copied().filter(|(lo, hi)| lo <= hi)
    }
}

/// Affine uint8 quantization of one tensor: `x ≈ scale · (q − zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: u8,
}

impl QParams {
    /// Parameters covering `[lo, hi]`, widened to contain 0 so that zero (padding, ReLU's
    /// floor) is exact.
    pub fn uint8(lo: f32, hi: f32) -> QParams {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let span = hi - lo;
        if !(span > 0.0 && span.is_finite()) {
            return QParams {
                scale: 1.0,
                zero_point: 0,
            };
        }
        let scale = span / 255.0;
        let zero_point = (-lo / scale).round().clamp(0.0, 255.0) as u8;
        QParams { scale, zero_point }
    }

    pub fn quantize(&self, x: f32) -> u8 {
        (x / self.scale + f32::from(self.zero_point))
            .round()
            .clamp(0.0, 255.0) as u8
    }

    pub fn dequantize(&self, q: u8) -> f32 {
        self.scale * (f32::from(q) - f32::from(self.zero_point))
    }
}

/// How many levels the int8 weights use (see the module's note on CPUs without VNNI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightBits {
    /// q in [−127, 127]: exact on CPUs with VNNI (and on ARM), may saturate without it.
    #[serde(rename = "8-bit")]
    Eight,
    /// q in [−63, 63] ("reduce range"): exact on every x86-64, at twice the rounding step.
    #[serde(rename = "7-bit")]
    Seven,
}

impl WeightBits {
    /// The largest |q|.
    pub fn max_level(self) -> i8 {
        match self {
            WeightBits::Eight => 127,
            WeightBits::Seven => 63,
        }
    }

    /// The range that is exact on the CPU this runs on: 7 bits on x86-64 without VNNI.
    pub fn for_this_cpu() -> WeightBits {
        if cpu_has_vnni() {
            WeightBits::Eight
        } else {
            WeightBits::Seven
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            WeightBits::Eight => "8-bit",
            WeightBits::Seven => "7-bit",
        }
    }
}

/// Whether this CPU's integer dot products accumulate in 32 bits: x86-64 with AVX-512 VNNI or
/// AVX-VNNI; always true elsewhere (ARM's dot-product instructions do not saturate).
pub fn cpu_has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

/// Symmetric int8 per output channel: `w[o] ≈ scale[o] · q[o]`, |q| ≤ `bits.max_level()`.
pub fn quantize_weights(w: &[f32], out_channels: usize, bits: WeightBits) -> (Vec<i8>, Vec<f32>) {
    let per = w.len() / out_channels.max(1);
    let top = f32::from(bits.max_level());
    let mut q = Vec::with_capacity(w.len());
    let mut scales = Vec::with_capacity(out_channels);
    for row in w.chunks(per.max(1)) {
        let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let s = if max > 0.0 { max / top } else { 1.0 };
        scales.push(s);
        q.extend(row.iter().map(|v| (v / s).round().clamp(-top, top) as i8));
    }
    (q, scales)
}

/// Biases as int32 at scale `input_scale · weight_scale[o]` (what integer convolution adds).
pub fn quantize_bias(b: &[f32], input_scale: f32, weight_scales: &[f32]) -> (Vec<i32>, Vec<f32>) {
    b.iter()
        .zip(weight_scales)
        .map(|(&v, &ws)| {
            let s = input_scale * ws;
            let q = (f64::from(v) / f64::from(s))
                .round()
                .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32;
            (q, s)
        })
        .unzip()
}

/// `DequantizeLinear(QuantizeLinear(x))`: the float value `x` as the integer kernels will see it.
/// Returns the dequantized value's name.
pub fn fake_quant(g: &mut Graph, x: &str, key: &str, p: QParams) -> String {
    let s = g.initializer(&format!("{key}.scale"), &[], &[p.scale]);
    let z = g.u8_initializer(&format!("{key}.zero_point"), &[], &[p.zero_point]);
    let q = g.node("QuantizeLinear", &[x, &s, &z], &format!("{key}.q"), &[]);
    g.node("DequantizeLinear", &[&q, &s, &z], &format!("{key}.dq"), &[])
}

/// Conv weights and bias as dequantized int8/int32 constants; returns (weight, bias) names.
pub fn quantized_conv_params(
    g: &mut Graph,
    name: &str,
    shape: &[usize],
    w: &[f32],
    b: &[f32],
    input_scale: f32,
    bits: WeightBits,
) -> (String, String) {
    let out = shape[0];
    let (qw, ws) = quantize_weights(w, out, bits);
    let wq = g.i8_initializer(&format!("{name}.weight_q"), shape, &qw);
    let wsn = g.initializer(&format!("{name}.weight_scale"), &[out], &ws);
    let wz = g.i8_initializer(&format!("{name}.weight_zero_point"), &[out], &vec![0; out]);
    let axis = [("axis", Attr::Int(0))];
    let wd = g.node(
        "DequantizeLinear",
        &[&wq, &wsn, &wz],
        &format!("{name}.weight"),
        &axis,
    );
    let (qb, bs) = quantize_bias(b, input_scale, &ws);
    let bq = g.i32_initializer(&format!("{name}.bias_q"), &[out], &qb);
    let bsn = g.initializer(&format!("{name}.bias_scale"), &[out], &bs);
    let bz = g.i32_initializer(&format!("{name}.bias_zero_point"), &[out], &vec![0; out]);
    let bd = g.node(
        "DequantizeLinear",
        &[&bq, &bsn, &bz],
        &format!("{name}.bias"),
        &axis,
    );
    (wd, bd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_params_keep_zero_exact_and_cover_the_range() {
        let p = QParams::uint8(-1.0, 3.0);
        assert_eq!(p.dequantize(p.quantize(0.0)), 0.0);
        assert!((p.dequantize(p.quantize(3.0)) - 3.0).abs() <= p.scale / 2.0);
        assert!((p.dequantize(p.quantize(-1.0)) + 1.0).abs() <= p.scale / 2.0);
        // A ReLU output: zero point 0, negatives clamp to 0.
        let r = QParams::uint8(0.5, 6.0);
        assert_eq!(r.zero_point, 0);
        assert_eq!(r.quantize(-2.0), 0);
        assert_eq!(r.quantize(7.0), 255);
        // Degenerate ranges still give a usable scale.
        assert_eq!(QParams::uint8(0.0, 0.0).scale, 1.0);
    }

    #[test]
    fn weights_round_trip_within_half_a_step_per_channel() {
        let w = [0.5, -0.25, 0.125, 0.0, 100.0, -3.0, 0.0, 0.0];
        for bits in [WeightBits::Eight, WeightBits::Seven] {
            let (q, s) = quantize_weights(&w, 2, bits);
            assert_eq!(s.len(), 2);
            assert_eq!(q[0], bits.max_level());
            assert_eq!(q[4], bits.max_level());
            for (i, (&qi, &wi)) in q.iter().zip(&w).enumerate() {
                let back = f32::from(qi) * s[i / 4];
                assert!(
                    (back - wi).abs() <= s[i / 4] / 2.0 + 1e-6,
                    "{i}: {back} vs {wi}"
                );
            }
            // An all-zero channel does not divide by zero.
            let (q, s) = quantize_weights(&[0.0; 4], 1, bits);
            assert_eq!((q, s), (vec![0; 4], vec![1.0]));
        }
    }

    #[test]
    fn seven_bit_weights_cannot_saturate_a_sixteen_bit_pair_sum() {
        // VPMADDUBSW: u8 activation × s8 weight, two products summed in i16.
        let pair = |w: i8| 2 * 255 * i32::from(w);
        assert!(pair(WeightBits::Seven.max_level()) <= i32::from(i16::MAX));
        assert!(pair(WeightBits::Eight.max_level()) > i32::from(i16::MAX));
    }

    #[test]
    fn bias_scale_is_input_times_weight_scale() {
        let (q, s) = quantize_bias(&[1.0, -2.0], 0.5, &[0.1, 0.2]);
        assert_eq!(s, vec![0.05, 0.1]);
        assert_eq!(q, vec![20, -20]);
    }

    #[test]
    fn calibration_widens_and_ignores_non_finite() {
        let mut c = Calibration::default();
        c.observe("a", &[1.0, f32::NAN, -2.0]);
        c.observe("a", &[5.0, f32::INFINITY]);
        assert_eq!(c.range("a"), Some((-2.0, 5.0)));
        c.observe("empty", &[]);
        assert_eq!(c.range("empty"), None);
    }
}
