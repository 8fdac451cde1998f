//! Reading an architecture's layers from a state dict: each shape comes from the weights and
//! is checked against its neighbours, so a file of another architecture fails on the first
//! tensor that does not fit, named.

use super::spec::{Act, Block, ConvBn, Linear, Padding};
use crate::weights::{StateDict, WeightError};

pub(super) fn conv_shape(w: &StateDict, key: &str) -> Result<[usize; 4], WeightError> {
    let t = w.get(key).ok_or_else(|| WeightError::MissingTensor {
        path: w.source().to_path_buf(),
        name: key.to_string(),
    })?;
    match t.shape.as_slice() {
        &[o, i, kh, kw] if kh == kw => Ok([o, i, kh, kw]),
        other => Err(WeightError::Format {
            path: w.source().to_path_buf(),
            detail: format!(
                "`{key}` has shape {other:?}, not a convolution's [out, in, k, k]; the file is \
                 not this architecture"
            ),
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

/// The classifier `weight`/`bias`, or `None` when neither tensor is there (stripped).
pub(super) fn classifier(
    w: &StateDict,
    weight: &str,
    bias: &str,
) -> Result<Option<Linear>, WeightError> {
    if w.get(weight).is_none() && w.get(bias).is_none() {
        return Ok(None);
    }
    linear(w, weight, bias).map(Some)
}

fn linear(w: &StateDict, weight: &str, bias: &str) -> Result<Linear, WeightError> {
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

/// Each layer's input channels must equal the previous layer's output channels, and a
/// residual sum must add equal shapes (through the projection, when there is one).
pub(super) fn check_chain(
    w: &StateDict,
    blocks: &[Block],
    feature_dim: usize,
    classifier: Option<&Linear>,
) -> Result<(), WeightError> {
    let wrong = |conv: &str, expects: usize, gets: usize| WeightError::Format {
        path: w.source().to_path_buf(),
        detail: format!(
            "`{conv}` expects {expects} input channels but the previous layer gives {gets}; \
             the file is not this architecture"
        ),
    };
    let mut ch = 3;
    for b in blocks {
        let block_in = ch;
        for l in &b.layers {
            if l.in_ch != ch {
                return Err(wrong(&l.conv, l.in_ch, ch));
            }
            ch = l.out_ch;
        }
        if !b.residual {
            continue;
        }
        let (adds, name) = match &b.projection {
            Some(p) if p.in_ch != block_in => return Err(wrong(&p.conv, p.in_ch, block_in)),
            Some(p) => (p.out_ch, p.conv.as_str()),
            None => (block_in, b.layers.last().map_or("", |l| l.conv.as_str())),
        };
        if adds != ch {
            return Err(WeightError::Format {
                path: w.source().to_path_buf(),
                detail: format!(
                    "the residual sum at `{name}` adds {adds} channels to {ch}; the file is not \
                     this architecture"
                ),
            });
        }
    }
    let Some(classifier) = classifier else {
        return Ok(());
    };
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
