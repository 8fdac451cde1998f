//! An architecture written down with its state dict's names and shapes (torchvision's
//! ResNets, EfficientNet-B0, MobileNetV3): one description gives both the list of tensors a
//! file must hold, in the file's order, and the [`NetSpec`] read from a file, every shape
//! checked exactly (a wrong one is named with both shapes).

use super::read::classifier;
use super::spec::{
    Act, Block, ConvBn, EncoderKind, Gate, Linear, MaxPool, NetSpec, Padding, SqueezeExcite,
};
use crate::weights::{StateDict, WeightError};

const BN_PARTS: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

/// A convolution with BatchNorm: its weight key, BatchNorm prefix and shape `[out, in/groups,
/// k, k]`.
#[derive(Debug, Clone)]
pub(super) struct Conv {
    pub weight: String,
    pub bn: String,
    pub shape: [usize; 4],
    pub stride: usize,
    pub groups: usize,
    pub act: Option<Act>,
}

impl Conv {
    /// A convolution whose weight is `{prefix}.0.weight` and BatchNorm `{prefix}.1`
    /// (torchvision's `Conv2dNormActivation`).
    pub fn seq(prefix: &str, shape: [usize; 4], stride: usize, act: Option<Act>) -> Conv {
        Conv {
            weight: format!("{prefix}.0.weight"),
            bn: format!("{prefix}.1"),
            shape,
            stride,
            groups: 1,
            act,
        }
    }

    /// The same, depthwise (one group per channel).
    pub fn depthwise(prefix: &str, ch: usize, k: usize, stride: usize, act: Option<Act>) -> Conv {
        Conv {
            groups: ch,
            ..Conv::seq(prefix, [ch, 1, k, k], stride, act)
        }
    }

    fn tensors(&self, out: &mut Vec<(String, Vec<usize>)>) {
        out.push((self.weight.clone(), self.shape.to_vec()));
        for part in BN_PARTS {
            out.push((format!("{}.{part}", self.bn), vec![self.shape[0]]));
        }
    }

    fn spec(&self) -> ConvBn {
        let [out_ch, per_group, k, _] = self.shape;
        ConvBn {
            conv: self.weight.clone(),
            bn: self.bn.clone(),
            in_ch: per_group * self.groups,
            out_ch,
            kernel: k,
            stride: self.stride,
            groups: self.groups,
            padding: Padding::Symmetric(k / 2),
            act: self.act,
        }
    }
}

/// Squeeze-and-excitation at `{prefix}.fc1`/`.fc2` (1×1 convolutions with bias), after layer
/// `after` of its block.
#[derive(Debug, Clone)]
pub(super) struct Se {
    pub prefix: String,
    pub after: usize,
    pub channels: usize,
    pub squeeze: usize,
    pub act: Act,
    pub gate: Gate,
}

impl Se {
    fn tensors(&self, out: &mut Vec<(String, Vec<usize>)>) {
        let (c, s, p) = (self.channels, self.squeeze, &self.prefix);
        out.push((format!("{p}.fc1.weight"), vec![s, c, 1, 1]));
        out.push((format!("{p}.fc1.bias"), vec![s]));
        out.push((format!("{p}.fc2.weight"), vec![c, s, 1, 1]));
        out.push((format!("{p}.fc2.bias"), vec![c]));
    }

