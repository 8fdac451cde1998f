//! ResNet-18/34/50 in torchvision's layout (`conv1`, `bn1`, `layer{1..4}.{j}`, `fc`).
//!
//! Stem: 7×7/2 conv to 64, ReLU, 3×3/2 max pool. Four stages of 64, 128, 256, 512 channels,
//! the first block of stages 2–4 with stride 2. ResNet-18/34 use basic blocks (two 3×3 convs);
//! ResNet-50 uses bottlenecks (1×1 down, 3×3 carrying the stride, 1×1 up to 4× the width).
//! A block whose input shape differs from its output adds a 1×1 projection of its input
//! (`downsample`); every sum is followed by ReLU.

use super::layout::{BlockLayout, Conv, Layout};
use super::spec::{Act, EncoderKind, MaxPool, NetSpec};
use crate::weights::{StateDict, WeightError};

/// Blocks per stage and whether they are bottlenecks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Config {
    repeats: [usize; 4],
    bottleneck: bool,
}

fn config(kind: EncoderKind) -> Option<Config> {
    let (repeats, bottleneck) = match kind {
        EncoderKind::ResNet18 => ([2, 2, 2, 2], false),
        EncoderKind::ResNet34 => ([3, 4, 6, 3], false),
        EncoderKind::ResNet50 => ([3, 4, 6, 3], true),
        _ => return None,
    };
    Some(Config {
        repeats,
        bottleneck,
    })
}

const WIDTHS: [usize; 4] = [64, 128, 256, 512];
const STRIDES: [usize; 4] = [1, 2, 2, 2];

fn conv(weight: String, bn: String, shape: [usize; 4], stride: usize, act: Option<Act>) -> Conv {
    Conv {
        weight,
        bn,
        shape,
        stride,
        groups: 1,
        act,
    }
}

/// torchvision's layout of `c`.
fn layout(c: Config) -> Layout {
    let relu = Some(Act::Relu);
    let expansion = if c.bottleneck { 4 } else { 1 };
    let mut stem = BlockLayout::plain(vec![conv(
        "conv1.weight".into(),
        "bn1".into(),
        [64, 3, 7, 7],
        2,
        relu,
    )]);
    stem.max_pool = Some(MaxPool {
        kernel: 3,
        stride: 2,
        padding: 1,
    });
    let mut blocks = vec![stem];
    let mut in_ch = 64;
    for (stage, (&n, (&width, &first_stride))) in c
        .repeats
        .iter()
        .zip(WIDTHS.iter().zip(&STRIDES))
        .enumerate()
    {
        let out_ch = width * expansion;
        for j in 0..n {
            let p = format!("layer{}.{j}", stage + 1);
            let stride = if j == 0 { first_stride } else { 1 };
            let at = |i: usize, shape: [usize; 4], stride: usize, act| {
                conv(
                    format!("{p}.conv{i}.weight"),
                    format!("{p}.bn{i}"),
                    shape,
                    stride,
                    act,
                )
            };
            let convs = if c.bottleneck {
                vec![
                    at(1, [width, in_ch, 1, 1], 1, relu),
                    at(2, [width, width, 3, 3], stride, relu),
                    at(3, [out_ch, width, 1, 1], 1, None),
                ]
            } else {
                vec![
                    at(1, [width, in_ch, 3, 3], stride, relu),
                    at(2, [width, width, 3, 3], 1, None),
                ]
            };
            let projection = (stride != 1 || in_ch != out_ch).then(|| {
                conv(
                    format!("{p}.downsample.0.weight"),
                    format!("{p}.downsample.1"),
                    [out_ch, in_ch, 1, 1],
                    stride,
                    None,
                )
            });
            blocks.push(BlockLayout {
                convs,
                residual: true,
                projection,
                post_act: relu,
                ..BlockLayout::default()
            });
            in_ch = out_ch;
        }
    }
    Layout {
        blocks,
        hidden: None,
        classifier: ("fc".into(), [1000, in_ch]),
        bn_eps: 1e-5,
    }
}

