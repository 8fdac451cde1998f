//! The encoder as a burn [`Module`], built from a [`NetSpec`] and its state dict.
//!
//! burn 0.22 carries the backend in the [`Device`] rather than a type parameter, so the same
//! module runs on flex (default), tch or any other enabled backend.
//! BatchNorm is folded into the conv weights at load time: inference-only and one op fewer.

use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, linear, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{activation, Device, Tensor, TensorData};

use crate::arch::{Act, Block, ConvBn, MaxPool, NetSpec, Padding};
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
        let y = self.layers.iter().fold(x, |x, l| l.forward(x));
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

#[derive(Module, Debug)]
pub struct EncoderNet {
    pub blocks: Vec<EncoderBlock>,
    /// Stored `[in, out]`: burn's `linear` does not transpose (PyTorch stores `[out, in]`).
    /// `None` when the weights have no classifier.
    pub fc_weight: Option<Param<Tensor<2>>>,
    pub fc_bias: Option<Param<Tensor<1>>>,
}

impl EncoderNet {
    pub fn from_spec(spec: &NetSpec, w: &StateDict, device: &Device) -> Result<Self, WeightError> {
        let blocks = spec
            .blocks
            .iter()
            .map(|b| EncoderBlock::load(b, w, spec.bn_eps, device))
            .collect::<Result<_, WeightError>>()?;
        let (mut fc_weight, mut fc_bias) = (None, None);
        if let Some(c) = &spec.classifier {
            let fc = w.require(&c.weight, &[c.out_features, c.in_features])?;
            let bias = w.require(&c.bias, &[c.out_features])?;
            let weight = Tensor::<2>::from_data(
                TensorData::new(fc.data.clone(), [c.out_features, c.in_features]),
                device,
            )
            .transpose();
            fc_weight = Some(Param::from_tensor(weight));
            fc_bias = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(bias.data.clone(), [c.out_features]),
                device,
            )));
        }
        Ok(Self {
            blocks,
            fc_weight,
            fc_bias,
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
        let logits = match (&self.fc_weight, &self.fc_bias) {
            (Some(w), Some(b)) => Some(linear(features.clone(), w.val(), Some(b.val()))),
            _ => None,
        };
        NetOutput {
            feature_map,
            features,
            logits,
        }
    }
}
