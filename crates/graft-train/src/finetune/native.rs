//! libtorch's own weight gradient for depthwise convolutions (with the `tch` feature).
//!
//! burn's generic weight gradient for a grouped convolution runs one convolution per group
//! and writes each into the result: ~1,000 small convolutions per MobileNetV2 step, about a
//! third of a libtorch CPU step and most of a CUDA one. libtorch has a dedicated kernel for
//! it, reached here through torch's autograd on the same tensors.

use burn::tensor::Tensor;

/// `∂L/∂W` of `conv2d(x, w, stride, padding, groups)` given `∂L/∂y` = `dy`, computed by
/// libtorch; `None` when the tensors do not live on libtorch (then the caller's own path
/// applies).
// burn 0.22 marks its libtorch backend deprecated; it is the one graft's `tch` feature uses.
#[cfg(feature = "tch")]
#[allow(deprecated)]
pub fn conv_weight_grad(
    x: Tensor<4>,
    dy: Tensor<4>,
    w: Tensor<4>,
    stride: usize,
    padding: [usize; 2],
    groups: usize,
) -> Option<Tensor<4>> {
    use burn_tch::{LibTorch, TchTensor};
    let x = x.try_into_primitive::<LibTorch>().ok()?.tensor;
    let dy = dy.try_into_primitive::<LibTorch>().ok()?.tensor;
    let w = w.try_into_primitive::<LibTorch>().ok()?.tensor;
    let (s, p) = (stride as i64, [padding[0] as i64, padding[1] as i64]);
    let gw = tch::with_grad(|| {
        let w = w.detach().set_requires_grad(true);
        let y = x
            .detach()
            .conv2d(&w, None::<&tch::Tensor>, [s, s], p, [1, 1], groups as i64);
        // Σ y·dy has gradient dy at y: its gradient at w is the one wanted.
        let l = (y * dy.detach()).sum(None);
        tch::Tensor::run_backward(&[l], &[&w], false, false)
            .into_iter()
            .next()
    })?;
    Some(Tensor::from_primitive::<LibTorch>(TchTensor::new(gw)))
}

/// Without the `tch` feature there is no libtorch tensor to hand over.
#[cfg(not(feature = "tch"))]
pub fn conv_weight_grad(
    _x: Tensor<4>,
    _dy: Tensor<4>,
    _w: Tensor<4>,
    _stride: usize,
    _padding: [usize; 2],
    _groups: usize,
) -> Option<Tensor<4>> {
    None
}
