//! EfficientNet-Lite0..2 in the `efficientnet_pytorch` layout (`_conv_stem`, `_blocks.N`,
//! `_conv_head`, `_fc`): no squeeze-excite, ReLU6, TF "SAME" padding, BatchNorm eps 1e-3.
//!
//! Blocks are read from the weights; a new stage starts where the output channels change, and
//! the first block of stages 2, 3, 4 and 6 (of 7) has stride 2.

use super::read::{check_chain, classifier, conv_bn, conv_shape};
use super::spec::{Act, Block, EncoderKind, NetSpec, Padding};
use crate::weights::{StateDict, WeightError};

const STAGE_STRIDES: [usize; 7] = [1, 2, 2, 2, 1, 2, 1];

/// The stem's convolution and the ImageNet classifier's (weight, bias).
pub(super) const STEM: &str = "_conv_stem.weight";
pub(super) const CLASSIFIER: (&str, &str) = ("_fc.weight", "_fc.bias");

pub(super) fn spec(kind: EncoderKind, w: &StateDict) -> Result<NetSpec, WeightError> {
    let same = Padding::TfSame;
    let relu6 = Some(Act::Relu6);
    let mut blocks = vec![Block::new(
        vec![conv_bn(w, STEM, "_bn0", 2, false, same, relu6)?],
        false,
    )];
    let n_blocks = (0..)
        .take_while(|i| {
            w.get(&format!("_blocks.{i}._depthwise_conv.weight"))
                .is_some()
        })
        .count();
    let mut stage = 0usize;
    let mut prev_out = None;
    for i in 0..n_blocks {
        let p = format!("_blocks.{i}");
        let out_ch = conv_shape(w, &format!("{p}._project_conv.weight"))?[0];
        let first_of_stage = prev_out != Some(out_ch);
        if first_of_stage && prev_out.is_some() {
            stage += 1;
        }
        let stride = if first_of_stage {
            *STAGE_STRIDES
                .get(stage)
                .ok_or_else(|| WeightError::Format {
                    path: w.source().to_path_buf(),
                    detail: format!("more than {} stages at `{p}`", STAGE_STRIDES.len()),
                })?
        } else {
            1
        };
        let mut layers = Vec::new();
        if w.get(&format!("{p}._expand_conv.weight")).is_some() {
            layers.push(conv_bn(
                w,
                &format!("{p}._expand_conv.weight"),
                &format!("{p}._bn0"),
                1,
                false,
                same,
                relu6,
            )?);
        }
        layers.push(conv_bn(
            w,
            &format!("{p}._depthwise_conv.weight"),
            &format!("{p}._bn1"),
            stride,
            true,
            same,
            relu6,
        )?);
        layers.push(conv_bn(
            w,
            &format!("{p}._project_conv.weight"),
            &format!("{p}._bn2"),
            1,
            false,
            same,
            None,
        )?);
        let residual = stride == 1 && layers[0].in_ch == out_ch;
        blocks.push(Block::new(layers, residual));
        prev_out = Some(out_ch);
    }
    if stage + 1 != STAGE_STRIDES.len() {
        return Err(WeightError::Format {
            path: w.source().to_path_buf(),
            detail: format!(
                "found {} stages in {n_blocks} blocks, expected 7: not an EfficientNet-Lite file",
                stage + 1
            ),
        });
    }
    let head = conv_bn(w, "_conv_head.weight", "_bn1", 1, false, same, relu6)?;
    let feature_dim = head.out_ch;
    blocks.push(Block::new(vec![head], false));
    let classifier = classifier(w, CLASSIFIER.0, CLASSIFIER.1)?;
    check_chain(w, &blocks, feature_dim, classifier.as_ref())?;
    Ok(NetSpec {
        kind,
        blocks,
        feature_dim,
        hidden: None,
        classifier,
        bn_eps: 1e-3,
        preprocess: kind.preprocess(),
    })
}
