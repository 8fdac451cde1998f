//! ResNet-18/34/50 in torchvision's layout (`conv1`, `bn1`, `layer{1..4}.{j}`, `fc`).
//!
//! Stem: 7×7/2 conv to 64, ReLU, 3×3/2 max pool. Four stages of 64, 128, 256, 512 channels,
//! the first block of stages 2–4 with stride 2. ResNet-18/34 use basic blocks (two 3×3 convs);
//! ResNet-50 uses bottlenecks (1×1 down, 3×3 carrying the stride, 1×1 up to 4× the width).
//! A block whose input shape differs from its output adds a 1×1 projection of its input
//! (`downsample`); every sum is followed by ReLU.

use super::read::{check_chain, classifier, conv_bn};
use super::spec::{Act, Block, EncoderKind, MaxPool, NetSpec, Padding};
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
const BN_PARTS: [&str; 4] = ["weight", "bias", "running_mean", "running_var"];

/// One convolution of the layout: (conv key, BN prefix, shape `[out, in, k, k]`, stride).
struct ConvAt {
    conv: String,
    bn: String,
    shape: [usize; 4],
    stride: usize,
}

/// One block of the layout: its convs in order, and its projection.
struct BlockAt {
    convs: Vec<ConvAt>,
    projection: Option<ConvAt>,
}

fn conv_at(conv: String, bn: String, shape: [usize; 4], stride: usize) -> ConvAt {
    ConvAt {
        conv,
        bn,
        shape,
        stride,
    }
}

/// The residual blocks of `c`, in order.
fn layout(c: Config) -> Vec<BlockAt> {
    let expansion = if c.bottleneck { 4 } else { 1 };
    let mut in_ch = 64;
    let mut blocks = Vec::new();
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
            let at = |i: usize, shape: [usize; 4], stride: usize| {
                conv_at(
                    format!("{p}.conv{i}.weight"),
                    format!("{p}.bn{i}"),
                    shape,
                    stride,
                )
            };
            let convs = if c.bottleneck {
                vec![
                    at(1, [width, in_ch, 1, 1], 1),
                    at(2, [width, width, 3, 3], stride),
                    at(3, [out_ch, width, 1, 1], 1),
                ]
            } else {
                vec![
                    at(1, [width, in_ch, 3, 3], stride),
                    at(2, [width, width, 3, 3], 1),
                ]
            };
            let projection = (stride != 1 || in_ch != out_ch).then(|| {
                conv_at(
                    format!("{p}.downsample.0.weight"),
                    format!("{p}.downsample.1"),
                    [out_ch, in_ch, 1, 1],
                    stride,
                )
            });
            blocks.push(BlockAt { convs, projection });
            in_ch = out_ch;
        }
    }
    blocks
}

/// Every tensor of torchvision's `resnet*` state dict (BatchNorm's `num_batches_tracked`
/// counters aside), name and shape, in the state dict's order; `None` for other encoders.
pub fn tensors(kind: EncoderKind) -> Option<Vec<(String, Vec<usize>)>> {
    let c = config(kind)?;
    let mut out = Vec::new();
    let mut push = |conv: &ConvAt| {
        out.push((conv.conv.clone(), conv.shape.to_vec()));
        for part in BN_PARTS {
            out.push((format!("{}.{part}", conv.bn), vec![conv.shape[0]]));
        }
    };
    push(&conv_at(
        "conv1.weight".into(),
        "bn1".into(),
        [64, 3, 7, 7],
        2,
    ));
    for b in layout(c) {
        b.convs.iter().for_each(&mut push);
        if let Some(p) = &b.projection {
            push(p);
        }
    }
    let features = 512 * if c.bottleneck { 4 } else { 1 };
    out.push(("fc.weight".into(), vec![1000, features]));
    out.push(("fc.bias".into(), vec![1000]));
    Some(out)
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
    // Every shape exactly as torchvision's: a wrong one is named with both shapes. (The
    // classifier may have been stripped, or have another number of classes.)
    for (name, shape) in tensors(kind).unwrap_or_default() {
        if !name.starts_with("fc.") {
            w.require(&name, &shape)?;
        }
    }
    let sym = Padding::Symmetric(0);
    let relu = Some(Act::Relu);
    let layer = |at: &ConvAt, act| conv_bn(w, &at.conv, &at.bn, at.stride, false, sym, act);
    let mut stem = Block::new(
        vec![layer(
            &conv_at("conv1.weight".into(), "bn1".into(), [64, 3, 7, 7], 2),
            relu,
        )?],
        false,
    );
    stem.max_pool = Some(MaxPool {
        kernel: 3,
        stride: 2,
        padding: 1,
    });
    let mut blocks = vec![stem];
    for b in layout(c) {
        let last = b.convs.len() - 1;
        let layers = b
            .convs
            .iter()
            .enumerate()
            .map(|(i, at)| layer(at, if i == last { None } else { relu }))
            .collect::<Result<_, _>>()?;
        blocks.push(Block {
            layers,
            residual: true,
            projection: b.projection.as_ref().map(|p| layer(p, None)).transpose()?,
            post_act: relu,
            max_pool: None,
        });
    }
    let feature_dim = blocks.last().map_or(0, Block::out_ch);
    let classifier = classifier(w, "fc.weight", "fc.bias")?;
    check_chain(w, &blocks, feature_dim, classifier.as_ref())?;
    Ok(NetSpec {
        kind,
        blocks,
        feature_dim,
        classifier,
        bn_eps: 1e-5,
        preprocess: kind.preprocess(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Tensor};

    fn zeros(kind: EncoderKind) -> StateDict {
        let mut sd = StateDict::new("resnet.pth");
        for (name, shape) in tensors(kind).expect("a resnet") {
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
    fn published_sizes() {
        // (kind, parameters, feature width, blocks with a projection, GFLOPS); torchvision's
        // counts and its table's multiply-adds.
        for (kind, params, dim, projections, gmacs) in [
            (EncoderKind::ResNet18, 11_689_512, 512, 3, 1.81),
            (EncoderKind::ResNet34, 21_797_672, 512, 3, 3.66),
            (EncoderKind::ResNet50, 25_557_032, 2048, 4, 4.09),
        ] {
            let t = tensors(kind).expect("resnet");
            // BatchNorm's running statistics are buffers, not parameters.
            let p: usize = t
                .iter()
                .filter(|(n, _)| !n.contains("running_"))
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            assert_eq!(p, params, "{kind}");
            let spec = spec(kind, &zeros(kind)).expect("spec");
            assert_eq!(spec.parameters(), params, "{kind}");
            let g = spec.multiply_adds() as f64 / 1e9;
            assert!((g - gmacs).abs() < 0.006, "{kind}: {g} GMACs");
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
