//! The trainable part of a fine-tune: the encoder from block `first` on (the top blocks, or
//! all of it for stage 3) and the head, with parameters held on the host and uploaded to the
//! burn device for each step.
//!
//! Host copies are the source of truth: AdamW, gradient accumulation, clipping and checkpoints
//! work on plain `Vec<f32>`s, so a checkpoint is exactly the state and resuming is exact. The
//! upload costs a few milliseconds against the convolutions' hundreds.
//! BatchNorm stays in inference mode (folded into each convolution): at the batch sizes that
//! fit a laptop, batch statistics are noise, and the frozen running statistics are the
//! pretrained ones.

use burn::tensor::module::conv2d;
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{activation, Device, FloatDType, Slice, Tensor, TensorData};
use graft_data::rng::SplitMix64;
use graft_model::arch::{Act, NetSpec, Padding};
use graft_model::onnx::fold_bn;
use graft_model::weights::StateDict;

use crate::head::HeadSpec;
use crate::{HeadModel, TrainError};

/// Which layers a parameter belongs to, for discriminative learning rates and freezing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Encoder block (index into the spec's blocks).
    Block(usize),
    Head,
}

/// One parameter tensor's place in the net.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub shape: Vec<usize>,
    pub group: Group,
    /// Weight decay applies to weights, not biases.
    pub decay: bool,
}

impl Slot {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Copy)]
struct Conv {
    kernel: usize,
    stride: usize,
    groups: usize,
    padding: Padding,
    relu6: bool,
}

/// Arithmetic of a fine-tune's forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// Mixed precision: the encoder's convolutions (forward and backward) run in bfloat16,
    /// while the weights, their gradients, AdamW, the pooled features, the head and the loss
    /// stay f32 (each step casts the f32 master weights down). bfloat16 keeps f32's exponent
    /// range, so no loss scaling is needed; float16 would need it and is not offered.
    Bf16,
}

impl Precision {
    pub const NAMES: &'static str = "f32, bf16";

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// `t` in this precision's compute type (no-op for f32).
    fn compute<const D: usize>(self, t: Tensor<D>) -> Tensor<D> {
        match self {
            Precision::F32 => t,
            Precision::Bf16 => t.cast(FloatDType::BF16),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" => Err(
                "float16 would need loss scaling to keep small gradients; use bf16 (same speed \
                 on GPUs since Ampere, f32's range)"
                    .into(),
            ),
            other => Err(format!(
                "unknown precision {other:?}; use one of {}",
                Self::NAMES
            )),
        }
    }
}

