//! MobileNetV3-Small and -Large in torchvision's layout (`features.N.block.K`,
//! `classifier.0`/`.3`): inverted residuals with ReLU or hard-swish, squeeze-and-excitation
//! with a hard-sigmoid gate in some blocks, BatchNorm eps 1e-3; a last 1×1 conv to six times
//! the last block's width (576 / 960: the pooled features), then a hidden layer (1024 / 1280,
//! hard-swish) before the ImageNet classifier.

use super::layout::{BlockLayout, Conv, Layout, Se};
use super::spec::{Act, EncoderKind, Gate, NetSpec};
use crate::weights::{StateDict, WeightError};

/// (kernel, expanded channels, output channels, squeeze-and-excitation, hard-swish, stride)
type Bneck = (usize, usize, usize, bool, bool, usize);

const LARGE: [Bneck; 15] = [
    (3, 16, 16, false, false, 1),
    (3, 64, 24, false, false, 2),
    (3, 72, 24, false, false, 1),
    (5, 72, 40, true, false, 2),
    (5, 120, 40, true, false, 1),
    (5, 120, 40, true, false, 1),
    (3, 240, 80, false, true, 2),
    (3, 200, 80, false, true, 1),
    (3, 184, 80, false, true, 1),
    (3, 184, 80, false, true, 1),
    (3, 480, 112, true, true, 1),
    (3, 672, 112, true, true, 1),
    (5, 672, 160, true, true, 2),
    (5, 960, 160, true, true, 1),
    (5, 960, 160, true, true, 1),
];

const SMALL: [Bneck; 11] = [
    (3, 16, 16, true, false, 2),
    (3, 72, 24, false, false, 2),
    (3, 88, 24, false, false, 1),
    (5, 96, 40, true, true, 2),
    (5, 240, 40, true, true, 1),
    (5, 240, 40, true, true, 1),
    (5, 120, 48, true, true, 1),
    (5, 144, 48, true, true, 1),
    (5, 288, 96, true, true, 2),
    (5, 576, 96, true, true, 1),
    (5, 576, 96, true, true, 1),
];

/// torchvision's `_make_divisible(v, 8)`: the nearest multiple of 8, never below 90% of `v`.
fn divisible_by_8(v: usize) -> usize {
    let rounded = ((v + 4) / 8 * 8).max(8);
    if (rounded as f64) < 0.9 * v as f64 {
        rounded + 8
    } else {
        rounded
    }
}

pub(super) fn layout(kind: EncoderKind) -> Option<Layout> {
    let (table, hidden): (&[Bneck], usize) = match kind {
        EncoderKind::MobileNetV3Small => (&SMALL, 1024),
        EncoderKind::MobileNetV3Large => (&LARGE, 1280),
        _ => return None,
    };
    let hs = Some(Act::Hardswish);
    let mut blocks = vec![BlockLayout::plain(vec![Conv::seq(
        "features.0",
        [16, 3, 3, 3],
        2,
        hs,
    )])];
    let mut in_ch = 16;
    for (i, &(k, exp, out_ch, use_se, use_hs, stride)) in table.iter().enumerate() {
        let p = format!("features.{}.block", i + 1);
        let act = Some(if use_hs { Act::Hardswish } else { Act::Relu });
        let mut convs = Vec::new();
        if exp != in_ch {
            convs.push(Conv::seq(&format!("{p}.0"), [exp, in_ch, 1, 1], 1, act));
        }
        let dw = convs.len();
        convs.push(Conv::depthwise(&format!("{p}.{dw}"), exp, k, stride, act));
        let se = use_se.then(|| Se {
            prefix: format!("{p}.{}", dw + 1),
            after: dw,
            channels: exp,
            squeeze: divisible_by_8(exp / 4),
            act: Act::Relu,
            gate: Gate::HardSigmoid,
        });
        let project = dw + 1 + usize::from(use_se);
        convs.push(Conv::seq(
            &format!("{p}.{project}"),
            [out_ch, exp, 1, 1],
            1,
            None,
        ));
        blocks.push(BlockLayout {
            convs,
            se,
            residual: stride == 1 && in_ch == out_ch,
            ..BlockLayout::default()
        });
        in_ch = out_ch;
    }
    let last = 6 * in_ch;
    blocks.push(BlockLayout::plain(vec![Conv::seq(
        &format!("features.{}", table.len() + 1),
        [last, in_ch, 1, 1],
        1,
        hs,
    )]));
    Some(Layout {
        blocks,
        hidden: Some(("classifier.0".into(), [hidden, last])),
        classifier: ("classifier.3".into(), [1000, hidden]),
        bn_eps: 1e-3,
    })
}

pub(super) fn spec(kind: EncoderKind, w: &StateDict) -> Result<NetSpec, WeightError> {
    let layout = layout(kind).ok_or_else(|| WeightError::Format {
        path: w.source().to_path_buf(),
        detail: format!("{kind} is not a MobileNetV3"),
    })?;
    layout.spec(kind, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_rounding() {
        // torchvision's squeeze widths for expansions 16, 72, 96, 120, 240, 576, 672, 960.
        for (exp, squeeze) in [
            (16, 8),
            (72, 24),
            (96, 24),
            (120, 32),
            (240, 64),
            (576, 144),
            (672, 168),
            (960, 240),
        ] {
            assert_eq!(divisible_by_8(exp / 4), squeeze, "{exp}");
        }
    }
}