/// torchvision's `resnet*` layout; `None` for other encoders.
pub(super) fn layout_of(kind: EncoderKind) -> Option<Layout> {
    Some(layout(config(kind)?))
}

/// Blocks per stage in `w` (counted by `layer{s}.{j}.conv1.weight`).
fn repeats_in(w: &StateDict) -> [usize; 4] {
    let mut r = [0; 4];
    for (s, n) in r.iter_mut().enumerate() {
        *n = (0..)
            .take_while(|j| w.get(&format!("layer{}.{j}.conv1.weight", s + 1)).is_some())
            .count();
    }
    r
}

pub(super) fn spec(kind: EncoderKind, w: &StateDict) -> Result<NetSpec, WeightError> {
    let c = config(kind).ok_or_else(|| WeightError::Format {
        path: w.source().to_path_buf(),
        detail: format!("{kind} is not a ResNet"),
    })?;
    let found = repeats_in(w);
    if found != c.repeats && found != [0; 4] {
        let other = [
            EncoderKind::ResNet18,
            EncoderKind::ResNet34,
            EncoderKind::ResNet50,
        ]
        .into_iter()
        .filter(|&k| k != kind)
        .find(|&k| config(k).is_some_and(|o| o.repeats == found));
        let hint = other.map_or(String::new(), |k| {
            format!(" (those of {k}: try --arch {k})")
        });
        return Err(WeightError::Format {
            path: w.source().to_path_buf(),
            detail: format!(
                "{kind} has {:?} blocks per stage but the file has {found:?}{hint}",
                c.repeats
            ),
        });
    }
    layout(c).spec(kind, w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Tensor};

    fn zeros(kind: EncoderKind) -> StateDict {
        let mut sd = StateDict::new("resnet.pth");
        for (name, shape) in layout_of(kind).expect("a resnet").tensors() {
            let n = shape.iter().product();
            sd.insert(
                name,
                Tensor {
                    shape,
                    data: vec![0.0; n],
                    dtype: DType::F32,
                },
            );
        }
        sd
    }

    #[test]
    fn layout_shapes() {
        // (kind, feature width, blocks with a projection); synthetic's test checks
        // torchvision's parameter and multiply-add counts.
        for (kind, dim, projections) in [
            (EncoderKind::ResNet18, 512, 3),
            (EncoderKind::ResNet34, 512, 3),
            (EncoderKind::ResNet50, 2048, 4),
        ] {
            let spec = spec(kind, &zeros(kind)).expect("spec");
            assert_eq!(spec.feature_dim, dim);
            assert_eq!(spec.feature_map_size(224), 7, "{kind}");
            assert_eq!(
                spec.blocks
                    .iter()
                    .filter(|b| b.projection.is_some())
                    .count(),
                projections
            );
            assert_eq!(spec.block_input(1), [64, 56, 56]);
        }
    }

    #[test]
    fn wrong_files_are_named() {
        let sd = zeros(EncoderKind::ResNet18);
        let err = spec(EncoderKind::ResNet34, &sd).expect_err("18 is not 34");
        let msg = err.to_string();
        assert!(
            msg.contains("[2, 2, 2, 2]") && msg.contains("--arch resnet18"),
            "{msg}"
        );
        let mut bad = zeros(EncoderKind::ResNet18);
        bad.insert(
            "layer2.0.conv1.weight",
            Tensor {
                shape: vec![128, 64, 1, 1],
                data: vec![0.0; 128 * 64],
                dtype: DType::F32,
            },
        );
        let msg = spec(EncoderKind::ResNet18, &bad)
            .expect_err("wrong shape")
            .to_string();
        assert!(
            msg.contains("layer2.0.conv1.weight")
                && msg.contains("[128, 64, 3, 3]")
                && msg.contains("[128, 64, 1, 1]"),
            "{msg}"
        );
    }
}
