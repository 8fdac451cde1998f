//! The two from-scratch architectures of `graft baseline`, written on burn tensor ops with the
//! parameters held on the host (as fine-tuning does): AdamW, checkpoints and resume work on
//! plain vectors, so a resumed run continues at the exact update.
//!
//! - `cnn`: four blocks of 3×3 convolution → BatchNorm → ReLU → 2×2 max-pool (32, 64, 128, 256
//!   channels), global average pool, linear.
//! - `resnet20`: the CIFAR ResNet of He et al. 2016 (§4.2): a 3×3 stem of 16 channels, three
//!   stages of three basic blocks (16, 32, 64 channels; the first block of stages 2 and 3
//!   halves the map), global average pool, linear. Where a block changes the shape its shortcut
//!   is a 1×1 convolution with BatchNorm (the paper's option B), not zero padding.
//!
//! BatchNorm normalises by the batch's statistics while training and keeps running averages
//! (momentum 0.1, unbiased variance, as PyTorch) for evaluation: a net trained from scratch
//! has no pretrained statistics to freeze.

use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{activation, Device, Tensor, TensorData};
use graft_data::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// The from-scratch architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Cnn,
    Resnet20,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Cnn => "cnn",
            Arch::Resnet20 => "resnet20",
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Arch, String> {
        match s.to_ascii_lowercase().as_str() {
            "cnn" => Ok(Arch::Cnn),
            "resnet20" | "resnet-20" => Ok(Arch::Resnet20),
            _ => Err(format!("unknown architecture {s:?}; use cnn or resnet20")),
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// BatchNorm's ε and running-average momentum (PyTorch's defaults).
const BN_EPS: f32 = 1e-5;
const BN_MOMENTUM: f32 = 0.1;

/// A convolution followed by BatchNorm: slot `w` holds `[out, in, k, k]`, `w + 1` γ and
/// `w + 2` β; `bn` indexes the running statistics.
#[derive(Debug, Clone, Copy)]
struct ConvBn {
    w: usize,
    bn: usize,
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
}

#[derive(Debug, Clone)]
enum Layer {
    /// conv-bn-relu, then a 2×2 max-pool when `pool`.
    Plain { conv: ConvBn, pool: bool },
    /// Basic residual block: conv-bn-relu, conv-bn, + shortcut, relu.
    Residual {
        a: ConvBn,
        b: ConvBn,
        shortcut: Option<ConvBn>,
    },
}

/// One parameter tensor.
#[derive(Debug, Clone)]
pub struct Slot {
    pub name: String,
    pub shape: Vec<usize>,
    /// Weight decay applies to convolution and linear weights, not to BatchNorm or biases.
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

/// Running mean and variance of every BatchNorm, flat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BnStats {
    pub mean: Vec<Vec<f32>>,
    pub var: Vec<Vec<f32>>,
}

/// An architecture laid out for an input size and class count (no weights).
#[derive(Debug, Clone)]
pub struct Net {
    pub arch: Arch,
    pub size: usize,
    pub classes: usize,
    layers: Vec<Layer>,
    bn_channels: Vec<usize>,
    /// Slots of the final linear layer (weight `[features, classes]`, bias).
    fc: usize,
    features: usize,
    pub slots: Vec<Slot>,
}

/// What a training pass hands back besides the logits.
pub struct Tracked {
    /// Every parameter as uploaded (tracked for gradients), slot order.
    pub params: Vec<Tensor<1>>,
    /// Each BatchNorm's batch mean and (biased) variance, and the values it averaged over.
    pub batch_stats: Vec<(Tensor<1>, Tensor<1>, usize)>,
}

impl Net {
    pub fn new(arch: Arch, size: usize, classes: usize) -> Result<Net, TrainError> {
        let min = match arch {
            Arch::Cnn => 16,
            Arch::Resnet20 => 8,
        };
        if size < min {
            return Err(TrainError::Finetune(format!(
                "{arch} needs images of at least {min}×{min} pixels (asked for {size})"
            )));
        }
        let mut b = Builder::default();
        let mut layers = Vec::new();
        let features = match arch {
            Arch::Cnn => {
                let mut cin = 3;
                for (i, cout) in [32, 64, 128, 256].into_iter().enumerate() {
                    let conv = b.conv_bn(&format!("block{}.conv", i + 1), cin, cout, 3, 1);
                    layers.push(Layer::Plain { conv, pool: true });
                    cin = cout;
                }
                cin
            }
            Arch::Resnet20 => {
                let conv = b.conv_bn("stem", 3, 16, 3, 1);
                layers.push(Layer::Plain { conv, pool: false });
                let mut cin = 16;
                for (s, cout) in [16, 32, 64].into_iter().enumerate() {
                    for k in 0..3 {
                        let stride = if s > 0 && k == 0 { 2 } else { 1 };
                        let name = format!("stage{}.{k}", s + 1);
                        let a = b.conv_bn(&format!("{name}.a"), cin, cout, 3, stride);
                        let bb = b.conv_bn(&format!("{name}.b"), cout, cout, 3, 1);
                        let shortcut = (stride != 1 || cin != cout)
                            .then(|| b.conv_bn(&format!("{name}.shortcut"), cin, cout, 1, stride));
                        layers.push(Layer::Residual { a, b: bb, shortcut });
                        cin = cout;
                    }
                }
                cin
            }
        };
        let fc = b.slots.len();
        b.slot("fc.weight", vec![features, classes], true);
        b.slot("fc.bias", vec![classes], false);
        Ok(Net {
            arch,
            size,
            classes,
            layers,
            bn_channels: b.bn_channels,
            fc,
            features,
            slots: b.slots,
        })
    }

    /// BatchNorm layers (each with running statistics).
    pub fn batch_norms(&self) -> usize {
        self.bn_channels.len()
    }

    /// Trainable values.
    pub fn parameters(&self) -> usize {
        self.slots.iter().map(Slot::len).sum()
    }

    /// Multiply-adds of one forward pass (convolutions and the linear layer).
    pub fn macs(&self) -> u64 {
        let mut side = self.size as u64;
        let mut total = 0u64;
        let conv = |c: &ConvBn, side: u64| {
            let out = side.div_ceil(c.stride as u64);
            (
                out,
                out * out * (c.cin * c.cout * c.kernel * c.kernel) as u64,
            )
        };
        for layer in &self.layers {
            match layer {
                Layer::Plain { conv: c, pool } => {
                    let (out, m) = conv(c, side);
                    total += m;
                    side = if *pool { out / 2 } else { out };
                }
                Layer::Residual { a, b, shortcut } => {
                    let (out, m) = conv(a, side);
                    total += m + conv(b, out).1;
                    if let Some(s) = shortcut {
                        total += conv(s, side).1;
                    }
                    side = out;
                }
            }
        }
        total + (self.features * self.classes) as u64
    }

    /// He-normal convolution and linear weights, γ = 1, β = 0, zero biases; running
    /// statistics at mean 0, variance 1.
    pub fn init(&self, seed: u64) -> (Vec<Vec<f32>>, BnStats) {
        let mut rng = SplitMix64::new(seed);
        let values = self
            .slots
            .iter()
            .map(|s| {
                if s.name.ends_with(".gamma") {
                    vec![1.0; s.len()]
                } else if s.decay {
                    let fan_in: usize = if s.shape.len() == 4 {
                        s.shape[1..].iter().product()
                    } else {
                        s.shape[0]
                    };
                    let sd = (2.0 / fan_in as f64).sqrt();
                    (0..s.len()).map(|_| (rng.normal() * sd) as f32).collect()
                } else {
                    vec![0.0; s.len()]
                }
            })
            .collect();
        let stats = BnStats {
            mean: self.bn_channels.iter().map(|&c| vec![0.0; c]).collect(),
            var: self.bn_channels.iter().map(|&c| vec![1.0; c]).collect(),
        };
        (values, stats)
    }

    /// Fold a training pass's batch statistics into the running averages.
    pub fn update_stats(&self, stats: &mut BnStats, batch: &[(Vec<f32>, Vec<f32>, usize)]) {
        for (i, (mean, var, count)) in batch.iter().enumerate() {
            let unbias = *count as f32 / (*count as f32 - 1.0).max(1.0);
            for c in 0..mean.len() {
                let rm = &mut stats.mean[i][c];
                *rm = (1.0 - BN_MOMENTUM) * *rm + BN_MOMENTUM * mean[c];
                let rv = &mut stats.var[i][c];
                *rv = (1.0 - BN_MOMENTUM) * *rv + BN_MOMENTUM * var[c] * unbias;
            }
        }
    }

    /// Logits `[n, classes]` of `x` (`n` normalised images, `3 × size × size` each). With
    /// `stats`, BatchNorm uses them (evaluation) and nothing is tracked; without, it uses the
    /// batch's statistics and every parameter is tracked for gradients (training).
    pub fn forward(
        &self,
        values: &[Vec<f32>],
        stats: Option<&BnStats>,
        x: &[f32],
        n: usize,
        device: &Device,
    ) -> (Tensor<2>, Tracked) {
        let train = stats.is_none();
        let params: Vec<Tensor<1>> = values
            .iter()
            .map(|v| {
                let t = Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), device);
                if train {
                    t.require_grad()
                } else {
                    t
                }
            })
            .collect();
        let mut batch_stats = Vec::new();
        let s = self.size;
        let mut y = Tensor::<4>::from_data(TensorData::new(x.to_vec(), [n, 3, s, s]), device);
        let mut conv_bn = |c: &ConvBn, input: Tensor<4>| -> Tensor<4> {
            let w = params[c.w]
                .clone()
                .reshape([c.cout, c.cin, c.kernel, c.kernel]);
            let pad = c.kernel / 2;
            let z = conv2d(
                input,
                w,
                None,
                ConvOptions::new([c.stride, c.stride], [pad, pad], [1, 1], 1),
            );
            let gamma = params[c.w + 1].clone().reshape([1, c.cout, 1, 1]);
            let beta = params[c.w + 2].clone().reshape([1, c.cout, 1, 1]);
            match stats {
                Some(st) => {
                    let (m, v) = (&st.mean[c.bn], &st.var[c.bn]);
                    let scale: Vec<f32> = v.iter().map(|v| 1.0 / (v + BN_EPS).sqrt()).collect();
                    let shift: Vec<f32> = m.iter().zip(&scale).map(|(m, s)| -m * s).collect();
                    let t = |v: Vec<f32>| {
                        Tensor::<1>::from_data(TensorData::new(v, [c.cout]), device)
                            .reshape([1, c.cout, 1, 1])
                    };
                    (z * t(scale) + t(shift)) * gamma + beta
                }
                None => {
                    let [bn, _, h, w] = z.dims();
                    let mean = z.clone().mean_dim(0).mean_dim(2).mean_dim(3);
                    let d = z - mean.clone();
                    let var = (d.clone() * d.clone()).mean_dim(0).mean_dim(2).mean_dim(3);
                    let out = d / (var.clone() + BN_EPS).sqrt() * gamma + beta;
                    batch_stats.push((
                        mean.detach().reshape([c.cout]),
                        var.detach().reshape([c.cout]),
                        bn * h * w,
                    ));
                    out
                }
            }
        };
        for layer in &self.layers {
            y = match layer {
                Layer::Plain { conv, pool } => {
                    let z = activation::relu(conv_bn(conv, y));
                    if *pool {
                        max_pool2d(z, MaxPoolOptions::new([2, 2]))
                    } else {
                        z
                    }
                }
                Layer::Residual { a, b, shortcut } => {
                    let z = activation::relu(conv_bn(a, y.clone()));
                    let z = conv_bn(b, z);
                    let short = match shortcut {
                        Some(sc) => conv_bn(sc, y),
                        None => y,
                    };
                    activation::relu(z + short)
                }
            };
        }
        let [_, ch, _, _] = y.dims();
        let pooled: Tensor<2> = y.mean_dim(3).mean_dim(2).reshape([n, ch]);
        let w: Tensor<2> = params[self.fc]
            .clone()
            .reshape([self.features, self.classes]);
        let bias: Tensor<2> = params[self.fc + 1].clone().reshape([1, self.classes]);
        let logits = pooled.matmul(w) + bias;
        (
            logits,
            Tracked {
                params,
                batch_stats,
            },
        )
    }
}

#[derive(Default)]
struct Builder {
    slots: Vec<Slot>,
    bn_channels: Vec<usize>,
}

impl Builder {
    fn slot(&mut self, name: &str, shape: Vec<usize>, decay: bool) -> usize {
        self.slots.push(Slot {
            name: name.into(),
            shape,
            decay,
        });
        self.slots.len() - 1
    }

    fn conv_bn(
        &mut self,
        name: &str,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
    ) -> ConvBn {
        let w = self.slot(
            &format!("{name}.weight"),
            vec![cout, cin, kernel, kernel],
            true,
        );
        self.slot(&format!("{name}.gamma"), vec![cout], false);
        self.slot(&format!("{name}.beta"), vec![cout], false);
        self.bn_channels.push(cout);
        ConvBn {
            w,
            bn: self.bn_channels.len() - 1,
            cin,
            cout,
            kernel,
            stride,
        }
    }
}
