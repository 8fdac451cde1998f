//! The layer operations [`super::TopNet`] is built from, each shaped so that burn's autodiff
//! (or the backend's own kernel) gives a cheap backward pass.

use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{activation, FloatDType, Slice, Tensor};

/// `min(max(x, 0), 6)` as `relu(x) − relu(x − 6)`. burn's `relu6` is a clamp, which its
/// autodiff runs as compare-and-mask passes (masked fills are slow on flex and libtorch
/// alike); relu's backward is one fused pass. Exact for |x| < 2²⁵: there `x − 6` is exact,
/// so `x − (x − 6)` is exactly 6.
pub fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activation::relu(x.clone()) - activation::relu(x - 6.0)
}

/// `min(max(x, 0), 6)` as `clamp_max(relu(x), 6)`: on libtorch, where relu's backward is a
/// compare and a masked fill, this is 6 passes over the tensor forward and back against the
/// 10 of [`relu6`] (flex fuses relu's backward, and there [`relu6`] is the cheaper).
pub fn relu6_masked<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activation::relu(x).clamp_max(6.0)
}

/// A 1×1 convolution (stride 1, no padding) as a batched matrix product `W · X` over the
/// channels of each image. Same result as `conv2d`, but its weight gradient is one GEMM per
/// image: burn's generic weight gradient runs it as a convolution whose kernel is the whole
/// feature map (112×112 at the top of MobileNetV2), which libtorch and flex both run slowly,
/// and 1×1 convolutions hold most of the multiply-adds of the nets graft fine-tunes.
pub fn pointwise(x: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    let [n, cin, h, w] = x.dims();
    let [cout, ..] = weight.dims();
    let w3: Tensor<3> = weight.reshape([1, cout, cin]);
    let x3: Tensor<3> = x.reshape([n, cin, h * w]);
    let b: Tensor<3> = bias.reshape([1, cout, 1]);
    (w3.matmul(x3) + b).reshape([n, cout, h, w])
}

/// Largest input area (h·w) computed by [`depthwise`]: at small maps with many channels the
/// per-group gradient is what costs; at large maps the `k²` full-size views cost more than it.
pub(super) const DEPTHWISE_VIEWS_MAX_AREA: usize = 14 * 14;

/// A depthwise convolution (one `k×k` filter per channel) as a sum of `k²` shifted, strided
/// views of the padded input, each scaled per channel. Same result as a grouped `conv2d`,
/// but its gradient is a few elementwise ops: burn's generic weight gradient for grouped
/// convolutions runs one small convolution per group (960 of them in MobileNetV2's widest
/// blocks), which dominated a training step on every backend.
pub fn depthwise(
    x: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    (top, bottom): (usize, usize),
    (left, right): (usize, usize),
) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let [_, _, k, _] = weight.dims();
    let xp = x.pad([(top, bottom), (left, right)], PadMode::Constant(0.0));
    let (hp, wp) = (h + top + bottom, w + left + right);
    let (ho, wo) = ((hp - k) / stride + 1, (wp - k) / stride + 1);
    let mut acc: Option<Tensor<4>> = None;
    for ky in 0..k {
        for kx in 0..k {
            let view = xp.clone().slice([
                Slice::new(0, Some(n as isize), 1),
                Slice::new(0, Some(c as isize), 1),
                Slice::new(
                    ky as isize,
                    Some((ky + stride * (ho - 1) + 1) as isize),
                    stride as isize,
                ),
                Slice::new(
                    kx as isize,
                    Some((kx + stride * (wo - 1) + 1) as isize),
                    stride as isize,
                ),
            ]);
            let wk: Tensor<4> = weight
                .clone()
                .slice([0..c, 0..1, ky..ky + 1, kx..kx + 1])
                .reshape([1, c, 1, 1]);
            let term = view * wk;
            acc = Some(match acc {
                Some(a) => a + term,
                None => term,
            });
        }
    }
    let b: Tensor<4> = bias.reshape([1, c, 1, 1]);
    match acc {
        Some(a) => a + b,
        None => b,
    }
}

/// A trained depthwise weight whose gradient is computed after burn's backward pass, by the
/// backend's own kernel (burn's generic one loops over channels). The convolution runs with
/// an untracked weight, and a tracked zero `probe` added to its output collects `∂L/∂y`.
pub struct Deferred {
    pub slot: usize,
    input: Tensor<4>,
    probe: Tensor<4>,
    weight: Tensor<4>,
    stride: usize,
    padding: [usize; 2],
    groups: usize,
}

