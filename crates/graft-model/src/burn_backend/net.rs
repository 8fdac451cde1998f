//! The encoder as a burn [`Module`], built from a [`NetSpec`] and its state dict.
//!
//! burn 0.22 carries the backend in the [`Device`] rather than a type parameter, so the same
//! module runs on flex (default), tch or any other enabled backend.
//! BatchNorm is folded into the conv weights at load time: inference-only and one op fewer.

use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, linear, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{activation, Device, Tensor, TensorData};

use crate::arch::{Act, Block, ConvBn, Gate, Linear, MaxPool, NetSpec, Padding, SqueezeExcite};
use crate::weights::{StateDict, WeightError};

/// Conv with BatchNorm folded in (weight scaled per output channel, bias = beta - mean*scale).
#[derive(Module, Debug)]
pub struct ConvBnLayer {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
    #[module(skip)]
    pub kernel: usize,
    #[module(skip)]
    pub stride: usize,
    #[module(skip)]
    pub groups: usize,
    #[module(skip)]
    pub padding: Padding,
    #[module(skip)]
    pub act: Option<Act>,
}

/// `act` applied to `x` (identity for `None`).
pub fn activate<const D: usize>(x: Tensor<D>, act: Option<Act>) -> Tensor<D> {
    match act {
        None => x,
        Some(Act::Relu6) => activation::relu6(x),
        Some(Act::Relu) => activation::relu(x),
        Some(Act::Silu) => activation::silu(x),
        Some(Act::Hardswish) => activation::hard_swish(x),
    }
}

/// `gate` applied to `x`.
pub fn gate<const D: usize>(x: Tensor<D>, gate: Gate) -> Tensor<D> {
    match gate {
        Gate::Sigmoid => activation::sigmoid(x),
        Gate::HardSigmoid => activation::hard_sigmoid(x, 1.0 / 6.0, 0.5),
    }
}

/// Squeeze-and-excitation: two 1×1 convolutions with bias on the pooled map.
#[derive(Module, Debug)]
pub struct SeLayer {
    pub reduce_weight: Param<Tensor<4>>,
    pub reduce_bias: Param<Tensor<1>>,
    pub expand_weight: Param<Tensor<4>>,
    pub expand_bias: Param<Tensor<1>>,
    #[module(skip)]
    pub after: usize,
    #[module(skip)]
    pub act: Act,
    #[module(skip)]
    pub gate: Gate,
}

