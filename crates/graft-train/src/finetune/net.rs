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
use burn::tensor::ops::ConvOptions;
use burn::tensor::{activation, Device, FloatDType, Tensor, TensorData};
use graft_data::rng::SplitMix64;
use graft_model::arch::{Act, Gate, MaxPool, NetSpec, Padding};
use graft_model::burn_backend::{activate, gate, max_pool};
use graft_model::onnx::fold_bn;
use graft_model::weights::StateDict;

use super::layers::{
    depthwise, pointwise, relu6, relu6_masked, Deferred, DEPTHWISE_VIEWS_MAX_AREA,
};
use super::precision::Precision;
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
    act: Option<Act>,
}

/// One held block: its layers, then (slots in that order) its projection, then its
/// squeeze-and-excitation (reduce weight and bias, expand weight and bias).
#[derive(Debug, Clone)]
struct TopBlock {
    convs: Vec<Conv>,
    residual: bool,
    projection: Option<Conv>,
    post_act: Option<Act>,
    max_pool: Option<MaxPool>,
    se: Option<Se>,
}

#[derive(Debug, Clone, Copy)]
struct Se {
    after: usize,
    channels: usize,
    squeeze: usize,
    act: Act,
    gate: Gate,
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
    blocks: Vec<TopBlock>,
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
            for l in b.convs() {
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
                    act: l.act,
                });
            }
            let projection = b.projection.as_ref().and_then(|_| convs.pop());
            let se = match &b.se {
                Some(se) => {
                    for l in [&se.reduce, &se.expand] {
                        for (key, shape, decay) in [
                            (&l.weight, vec![l.out_features, l.in_features, 1, 1], true),
                            (&l.bias, vec![l.out_features], false),
                        ] {
                            let t = weights.require(key, &shape).map_err(|e| {
                                TrainError::Finetune(format!("encoder weights: {e}"))
                            })?;
                            slots.push(Slot {
                                name: key.clone(),
                                shape,
                                group: Group::Block(bi),
                                decay,
                            });
                            values.push(t.data.clone());
                        }
                    }
                    Some(Se {
                        after: se.after,
                        channels: se.reduce.in_features,
                        squeeze: se.reduce.out_features,
                        act: se.act,
                        gate: se.gate,
                    })
                }
                None => None,
            };
            blocks.push(TopBlock {
                convs,
                residual: b.residual,
                projection,
                post_act: b.post_act,
                max_pool: b.max_pool,
                se,
            });
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
        for block in &self.blocks[skip..] {
            let input = block.residual.then(|| y.clone());
            // The squeeze-and-excitation's slots follow the convolutions'.
            let se_slot = i + 2 * (block.convs.len() + usize::from(block.projection.is_some()));
            for (li, conv) in block.convs.iter().enumerate() {
                y = self.conv(y, conv, i, &flat, &tracked, &mut deferred);
                i += 2;
                if let Some(se) = block.se.filter(|se| se.after == li) {
                    y = self.squeeze_excite(y, se, se_slot, &flat);
                }
            }
            if let Some(input) = input {
                let shortcut = match &block.projection {
                    Some(p) => {
                        let s = self.conv(input, p, i, &flat, &tracked, &mut deferred);
                        i += 2;
                        s
                    }
                    None => input,
                };
                y = self.activate(y + shortcut, block.post_act);
            }
            if let Some(p) = block.max_pool {
                y = max_pool(y, p);
            }
            if block.se.is_some() {
                i += 4;
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

    /// One convolution (slots `i`, `i + 1`) and its activation.
    fn conv(
        &self,
        y: Tensor<4>,
        conv: &Conv,
        i: usize,
        flat: &dyn Fn(usize) -> Tensor<1>,
        tracked: &[Option<Tensor<1>>],
        deferred: &mut Vec<Deferred>,
    ) -> Tensor<4> {
        let cast = self.precision;
        let s = &self.slots[i].shape;
        let wt: Tensor<4> = cast.compute(flat(i).reshape([s[0], s[1], s[2], s[3]]));
        let bias = cast.compute(flat(i + 1));
        let [_, _, hh, ww] = y.dims();
        let ph = conv.padding.amounts(hh, conv.kernel, conv.stride);
        let pw = conv.padding.amounts(ww, conv.kernel, conv.stride);
        let [_, cin, _, _] = y.dims();
        let [_, _, hin, win] = y.dims();
        let y = if conv.kernel == 1
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
                && conv.groups == cin
                && tracked[i].is_some()
                && ph.0 == ph.1
                && pw.0 == pw.1
            {
                // libtorch's own kernel gives this weight's gradient (see Deferred),
                // so burn's graph sees the weight detached.
                let (out, d) = Deferred::conv(y, wt.detach(), bias, conv.stride, [ph.0, pw.0], i);
                deferred.push(d);
                out
            } else {
                conv2d(y, wt, Some(bias), opts)
            }
        };
        self.activate(y, conv.act)
    }

    /// Squeeze-and-excitation on `y`, its parameters at slots `at..at + 4`: the two 1×1
    /// convolutions on the pooled map are matrix products.
    fn squeeze_excite(
        &self,
        y: Tensor<4>,
        se: Se,
        at: usize,
        flat: &dyn Fn(usize) -> Tensor<1>,
    ) -> Tensor<4> {
        let cast = self.precision;
        let [n, c, _, _] = y.dims();
        let (ch, sq) = (se.channels, se.squeeze);
        let s: Tensor<2> = y.clone().mean_dim(3).mean_dim(2).reshape([n, c]);
        let w1: Tensor<2> = cast.compute(flat(at).reshape([sq, ch])).transpose();
        let b1: Tensor<2> = cast.compute(flat(at + 1).reshape([1, sq]));
        let s = activate(s.matmul(w1) + b1, Some(se.act));
        let w2: Tensor<2> = cast.compute(flat(at + 2).reshape([ch, sq])).transpose();
        let b2: Tensor<2> = cast.compute(flat(at + 3).reshape([1, ch]));
        let s = gate(s.matmul(w2) + b2, se.gate);
        y * s.reshape([n, c, 1, 1])
    }

    fn activate(&self, y: Tensor<4>, act: Option<Act>) -> Tensor<4> {
        match act {
            // The cheaper form's backward differs by backend (see relu6_masked).
            Some(Act::Relu6) if self.libtorch => relu6_masked(y),
            Some(Act::Relu6) => relu6(y),
            other => activate(y, other),
        }
    }
}

/// The encoder up to (not including) block `cut`: what produces the cached activations.
pub fn prefix_spec(spec: &NetSpec, cut: usize) -> NetSpec {
    let mut p = spec.clone();
    p.blocks.truncate(cut);
    p.feature_dim = spec.block_input(cut)[0];
    p
}