impl Deferred {
    /// The depthwise convolution of `x` with `weight` (untracked, in the compute type) and
    /// `bias`, symmetric `padding`, plus a tracked zero probe on its output; the weight's
    /// gradient (slot `slot`) comes later from [`Deferred::weight_grad`].
    pub(super) fn conv(
        x: Tensor<4>,
        weight: Tensor<4>,
        bias: Tensor<1>,
        stride: usize,
        padding: [usize; 2],
        slot: usize,
    ) -> (Tensor<4>, Deferred) {
        let [_, groups, _, _] = x.dims();
        let opts = ConvOptions::new([stride, stride], padding, [1, 1], groups);
        let out = conv2d(x.clone(), weight.clone(), Some(bias), opts);
        let probe = Tensor::<4>::zeros(out.dims(), &out.device())
            .cast(out.dtype())
            .require_grad();
        let d = Deferred {
            slot,
            input: x,
            probe: probe.clone(),
            weight,
            stride,
            padding,
            groups,
        };
        (out + probe, d)
    }

    /// The weight's gradient (flat, f32) from the gradients of a backward pass; `None` when
    /// the backend has no native kernel here or the probe got no gradient.
    pub fn weight_grad(&self, grads: &burn::tensor::Gradients) -> Option<Vec<f32>> {
        let dy = self.probe.grad(grads)?;
        let gw = super::native::conv_weight_grad(
            self.input.clone().inner(),
            dy,
            self.weight.clone().inner(),
            self.stride,
            self.padding,
            self.groups,
        )?;
        let n = gw.shape().num_elements();
        gw.cast(FloatDType::F32)
            .reshape([n])
            .into_data()
            .try_into_vec::<f32>()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use graft_data::rng::SplitMix64;

    /// A flex tensor of `shape` with values in [-1, 1) drawn from `rng`.
    fn random<const D: usize>(rng: &mut SplitMix64, shape: [usize; D]) -> Tensor<D> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.next_f64() as f32 * 2.0 - 1.0).collect();
        Tensor::<D>::from_data(TensorData::new(v, shape), &Device::flex())
    }

    fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().expect("f32 values")
    }

    /// Same shape, and every value within 1e-5 of the reference.
    fn assert_close(ours: Tensor<4>, reference: Tensor<4>, what: &str) {
        assert_eq!(ours.dims(), reference.dims(), "{what}");
        for (p, q) in host(ours).iter().zip(&host(reference)) {
            assert!((p - q).abs() < 1e-5, "{what}: {p} vs {q}");
        }
    }

    #[test]
    fn depthwise_by_shifted_views_equals_grouped_conv2d() {
        let mut rng = SplitMix64::new(11);
        let (n, c, h, k) = (2, 5, 9, 3);
        for (stride, pad_h, pad_w) in [
            (1, (1, 1), (1, 1)),
            (2, (1, 1), (1, 1)),
            (2, (0, 1), (0, 1)),
        ] {
            let x = random(&mut rng, [n, c, h, h]);
            let w = random(&mut rng, [c, 1, k, k]);
            let b = random(&mut rng, [c]);
            let ours = depthwise(x.clone(), w.clone(), b.clone(), stride, pad_h, pad_w);
            let opts = ConvOptions::new_with_padding([stride, stride], [pad_h, pad_w], [1, 1], c);
            let reference = conv2d(x, w, Some(b), opts);
            assert_close(ours, reference, &format!("stride {stride} pad {pad_h:?}"));
        }
    }

    #[test]
    fn pointwise_by_matmul_equals_conv2d() {
        let mut rng = SplitMix64::new(12);
        let (n, cin, cout, h, w) = (3, 6, 4, 5, 7);
        let x = random(&mut rng, [n, cin, h, w]);
        let wt = random(&mut rng, [cout, cin, 1, 1]);
        let b = random(&mut rng, [cout]);
        let ours = pointwise(x.clone(), wt.clone(), b.clone());
        let reference = conv2d(x, wt, Some(b), ConvOptions::new([1, 1], [0, 0], [1, 1], 1));
        assert_close(ours, reference, "1×1");
    }

    #[test]
    fn both_relu6_forms_are_exactly_the_clamp() {
        let mut v: Vec<f32> = vec![
            -1e9, -7.0, -0.0, 0.0, 1e-30, 0.1, 3.0, 5.999_999, 6.0, 6.000_001, 7.3, 11.99, 12.0,
            12.5, 1e3, 123_456.79, 3.3e7,
        ];
        let mut rng = SplitMix64::new(13);
        v.extend((0..1000).map(|_| (rng.next_f64() as f32 - 0.3) * 40.0));
        let n = v.len();
        let t = Tensor::<1>::from_data(TensorData::new(v.clone(), [n]), &Device::flex());
        let ours = host(relu6(t.clone()));
        let masked = host(relu6_masked(t));
        for ((x, y), z) in v.iter().zip(&ours).zip(&masked) {
            assert_eq!(*y, x.clamp(0.0, 6.0), "relu6({x})");
            assert_eq!(*z, x.clamp(0.0, 6.0), "relu6_masked({x})");
        }
    }
}