    fn spec(&self) -> SqueezeExcite {
        let p = &self.prefix;
        let pointwise = |fc: &str, in_features, out_features| Linear {
            weight: format!("{p}.{fc}.weight"),
            bias: format!("{p}.{fc}.bias"),
            in_features,
            out_features,
        };
        SqueezeExcite {
            after: self.after,
            reduce: pointwise("fc1", self.channels, self.squeeze),
            expand: pointwise("fc2", self.squeeze, self.channels),
            act: self.act,
            gate: self.gate,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct BlockLayout {
    pub convs: Vec<Conv>,
    pub se: Option<Se>,
    pub residual: bool,
    pub projection: Option<Conv>,
    pub post_act: Option<Act>,
    pub max_pool: Option<MaxPool>,
}

impl BlockLayout {
    pub fn plain(convs: Vec<Conv>) -> BlockLayout {
        BlockLayout {
            convs,
            ..BlockLayout::default()
        }
    }
}

/// A whole encoder's layout.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub blocks: Vec<BlockLayout>,
    /// The classifier's hidden layer (`key prefix`, `[out, in]`), hard-swish after it.
    pub hidden: Option<(String, [usize; 2])>,
    /// The ImageNet classifier: key prefix and `[out, in]`.
    pub classifier: (String, [usize; 2]),
    pub bn_eps: f32,
}

impl Layout {
    /// Every tensor of the state dict (BatchNorm's `num_batches_tracked` aside), in order.
    pub fn tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for b in &self.blocks {
            for (i, c) in b.convs.iter().enumerate() {
                c.tensors(&mut out);
                if let Some(se) = b.se.as_ref().filter(|se| se.after == i) {
                    se.tensors(&mut out);
                }
            }
            if let Some(p) = &b.projection {
                p.tensors(&mut out);
            }
        }
        for (p, [o, i]) in self.hidden.iter().chain([&self.classifier]) {
            out.push((format!("{p}.weight"), vec![*o, *i]));
            out.push((format!("{p}.bias"), vec![*o]));
        }
        out
    }

    /// The spec of `kind` from `w`, which must hold every tensor of the layout with its exact
    /// shape; the classifier may be absent (stripped) or have another number of classes.
    pub fn spec(&self, kind: EncoderKind, w: &StateDict) -> Result<NetSpec, WeightError> {
        let (fc, _) = &self.classifier;
        let fc_prefix = format!("{fc}.");
        let hidden = self.hidden.as_ref().map(|(p, _)| format!("{p}."));
        let has_classifier = w.get(&format!("{fc}.weight")).is_some();
        for (name, shape) in self.tensors() {
            let optional = name.starts_with(&fc_prefix)
                || (!has_classifier && hidden.as_ref().is_some_and(|h| name.starts_with(h)));
            if !optional {
                w.require(&name, &shape)?;
            }
        }
        let classifier = classifier(w, &format!("{fc}.weight"), &format!("{fc}.bias"))?;
        let spec = self.build(kind, classifier);
        if let Some(c) = &spec.classifier {
            let expects = spec
                .hidden
                .as_ref()
                .map_or(spec.feature_dim, |h| h.out_features);
            w.require(&c.weight, &[c.out_features, expects])?;
        }
        Ok(spec)
    }

    /// The published architecture, ImageNet classifier included, from the shapes alone.
    pub fn published(&self, kind: EncoderKind) -> NetSpec {
        let (p, [o, i]) = &self.classifier;
        self.build(kind, Some(dense(p, *o, *i)))
    }

    /// The spec with `classifier` (and the hidden layer before it, when there is one).
    fn build(&self, kind: EncoderKind, classifier: Option<Linear>) -> NetSpec {
        let blocks: Vec<Block> = self
            .blocks
            .iter()
            .map(|b| Block {
                layers: b.convs.iter().map(Conv::spec).collect(),
                residual: b.residual,
                projection: b.projection.as_ref().map(Conv::spec),
                post_act: b.post_act,
                max_pool: b.max_pool,
                se: b.se.as_ref().map(Se::spec),
            })
            .collect();
        let hidden = self
            .hidden
            .as_ref()
            .filter(|_| classifier.is_some())
            .map(|(p, [o, i])| dense(p, *o, *i));
        NetSpec {
            kind,
            feature_dim: blocks.last().map_or(0, Block::out_ch),
            blocks,
            hidden,
            classifier,
            bn_eps: self.bn_eps,
            preprocess: kind.preprocess(),
        }
    }
}

/// The dense layer `{prefix}.weight` `[out, in]`, `{prefix}.bias`.
fn dense(prefix: &str, out_features: usize, in_features: usize) -> Linear {
    Linear {
        weight: format!("{prefix}.weight"),
        bias: format!("{prefix}.bias"),
        in_features,
        out_features,
    }
}