impl SeLayer {
    fn load(se: &SqueezeExcite, w: &StateDict, device: &Device) -> Result<Self, WeightError> {
        let pointwise = |l: &Linear| -> Result<(Param<Tensor<4>>, Param<Tensor<1>>), WeightError> {
            let (o, i) = (l.out_features, l.in_features);
            let wt = w.require(&l.weight, &[o, i, 1, 1])?;
            let b = w.require(&l.bias, &[o])?;
            Ok((
                Param::from_tensor(Tensor::from_data(
                    TensorData::new(wt.data.clone(), [o, i, 1, 1]),
                    device,
                )),
                Param::from_tensor(Tensor::from_data(
                    TensorData::new(b.data.clone(), [o]),
                    device,
                )),
            ))
        };
        let (reduce_weight, reduce_bias) = pointwise(&se.reduce)?;
        let (expand_weight, expand_bias) = pointwise(&se.expand)?;
        Ok(SeLayer {
            reduce_weight,
            reduce_bias,
            expand_weight,
            expand_bias,
            after: se.after,
            act: se.act,
            gate: se.gate,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let opts = || ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        let s = x.clone().mean_dim(3).mean_dim(2);
        let s = conv2d(
            s,
            self.reduce_weight.val(),
            Some(self.reduce_bias.val()),
            opts(),
        );
        let s = activate(s, Some(self.act));
        let s = conv2d(
            s,
            self.expand_weight.val(),
            Some(self.expand_bias.val()),
            opts(),
        );
        x * gate(s, self.gate)
    }
}

/// Max pooling with padding that never wins (−∞).
pub fn max_pool(x: Tensor<4>, p: MaxPool) -> Tensor<4> {
    max_pool2d(
        x,
        MaxPoolOptions::new([p.kernel; 2])
            .with_stride([p.stride; 2])
            .with_padding([p.padding; 2]),
    )
}

impl ConvBnLayer {
    fn load(l: &ConvBn, w: &StateDict, eps: f32, device: &Device) -> Result<Self, WeightError> {
        let k = l.kernel;
        let per_out = (l.in_ch / l.groups) * k * k;
        let conv = w.require(&l.conv, &[l.out_ch, l.in_ch / l.groups, k, k])?;
        let bn = |part: &str| w.require(&format!("{}.{part}", l.bn), &[l.out_ch]);
        let (gamma, beta) = (&bn("weight")?.data, &bn("bias")?.data);
        let (mean, var) = (&bn("running_mean")?.data, &bn("running_var")?.data);
        let mut weight = conv.data.clone();
        let mut bias = vec![0f32; l.out_ch];
        for o in 0..l.out_ch {
            let scale = gamma[o] / (var[o] + eps).sqrt();
            weight[o * per_out..(o + 1) * per_out]
                .iter_mut()
                .for_each(|x| *x *= scale);
            bias[o] = beta[o] - mean[o] * scale;
        }
        let shape = [l.out_ch, l.in_ch / l.groups, k, k];
        Ok(Self {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight, shape), device)),
            bias: Param::from_tensor(Tensor::from_data(TensorData::new(bias, [l.out_ch]), device)),
            kernel: k,
            stride: l.stride,
            groups: l.groups,
            padding: l.padding,
            act: l.act,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = x.dims();
        // TF "SAME" depends on the input size, so padding is resolved per call (asymmetric
        // when the total is odd: the extra zero goes bottom/right).
        let ph = self.padding.amounts(h, self.kernel, self.stride);
        let pw = self.padding.amounts(w, self.kernel, self.stride);
        let opts = ConvOptions::new_with_padding(
            [self.stride, self.stride],
            [ph, pw],
            [1, 1],
            self.groups,
        );
        activate(
            conv2d(x, self.weight.val(), Some(self.bias.val()), opts),
            self.act,
        )
    }
}

#[derive(Module, Debug)]
pub struct EncoderBlock {
    pub layers: Vec<ConvBnLayer>,
    pub se: Option<SeLayer>,
    pub projection: Option<ConvBnLayer>,
    #[module(skip)]
    pub residual: bool,
    #[module(skip)]
    pub post_act: Option<Act>,
    #[module(skip)]
    pub max_pool: Option<MaxPool>,
}

impl EncoderBlock {
    fn load(b: &Block, w: &StateDict, eps: f32, device: &Device) -> Result<Self, WeightError> {
        Ok(EncoderBlock {
            layers: b
                .layers
                .iter()
                .map(|l| ConvBnLayer::load(l, w, eps, device))
                .collect::<Result<_, WeightError>>()?,
            se: b
                .se
                .as_ref()
                .map(|se| SeLayer::load(se, w, device))
                .transpose()?,
            projection: b
                .projection
                .as_ref()
                .map(|l| ConvBnLayer::load(l, w, eps, device))
                .transpose()?,
            residual: b.residual,
            post_act: b.post_act,
            max_pool: b.max_pool,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let input = self.residual.then(|| match &self.projection {
            Some(p) => p.forward(x.clone()),
            None => x.clone(),
        });
        let mut y = x;
        for (i, l) in self.layers.iter().enumerate() {
            y = l.forward(y);
            if let Some(se) = self.se.as_ref().filter(|se| se.after == i) {
                y = se.forward(y);
            }
        }
        let y = match input {
            Some(i) => activate(y + i, self.post_act),
            None => y,
        };
        match self.max_pool {
            Some(p) => max_pool(y, p),
            None => y,
        }
    }
}

/// Outputs of [`EncoderNet::forward`].
pub struct NetOutput {
    /// `n × feature_dim × h × w`.
    pub feature_map: Tensor<4>,
    /// `n × feature_dim`.
    pub features: Tensor<2>,
    /// `n × classes`, when the weights have a classifier.
    pub logits: Option<Tensor<2>>,
}

/// A dense layer of the ImageNet classifier.
#[derive(Module, Debug)]
pub struct Dense {
    /// Stored `[in, out]`: burn's `linear` does not transpose (PyTorch stores `[out, in]`).
    pub weight: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
}

impl Dense {
    fn load(l: &Linear, w: &StateDict, device: &Device) -> Result<Self, WeightError> {
        let (o, i) = (l.out_features, l.in_features);
        let weight = w.require(&l.weight, &[o, i])?;
        let bias = w.require(&l.bias, &[o])?;
        Ok(Dense {
            weight: Param::from_tensor(
                Tensor::<2>::from_data(TensorData::new(weight.data.clone(), [o, i]), device)
                    .transpose(),
            ),
            bias: Param::from_tensor(Tensor::from_data(
                TensorData::new(bias.data.clone(), [o]),
                device,
            )),
        })
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        linear(x, self.weight.val(), Some(self.bias.val()))
    }
}

#[derive(Module, Debug)]
pub struct EncoderNet {
    pub blocks: Vec<EncoderBlock>,
    /// The classifier's hidden layer (hard-swish after it), when it has one.
    pub hidden: Option<Dense>,
    /// `None` when the weights have no classifier.
    pub fc: Option<Dense>,
}

impl EncoderNet {
    pub fn from_spec(spec: &NetSpec, w: &StateDict, device: &Device) -> Result<Self, WeightError> {
        let blocks = spec
            .blocks
            .iter()
            .map(|b| EncoderBlock::load(b, w, spec.bn_eps, device))
            .collect::<Result<_, WeightError>>()?;
        let dense = |l: &Option<Linear>| l.as_ref().map(|l| Dense::load(l, w, device)).transpose();
        Ok(Self {
            blocks,
            hidden: dense(&spec.hidden)?,
            fc: dense(&spec.classifier)?,
        })
    }

    /// Feature map only (what fine-tuning heads and Grad-CAM build on).
    pub fn forward_map(&self, x: Tensor<4>) -> Tensor<4> {
        self.blocks.iter().fold(x, |x, b| b.forward(x))
    }

    pub fn forward(&self, x: Tensor<4>) -> NetOutput {
        let feature_map = self.forward_map(x);
        let [n, c, _, _] = feature_map.dims();
        let features: Tensor<2> = feature_map.clone().mean_dim(3).mean_dim(2).reshape([n, c]);
        let logits = self.fc.as_ref().map(|fc| {
            let x = match &self.hidden {
                Some(h) => activation::hard_swish(h.forward(features.clone())),
                None => features.clone(),
            };
            fc.forward(x)
        });
        NetOutput {
            feature_map,
            features,
            logits,
        }
    }
}