/// Architecture of the trainable part (no weights): what `forward` needs besides the values.
#[derive(Debug, Clone)]
pub struct TopNet {
    /// First encoder block held (and trained in stage 3); 0 = the whole encoder.
    pub first: usize,
    /// First block trained in stage 2; its input is the cached activation.
    pub top: usize,
    /// Input shape of every block from `first` on (index `b - first`).
    shapes: Vec<[usize; 3]>,
    blocks: Vec<(Vec<Conv>, bool)>,
    /// Index of each held block's first slot.
    block_slot: Vec<usize>,
    /// Head dense layers as `(inputs, outputs)`; ReLU (+ dropout) between them.
    head: Vec<(usize, usize)>,
    dropout: f32,
    pub slots: Vec<Slot>,
    pub classes: usize,
    /// Arithmetic of the encoder blocks in `forward` (f32 unless set).
    pub precision: Precision,
    /// Whether `forward` runs on libtorch: trained depthwise weights then take their gradient
    /// from libtorch's own kernel after the backward pass (see [`Deferred`]).
    pub libtorch: bool,
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

/// Parameter values, in [`TopNet::slots`] order.
pub type Values = Vec<Vec<f32>>;

impl TopNet {
    /// The net from block `first` to the end of `spec`, stage 2 training blocks `top..`, with
    /// `model`'s head on the pooled features (its standardisation folded into the first
    /// layer). Returns the net and its starting values.
    pub fn new(
        spec: &NetSpec,
        weights: &StateDict,
        model: &HeadModel,
        first: usize,
        top: usize,
    ) -> Result<(TopNet, Values), TrainError> {
        if model.reads_maps() {
            return Err(TrainError::Finetune(
                "fine-tuning starts from a pooled head (linear or MLP), and this run's head is \
                 attention-pool; train heads with `--heads linear,mlp` first"
                    .into(),
            ));
        }
        if top == 0 || top >= spec.blocks.len() || first > top {
            return Err(TrainError::Finetune(format!(
                "cannot train from block {top}: the encoder has blocks 1..{} after its stem",
                spec.blocks.len() - 1
            )));
        }
        let mut slots = Vec::new();
        let mut values = Vec::new();
        let mut blocks = Vec::new();
        let mut block_slot = Vec::new();
        let shapes = (first..spec.blocks.len())
            .map(|b| spec.block_input(b))
            .collect();
        for (bi, b) in spec.blocks.iter().enumerate().skip(first) {
            block_slot.push(slots.len());
            let mut convs = Vec::new();
            for l in &b.layers {
                let ((shape, w), bias) = fold_bn(l, weights, spec.bn_eps)
                    .map_err(|e| TrainError::Finetune(format!("encoder weights: {e}")))?;
                slots.push(Slot {
                    name: format!("{}.folded", l.conv),
                    shape,
                    group: Group::Block(bi),
                    decay: true,
                });
                values.push(w);
                slots.push(Slot {
                    name: format!("{}.bias", l.bn),
                    shape: vec![bias.len()],
                    group: Group::Block(bi),
                    decay: false,
                });
                values.push(bias);
                convs.push(Conv {
                    kernel: l.kernel,
                    stride: l.stride,
                    groups: l.groups,
                    padding: l.padding,
                    relu6: l.act == Some(Act::Relu6),
                });
            }
            blocks.push((convs, b.residual));
        }
        let layers = &model.head.layers;
        let mut head = Vec::new();
        for (li, l) in layers.iter().enumerate() {
            let (mut w, mut b) = (l.w.clone(), l.b.clone());
            if li == 0 {
                // x' = (x - μ)/σ  ⇒  W' = W/σ (per input row), b' = b − Σ (μ/σ)·W.
                let st = &model.standardizer;
                for r in 0..l.rows {
                    for c in 0..l.cols {
                        let v = w[r * l.cols + c];
                        b[c] -= st.mean[r] / st.std[r] * v;
                        w[r * l.cols + c] = v / st.std[r];
                    }
                }
            }
            slots.push(Slot {
                name: format!("head.{li}.weight"),
                shape: vec![l.rows, l.cols],
                group: Group::Head,
                decay: true,
            });
            values.push(w);
            slots.push(Slot {
                name: format!("head.{li}.bias"),
                shape: vec![l.cols],
                group: Group::Head,
                decay: false,
            });
            values.push(b);
            head.push((l.rows, l.cols));
        }
        let dropout = match model.meta.head {
            HeadSpec::Mlp { dropout, .. } => dropout,
            _ => 0.0,
        };
        if head.first().map(|h| h.0) != Some(spec.feature_dim) {
            return Err(TrainError::Finetune(format!(
                "the head reads {} features but the encoder gives {}",
                head.first().map_or(0, |h| h.0),
                spec.feature_dim
            )));
        }
        let classes = head.last().map_or(0, |h| h.1);
        Ok((
            TopNet {
                first,
                top,
                shapes,
                blocks,
                block_slot,
                head,
                dropout,
                slots,
                classes,
                precision: Precision::F32,
                libtorch: false,
            },
            values,
        ))
    }

    /// Number of values in one input activation.
    pub fn input_len(&self) -> usize {
        self.input().iter().product()
    }

    pub fn param_count(&self) -> usize {
        self.slots.iter().map(Slot::len).sum()
    }

    /// Shape `[c, h, w]` of the input of block `top`: the cached activation.
    pub fn input(&self) -> [usize; 3] {
        self.input_of(self.top)
    }

    /// Shape of the input of block `start` (one of the held blocks).
    pub fn input_of(&self, start: usize) -> [usize; 3] {
        self.shapes[start - self.first]
    }

