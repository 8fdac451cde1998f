//! MobileNetV2 in torchvision's layout (`features.N…`, `classifier.1`).
//!
//! Stages (expansion t, channels c, repeats n, first stride s): (1,16,1,1) (6,24,2,2)
//! (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1); stem 3×3/2 to 32, head 1×1 to 1280.

use super::read::{check_chain, classifier, conv_bn};
use super::spec::{Act, Block, EncoderKind, NetSpec, Padding};
use crate::weights::{StateDict, WeightError};

/// The stem's convolution and the ImageNet classifier's (weight, bias).
pub(super) const STEM: &str = "features.0.0.weight";
pub(super) const CLASSIFIER: (&str, &str) = ("classifier.1.weight", "classifier.1.bias");

/// Stride of `features.N` for N = 1..=17.
const BLOCK_STRIDES: [usize; 17] = [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1];

pub(super) fn spec(w: &StateDict) -> Result<NetSpec, WeightError> {
    let sym = Padding::Symmetric(0);
    let relu6 = Some(Act::Relu6);
    let mut blocks = vec![Block::new(
        vec![conv_bn(w, STEM, "features.0.1", 2, false, sym, relu6)?],
        false,
    )];
    w.require(STEM, &[32, 3, 3, 3])?;
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
        blocks.push(Block::new(layers, residual));
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
    blocks.push(Block::new(vec![head], false));
    let classifier = classifier(w, CLASSIFIER.0, CLASSIFIER.1)?;
    check_chain(w, &blocks, feature_dim, classifier.as_ref())?;
    Ok(NetSpec {
        kind: EncoderKind::MobileNetV2,
        blocks,
        feature_dim,
        hidden: None,
        classifier,
        bn_eps: 1e-5,
        preprocess: EncoderKind::MobileNetV2.preprocess(),
    })
}
