//! The tiny encoders the fine-tuning tests train: one of each block kind, with made-up
//! weights.

use graft_data::preprocess::Preprocess;
use graft_data::rng::SplitMix64;
use graft_model::arch::{Act, Block, ConvBn, EncoderKind, Linear, NetSpec, Padding};
use graft_model::weights::{DType, StateDict, Tensor};

pub fn pre() -> Preprocess {
    Preprocess {
        size: 16,
        resize_shorter: 16,
        mean: [0.5; 3],
        std: [0.5; 3],
        filter: Default::default(),
    }
}

pub fn conv(name: &str, i: usize, o: usize, k: usize, s: usize, g: usize, act: bool) -> ConvBn {
    ConvBn {
        conv: format!("{name}.conv"),
        bn: format!("{name}.bn"),
        in_ch: i,
        out_ch: o,
        kernel: k,
        stride: s,
        groups: g,
        padding: Padding::Symmetric(k / 2),
        act: act.then_some(Act::Relu6),
    }
}

/// Stem (3→4, stride 2), one inverted-residual block (4→8→4), final 1×1 conv (4→6).
pub fn tiny() -> (NetSpec, StateDict) {
    let blocks = vec![
        Block::new(vec![conv("stem", 3, 4, 3, 2, 1, true)], false),
        Block::new(
            vec![
                conv("b1.expand", 4, 8, 1, 1, 1, true),
                conv("b1.dw", 8, 8, 3, 1, 8, true),
                conv("b1.project", 8, 4, 1, 1, 1, false),
            ],
            true,
        ),
        Block::new(vec![conv("last", 4, 6, 1, 1, 1, true)], false),
    ];
    net(EncoderKind::MobileNetV2, blocks, 1e-5)
}

/// `blocks` as a spec (features only: the tiny nets have no ImageNet classifier) with made-up
/// weights.
fn net(kind: EncoderKind, blocks: Vec<Block>, bn_eps: f32) -> (NetSpec, StateDict) {
    let spec = NetSpec {
        kind,
        feature_dim: blocks.last().map_or(0, Block::out_ch),
        blocks,
        hidden: None,
        classifier: None,
        bn_eps,
        preprocess: pre(),
    };
    let sd = weights_for(&spec);
    (spec, sd)
}

/// Made-up weights for every convolution and squeeze-and-excitation of `spec`.
fn weights_for(spec: &NetSpec) -> StateDict {
    let mut sd = StateDict::new("tiny");
    let mut rng = SplitMix64::new(9);
    let mut put = |name: String, shape: Vec<usize>, f: &mut dyn FnMut() -> f32| {
        let data = (0..shape.iter().product::<usize>()).map(|_| f()).collect();
        sd.insert(
            name,
            Tensor {
                shape,
                data,
                dtype: DType::F32,
            },
        );
    };
    for l in spec.convs() {
        let fan = (l.in_ch / l.groups * l.kernel * l.kernel) as f32;
        let shape = vec![l.out_ch, l.in_ch / l.groups, l.kernel, l.kernel];
        put(l.conv.clone(), shape, &mut || {
            (rng.next_f64() as f32 * 2.0 - 1.0) * 1.7 / fan.sqrt()
        });
        for (part, v) in [
            ("weight", 1.0),
            ("bias", 0.1),
            ("running_mean", 0.0),
            ("running_var", 1.0),
        ] {
            put(format!("{}.{part}", l.bn), vec![l.out_ch], &mut || v);
        }
    }
    let mut rng = SplitMix64::new(4);
    let se = spec.blocks.iter().filter_map(|b| b.se.as_ref());
    for l in se.flat_map(|se| [&se.reduce, &se.expand]) {
        for (key, shape) in [
            (&l.weight, vec![l.out_features, l.in_features, 1, 1]),
            (&l.bias, vec![l.out_features]),
        ] {
            put(key.clone(), shape, &mut || rng.next_f64() as f32 - 0.5);
        }
    }
    sd
}

/// A ResNet in miniature: stem (3→4, stride 2, ReLU, 3×3/2 max pool), a basic block with a
/// strided projection shortcut (4→6) and ReLU after the sum, and one without (6→6).
pub fn tiny_resnet() -> (NetSpec, StateDict) {
    let relu = |mut c: ConvBn| {
        c.act = c.act.map(|_| Act::Relu);
        c
    };
    let mut stem = Block::new(vec![relu(conv("stem", 3, 4, 3, 2, 1, true))], false);
    stem.max_pool = Some(graft_model::arch::MaxPool {
        kernel: 3,
        stride: 2,
        padding: 1,
    });
    let basic = |name: &str, i: usize, o: usize, stride: usize| Block {
        layers: vec![
            relu(conv(&format!("{name}.a"), i, o, 3, stride, 1, true)),
            conv(&format!("{name}.b"), o, o, 3, 1, 1, false),
        ],
        residual: true,
        projection: (i != o).then(|| conv(&format!("{name}.down"), i, o, 1, stride, 1, false)),
        post_act: Some(Act::Relu),
        max_pool: None,
        se: None,
    };
    net(
        EncoderKind::ResNet18,
        vec![stem, basic("l1", 4, 6, 2), basic("l2", 6, 6, 1)],
        1e-5,
    )
}

/// A MobileNetV3 / EfficientNet-B0 block in miniature: hard-swish and SiLU layers,
/// squeeze-and-excitation (ReLU inside, hard-sigmoid gate) after the depthwise layer.
pub fn tiny_se() -> (NetSpec, StateDict) {
    let with = |mut c: ConvBn, act: Act| {
        c.act = Some(act);
        c
    };
    let se = graft_model::arch::SqueezeExcite {
        after: 1,
        reduce: Linear {
            weight: "b1.se.fc1.weight".into(),
            bias: "b1.se.fc1.bias".into(),
            in_features: 8,
            out_features: 2,
        },
        expand: Linear {
            weight: "b1.se.fc2.weight".into(),
            bias: "b1.se.fc2.bias".into(),
            in_features: 2,
            out_features: 8,
        },
        act: Act::Relu,
        gate: graft_model::arch::Gate::HardSigmoid,
    };
    let mut block = Block::new(
        vec![
            with(conv("b1.expand", 4, 8, 1, 1, 1, true), Act::Hardswish),
            with(conv("b1.dw", 8, 8, 3, 1, 8, true), Act::Silu),
            conv("b1.project", 8, 4, 1, 1, 1, false),
        ],
        true,
    );
    block.se = Some(se);
    let blocks = vec![
        Block::new(
            vec![with(conv("stem", 3, 4, 3, 2, 1, true), Act::Hardswish)],
            false,
        ),
        block,
        Block::new(
            vec![with(conv("last", 4, 6, 1, 1, 1, true), Act::Silu)],
            false,
        ),
    ];
    net(EncoderKind::MobileNetV3Small, blocks, 1e-3)
}
