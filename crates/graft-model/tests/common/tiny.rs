//! A tiny synthetic network of the encoder family, with weights from a fixed-seed generator:
//! every operator and padding kind the exporter writes, small enough for a naive reference.

use graft_model::arch::{Act, Block, ConvBn, EncoderKind, Linear, NetSpec, Padding, Preprocess};
use graft_model::{DType, StateDict, Tensor};

/// A linear congruential generator: the same numbers on every machine.
pub struct Lcg(pub u64);

impl Lcg {
    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale + offset).collect()
    }
}

pub fn f32_tensor(shape: &[usize], data: Vec<f32>) -> Tensor {
    Tensor {
        shape: shape.to_vec(),
        data,
        dtype: DType::F32,
    }
}

#[allow(clippy::too_many_arguments)]
fn layer(
    w: &mut StateDict,
    rng: &mut Lcg,
    name: &str,
    (in_ch, out_ch): (usize, usize),
    kernel: usize,
    stride: usize,
    groups: usize,
    padding: Padding,
    act: Option<Act>,
) -> ConvBn {
    let shape = [out_ch, in_ch / groups, kernel, kernel];
    let fan_in = (in_ch / groups * kernel * kernel) as f32;
    w.insert(
        format!("{name}.conv"),
        f32_tensor(
            &shape,
            rng.vec(shape.iter().product(), 1.5 / fan_in.sqrt(), 0.0),
        ),
    );
    w.insert(
        format!("{name}.bn.weight"),
        f32_tensor(&[out_ch], rng.vec(out_ch, 0.4, 1.0)),
    );
    w.insert(
        format!("{name}.bn.bias"),
        f32_tensor(&[out_ch], rng.vec(out_ch, 0.3, 0.1)),
    );
    w.insert(
        format!("{name}.bn.running_mean"),
        f32_tensor(&[out_ch], rng.vec(out_ch, 0.3, 0.0)),
    );
    w.insert(
        format!("{name}.bn.running_var"),
        f32_tensor(&[out_ch], rng.vec(out_ch, 0.4, 0.9)),
    );
    ConvBn {
        conv: format!("{name}.conv"),
        bn: format!("{name}.bn"),
        in_ch,
        out_ch,
        kernel,
        stride,
        groups,
        padding,
        act,
    }
}

/// Stem 3×3/2, an inverted residual (expand, depthwise, project, skip), a 5×5/2 depthwise
/// with asymmetric TF padding, a symmetric-padding conv, a head conv and a classifier.
pub fn tiny_net(size: u32) -> (NetSpec, StateDict) {
    let mut rng = Lcg(7);
    let mut w = StateDict::new("tiny");
    let (same, r6) = (Padding::TfSame, Some(Act::Relu6));
    let r = &mut rng;
    let blocks = vec![
        Block::new(
            vec![layer(&mut w, r, "stem", (3, 8), 3, 2, 1, same, r6)],
            false,
        ),
        Block::new(
            vec![
                layer(&mut w, r, "b1.expand", (8, 16), 1, 1, 1, same, r6),
                layer(&mut w, r, "b1.dw", (16, 16), 3, 1, 16, same, r6),
                layer(&mut w, r, "b1.project", (16, 8), 1, 1, 1, same, None),
            ],
            true,
        ),
        Block::new(
            vec![
                layer(&mut w, r, "b2.dw", (8, 8), 5, 2, 8, same, r6),
                layer(&mut w, r, "b2.project", (8, 12), 1, 1, 1, same, None),
            ],
            false,
        ),
        Block::new(
            vec![layer(
                &mut w,
                r,
                "b3",
                (12, 12),
                3,
                1,
                1,
                Padding::Symmetric(1),
                r6,
            )],
            true,
        ),
        Block::new(
            vec![layer(&mut w, r, "head", (12, 16), 1, 1, 1, same, r6)],
            false,
        ),
    ];
    w.insert("fc.weight", f32_tensor(&[5, 16], rng.vec(80, 0.5, 0.0)));
    w.insert("fc.bias", f32_tensor(&[5], rng.vec(5, 0.5, 0.0)));
    let spec = NetSpec {
        kind: EncoderKind::MobileNetV2,
        blocks,
        feature_dim: 16,
        hidden: None,
        classifier: Some(Linear {
            weight: "fc.weight".into(),
            bias: "fc.bias".into(),
            in_features: 16,
            out_features: 5,
        }),
        bn_eps: 1e-3,
        preprocess: Preprocess {
            size,
            resize_shorter: size,
            mean: [0.5; 3],
            std: [0.25; 3],
            filter: Default::default(),
        },
    };
    (spec, w)
}
