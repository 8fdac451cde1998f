//! The model-randomisation test of Adebayo et al. (2018), cascading: the same method's map is
//! made again from models whose weights are drawn at random from the top down — the head, then
//! also the encoder's last block, the last two, the last three — and compared with the real map
//! by rank correlation. A map that stays the same is not explaining what the model learned.

use graft_data::rng::SplitMix64;
use graft_model::arch::NetSpec;
use graft_model::ort_backend::{session_from_onnx, OrtOptions, Session};
use graft_model::weights::StateDict;
use graft_train::HeadModel;

use super::layer::LayerGrad;
use crate::RunError;

/// Encoder blocks randomised at the cascade's deepest step.
pub const CASCADE_BLOCKS: usize = 3;

/// The randomised models, built once per `graft explain --sanity`.
pub(super) struct Sanity {
    /// The run's head shape with weights drawn at random (every step uses it).
    pub head: HeadModel,
    /// Encoder steps, one more block at random each.
    pub steps: Vec<Step>,
}

/// One step of the cascade below the head.
pub(super) struct Step {
    /// The randomised blocks, as a record names them ("head, blocks 17–18").
    pub name: String,
    pub engine: Engine,
}

/// Where a step's map comes from.
pub(super) enum Engine {
    /// The whole classifier with the randomised blocks, on ONNX Runtime: its last map.
    Last(Session),
    /// The blocks above `--layer`, randomised, on burn: the gradient at the real block map.
    Layer(Box<LayerGrad>),
}

impl Sanity {
    /// The head and up to [`CASCADE_BLOCKS`] top blocks (above `layer`, when one is given) of
    /// `spec` drawn at random.
    pub fn new(
        spec: &NetSpec,
        weights: &StateDict,
        model: &HeadModel,
        layer: Option<usize>,
        opts: OrtOptions,
    ) -> Result<Sanity, RunError> {
        let head = randomised_head(model);
        let last = spec.blocks.len().saturating_sub(1);
        let lowest = layer.map_or(0, |b| b + 1);
        let mut steps = Vec::new();
        for k in 1..=CASCADE_BLOCKS {
            let Some(from) = (last + 1).checked_sub(k).filter(|&f| f >= lowest) else {
                break;
            };
            let random = randomised_blocks(spec, weights, from, 0xB10C ^ k as u64);
            let name = if from == last {
                format!("head, block {last}")
            } else {
                format!("head, blocks {from}–{last}")
            };
            let engine = match layer {
                Some(b) => Engine::Layer(Box::new(LayerGrad::new(spec, &random, b)?)),
                None => {
                    let bytes = graft_export::explainer_to_onnx(spec, &random, &head, None)?;
                    Engine::Last(session_from_onnx(&bytes, opts)?)
                }
            };
            steps.push(Step { name, engine });
        }
        Ok(Sanity { head, steps })
    }
}

impl Sanity {
    /// The head alone drawn at random: the cascade of an encoder graft cannot re-draw (a
    /// user's ONNX file).
    pub fn head_only(model: &HeadModel) -> Sanity {
        Sanity {
            head: randomised_head(model),
            steps: Vec::new(),
        }
    }
}

/// The model with a head of the same shape drawn at random (fixed seed): the cascade's first
/// step, the layer nearest the output.
pub(super) fn randomised_head(model: &HeadModel) -> HeadModel {
    let mut rng = SplitMix64::new(0x5A17_C0DE);
    let mut random = model.clone();
    random.head = graft_train::Head::new(
        model.meta.head,
        model
            .head
            .layers
            .first()
            .map_or(model.meta.feature_dim, |l| l.rows),
        model.meta.classes.len(),
        &mut rng,
    );
    random
}

/// `weights` with every convolution (squeeze-and-excitation's too) of blocks `from..` drawn again, uniform in ±√(6 / fan-in)
/// (He et al.'s initialisation; the BatchNorms stay as trained).
pub(super) fn randomised_blocks(
    spec: &NetSpec,
    weights: &StateDict,
    from: usize,
    seed: u64,
) -> StateDict {
    let mut out = weights.clone();
    let mut rng = SplitMix64::new(seed);
    let convs = spec.blocks.iter().skip(from).flat_map(|b| {
        let se =
            b.se.iter()
                .flat_map(|se| [&se.reduce.weight, &se.expand.weight]);
        b.convs().map(|l| &l.conv).chain(se)
    });
    for key in convs {
        let Some(t) = weights.get(key) else {
            continue;
        };
        let mut t = t.clone();
        let fan_in = t.numel() / t.shape.first().copied().unwrap_or(1).max(1);
        let bound = (6.0 / fan_in.max(1) as f64).sqrt();
        for v in &mut t.data {
            *v = ((rng.next_f64() * 2.0 - 1.0) * bound) as f32;
        }
        out.insert(key.clone(), t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use graft_model::arch::{Block, ConvBn, EncoderKind, Linear, Padding};
    use graft_model::weights::{DType, Tensor};

    fn conv(name: &str, out_ch: usize, in_ch: usize) -> ConvBn {
        ConvBn {
            conv: format!("{name}.weight"),
            bn: format!("{name}.bn"),
            in_ch,
            out_ch,
            kernel: 1,
            stride: 1,
            groups: 1,
            padding: Padding::Symmetric(0),
            act: None,
        }
    }

    #[test]
    fn only_the_blocks_from_the_cut_change() {
        let layers = [conv("b0", 4, 3), conv("b1", 4, 4), conv("b2", 8, 4)];
        let mut w = StateDict::new("test");
        for l in &layers {
            w.insert(
                l.conv.clone(),
                Tensor {
                    shape: vec![l.out_ch, l.in_ch, 1, 1],
                    data: vec![0.5; l.out_ch * l.in_ch],
                    dtype: DType::F32,
                },
            );
        }
        let spec = NetSpec {
            kind: EncoderKind::MobileNetV2,
            blocks: layers
                .iter()
                .map(|l| Block::new(vec![l.clone()], false))
                .collect(),
            feature_dim: 8,
            hidden: None,
            classifier: Some(Linear {
                weight: "fc.weight".into(),
                bias: "fc.bias".into(),
                in_features: 8,
                out_features: 2,
            }),
            bn_eps: 1e-5,
            preprocess: graft_data::preprocess::Preprocess {
                size: 8,
                resize_shorter: 8,
                mean: [0.5; 3],
                std: [0.25; 3],
                filter: Default::default(),
            },
        };
        let r = randomised_blocks(&spec, &w, 1, 7);
        assert_eq!(r.get("b0.weight"), w.get("b0.weight"));
        for name in ["b1.weight", "b2.weight"] {
            let t = r.get(name).expect(name);
            assert_ne!(Some(t), w.get(name));
            let bound = (6.0f32 / 4.0).sqrt();
            assert!(t.data.iter().all(|v| v.abs() <= bound), "{name}");
        }
        // Same seed, same draw.
        assert_eq!(
            randomised_blocks(&spec, &w, 1, 7).get("b2.weight"),
            r.get("b2.weight")
        );
    }
}