    /// Logits `[n, classes]` for `x`: `n` inputs of block `start` (≥ `first`). Parameters
    /// whose slot is `trainable` are tracked for gradients and returned (flat, slot order;
    /// `None` when frozen or unused). With `dropout_seed`, the head's dropout is on
    /// (training), drawn from that seed.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        values: &Values,
        trainable: &[bool],
        start: usize,
        x: &[f32],
        n: usize,
        dropout_seed: Option<u64>,
        device: &Device,
    ) -> (Tensor<2>, Vec<Option<Tensor<1>>>, Vec<Deferred>) {
        let [c, h, w] = self.input_of(start);
        let skip = start - self.first;
        let from = self.block_slot[skip];
        let cast = self.precision;
        let mut y = cast.compute(Tensor::<4>::from_data(
            TensorData::new(x.to_vec(), [n, c, h, w]),
            device,
        ));
        // Every parameter is uploaded flat and reshaped in the graph, so its gradient comes
        // back flat, ready for the host buffers.
        let tracked: Vec<Option<Tensor<1>>> = values
            .iter()
            .zip(trainable)
            .enumerate()
            .map(|(i, (v, &t))| {
                (t && i >= from).then(|| {
                    Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), device)
                        .require_grad()
                })
            })
            .collect();
        let flat = |i: usize| -> Tensor<1> {
            tracked[i].clone().unwrap_or_else(|| {
                Tensor::<1>::from_data(
                    TensorData::new(values[i].clone(), [values[i].len()]),
                    device,
                )
            })
        };
        let mut deferred = Vec::new();
        let mut i = from;
        for (convs, residual) in &self.blocks[skip..] {
            let input = residual.then(|| y.clone());
            for conv in convs {
                let s = &self.slots[i].shape;
                let wt: Tensor<4> = cast.compute(flat(i).reshape([s[0], s[1], s[2], s[3]]));
                let bias = cast.compute(flat(i + 1));
                let [_, _, hh, ww] = y.dims();
                let ph = conv.padding.amounts(hh, conv.kernel, conv.stride);
                let pw = conv.padding.amounts(ww, conv.kernel, conv.stride);
                let [_, cin, _, _] = y.dims();
                let [_, _, hin, win] = y.dims();
                y = if conv.kernel == 1
                    && conv.stride == 1
                    && conv.groups == 1
                    && ph == (0, 0)
                    && pw == (0, 0)
                {
                    pointwise(y, wt, bias)
                } else if conv.groups > 1
                    && conv.groups == cin
                    && s[0] == cin
                    && hin * win <= DEPTHWISE_VIEWS_MAX_AREA
                    && !self.libtorch
                {
                    depthwise(y, wt, bias, conv.stride, ph, pw)
                } else {
                    let opts = ConvOptions::new_with_padding(
                        [conv.stride, conv.stride],
                        [ph, pw],
                        [1, 1],
                        conv.groups,
                    );
                    if self.libtorch
                        && conv.groups > 1
                        && tracked[i].is_some()
                        && ph.0 == ph.1
                        && pw.0 == pw.1
                    {
                        let plain = cast.compute(
                            Tensor::<1>::from_data(
                                TensorData::new(values[i].clone(), [values[i].len()]),
                                device,
                            )
                            .reshape([s[0], s[1], s[2], s[3]]),
                        );
                        let out = conv2d(y.clone(), plain.clone(), Some(bias), opts);
                        let probe = cast
                            .compute(Tensor::<4>::zeros(out.dims(), device))
                            .require_grad();
                        deferred.push(Deferred {
                            slot: i,
                            input: y,
                            probe: probe.clone(),
                            weight: plain,
                            stride: conv.stride,
                            padding: [ph.0, pw.0],
                            groups: conv.groups,
                        });
                        out + probe
                    } else {
                        conv2d(y, wt, Some(bias), opts)
                    }
                };
                if conv.relu6 {
                    y = if self.libtorch {
                        relu6_masked(y)
                    } else {
                        relu6(y)
                    };
                }
                i += 2;
            }
            if let Some(input) = input {
                y = y + input;
            }
        }
        let [_, ch, _, _] = y.dims();
        // Pooling, head and loss in f32 (a no-op cast unless mixed precision).
        let mut z: Tensor<2> = y
            .cast(FloatDType::F32)
            .mean_dim(3)
            .mean_dim(2)
            .reshape([n, ch]);
        let last = self.head.len() - 1;
        for (li, &(rows, cols)) in self.head.iter().enumerate() {
            let wt: Tensor<2> = flat(i).reshape([rows, cols]);
            let bias: Tensor<2> = flat(i + 1).reshape([1, cols]);
            z = z.matmul(wt) + bias;
            if li < last {
                z = activation::relu(z);
                if let (Some(seed), true) = (dropout_seed, self.dropout > 0.0) {
                    let mut rng = SplitMix64::new(seed);
                    let keep = 1.0 / (1.0 - self.dropout);
                    let mask: Vec<f32> = (0..n * cols)
                        .map(|_| {
                            if (rng.next_f64() as f32) < self.dropout {
                                0.0
                            } else {
                                keep
                            }
                        })
                        .collect();
                    z = z * Tensor::<2>::from_data(TensorData::new(mask, [n, cols]), device);
                }
            }
            i += 2;
        }
        (z, tracked, deferred)
    }
}

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
const DEPTHWISE_VIEWS_MAX_AREA: usize = 14 * 14;

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

/// The encoder up to (not including) block `cut`: what produces the cached activations.
pub fn prefix_spec(spec: &NetSpec, cut: usize) -> NetSpec {
    let mut p = spec.clone();
    p.blocks.truncate(cut);
    p.feature_dim = spec.block_input(cut)[0];
    p
}
