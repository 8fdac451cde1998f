//! EfficientNet-B0 in torchvision's layout (`features.N.M.block.K`, `classifier.1`): MBConv
//! blocks with SiLU and squeeze-and-excitation (sigmoid gate, a quarter of the block's input
//! channels), BatchNorm eps 1e-5, symmetric padding.
//!
//! Stages (expansion t, kernel k, first stride s, output channels c, repeats n): (1,3,1,16,1)
//! (6,3,2,24,2) (6,5,2,40,2) (6,3,2,80,3) (6,5,1,112,3) (6,5,2,192,4) (6,3,1,320,1); stem
//! 3×3/2 to 32, head 1×1 to 1280.

use super::layout::{BlockLayout, Conv, Layout, Se};
use super::spec::{Act, EncoderKind, Gate, NetSpec};
use crate::weights::{StateDict, WeightError};

const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
];

pub(super) fn layout() -> Layout {
    let silu = Some(Act::Silu);
    let mut blocks = vec![BlockLayout::plain(vec![Conv::seq(
        "features.0",
        [32, 3, 3, 3],
        2,
        silu,
    )])];
    let mut in_ch = 32;
    for (s, &(t, k, first_stride, out_ch, n)) in STAGES.iter().enumerate() {
        for j in 0..n {
            let p = format!("features.{}.{j}.block", s + 1);
            let stride = if j == 0 { first_stride } else { 1 };
            let exp = in_ch * t;
            let mut convs = Vec::new();
            if t != 1 {
                convs.push(Conv::seq(&format!("{p}.0"), [exp, in_ch, 1, 1], 1, silu));
            }
            let dw = convs.len();
            convs.push(Conv::depthwise(&format!("{p}.{dw}"), exp, k, stride, silu));
            let se = Se {
                prefix: format!("{p}.{}", dw + 1),
                after: dw,
                channels: exp,
                squeeze: (in_ch / 4).max(1),
                act: Act::Silu,
                gate: Gate::Sigmoid,
            };
            convs.push(Conv::seq(
                &format!("{p}.{}", dw + 2),
                [out_ch, exp, 1, 1],
                1,
                None,
            ));
            blocks.push(BlockLayout {
                convs,
                se: Some(se),
                residual: stride == 1 && in_ch == out_ch,
                ..BlockLayout::default()
            });
            in_ch = out_ch;
        }
    }
    blocks.push(BlockLayout::plain(vec![Conv::seq(
        "features.8",
        [1280, in_ch, 1, 1],
        1,
        silu,
    )]));
    Layout {
        blocks,
        hidden: None,
        classifier: ("classifier.1".into(), [1000, 1280]),
        bn_eps: 1e-5,
    }
}

pub(super) fn spec(w: &StateDict) -> Result<NetSpec, WeightError> {
    layout().spec(EncoderKind::EfficientNetB0, w)
}
