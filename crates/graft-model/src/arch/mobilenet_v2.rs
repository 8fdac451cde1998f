//! MobileNetV2 in torchvision's layout (`features.N…`, `classifier.1`).
//!
//! Stages (expansion t, channels c, repeats n, first stride s): (1,16,1,1) (6,24,2,2)
//! (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1); stem 3×3/2 to 32, head 1×1 to 1280.

use super::spec::{Act, Block, ConvBn, EncoderKind, Linear, NetSpec, Padding};
use crate::weights::{StateDict, WeightError};

/// Stride of `features.N` for N = 1..=17.
const BLOCK_STRIDES: [usize; 17] = [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1];

pub(super) fn conv_shape(w: &StateDict, key: &str) -> Result<[usize; 4], WeightError> {
    let t = w.get(key).ok_or_else(|| WeightError::MissingTensor {
        path: w.source().to_path_buf(),
        name: key.to_string(),
    })?;
    match t.shape.as_slice() {
        &[o, i, kh, kw] if kh == kw => Ok([o, i, kh, kw]),
        other => Err(WeightError::ShapeMismatch {
            path: w.source().to_path_buf(),
            name: key.to_string(),
            expected: vec![0, 0, 0, 0],
            actual: other.to_vec(),
        }),
    }
}

/// A conv + BN layer whose shapes come from the weights; checks the BN vectors too.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_bn(
    w: &StateDict,
    conv: &str,
    bn: &str,
    stride: usize,
    depthwise: bool,
    padding: Padding,
    act: Option<Act>,
) -> Result<ConvBn, WeightError> {
    let [out_ch, in_per_group, k, _] = conv_shape(w, conv)?;
    let (in_ch, groups) = if depthwise {
        (out_ch, out_ch)
    } else {
        (in_per_group, 1)
    };
    if depthwise && in_per_group != 1 {
        return Err(WeightError::ShapeMismatch {
            path: w.source().to_path_buf(),
            name: conv.to_string(),
            expected: vec![out_ch, 1, k, k],
            actual: vec![out_ch, in_per_group, k, k],
        });
    }
    for part in ["weight", "bias", "running_mean", "running_var"] {
        w.require(&format!("{bn}.{part}"), &[out_ch])?;
    }
    Ok(ConvBn {
        conv: conv.to_string(),
        bn: bn.to_string(),
        in_ch,
        out_ch,
        kernel: k,
        stride,
        groups,
        padding: match padding {
            Padding::Symmetric(_) => Padding::Symmetric(k / 2),
            p => p,
        },
        act,
    })
}

pub(super) fn linear(w: &StateDict, weight: &str, bias: &str) -> Result<Linear, WeightError> {
    let t = w.get(weight).ok_or_else(|| WeightError::MissingTensor {
        path: w.source().to_path_buf(),
        name: weight.to_string(),
    })?;
    let (out_features, in_features) = match t.shape.as_slice() {
        &[o, i] => (o, i),
        other => {
            return Err(WeightError::ShapeMismatch {
                path: w.source().to_path_buf(),
                name: weight.to_string(),
                expected: vec![1000, 1280],
                actual: other.to_vec(),
            })
        }
    };
    w.require(bias, &[out_features])?;
    Ok(Linear {
        weight: weight.to_string(),
        bias: bias.to_string(),
        in_features,
        out_features,
    })
}

pub(super) fn spec(w: &StateDict) -> Result<NetSpec, WeightError> {
    let sym = Padding::Symmetric(0);
    let relu6 = Some(Act::Relu6);
    let mut blocks = vec![Block {
        layers: vec![conv_bn(
            w,
            "features.0.0.weight",
            "features.0.1",
            2,
            false,
            sym,
            relu6,
        )?],
        residual: false,
    }];
    w.require("features.0.0.weight", &[32, 3, 3, 3])?;
    for (n, &stride) in (1..=17).zip(BLOCK_STRIDES.iter()) {
        let p = format!("features.{n}.conv");
        let expands = w.get(&format!("{p}.3.weight")).is_some();
        let layers = if expands {
            vec![
                conv_bn(
                    w,
                    &format!("{p}.0.0.weight"),
                    &format!("{p}.0.1"),
                    1,
                    false,
                    sym,
                    relu6,
                )?,
                conv_bn(
                    w,
                    &format!("{p}.1.0.weight"),
                    &format!("{p}.1.1"),
                    stride,
                    true,
                    sym,
                    relu6,
                )?,
                conv_bn(
                    w,
                    &format!("{p}.2.weight"),
                    &format!("{p}.3"),
                    1,
                    false,
                    sym,
                    None,
                )?,
            ]
        } else {
            vec![
                conv_bn(
                    w,
                    &format!("{p}.0.0.weight"),
                    &format!("{p}.0.1"),
                    stride,
                    true,
                    sym,
                    relu6,
                )?,
                conv_bn(
                    w,
                    &format!("{p}.1.weight"),
                    &format!("{p}.2"),
                    1,
                    false,
                    sym,
                    None,
                )?,
            ]
        };
        let residual = stride == 1 && layers[0].in_ch == layers[layers.len() - 1].out_ch;
        blocks.push(Block { layers, residual });
    }
    let head = conv_bn(
        w,
        "features.18.0.weight",
        "features.18.1",
        1,
        false,
        sym,
        relu6,
    )?;
    let feature_dim = head.out_ch;
    blocks.push(Block {
        layers: vec![head],
        residual: false,
    });
    let classifier = linear(w, "classifier.1.weight", "classifier.1.bias")?;
    check_chain(w, &blocks, feature_dim, &classifier)?;
    Ok(NetSpec {
        kind: EncoderKind::MobileNetV2,
        blocks,
        feature_dim,
        classifier,
        bn_eps: 1e-5,
        preprocess: EncoderKind::MobileNetV2.preprocess(),
    })
}

/// Each layer's input channels must equal the previous layer's output channels.
pub(super) fn check_chain(
    w: &StateDict,
    blocks: &[Block],
    feature_dim: usize,
    classifier: &Linear,
) -> Result<(), WeightError> {
    let mut ch = 3;
    for l in blocks.iter().flat_map(|b| &b.layers) {
        if l.in_ch != ch {
            return Err(WeightError::Format {
                path: w.source().to_path_buf(),
                detail: format!(
                    "`{}` expects {} input channels but the previous layer gives {ch}; \
                     the file is not this architecture",
                    l.conv, l.in_ch
                ),
            });
        }
        ch = l.out_ch;
    }
    if classifier.in_features != feature_dim {
        return Err(WeightError::ShapeMismatch {
            path: w.source().to_path_buf(),
            name: classifier.weight.clone(),
            expected: vec![classifier.out_features, feature_dim],
            actual: vec![classifier.out_features, classifier.in_features],
        });
    }
    Ok(())
}
