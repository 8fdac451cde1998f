//! The whole classifier as one ONNX graph: image tensor in (the encoder's preprocessing is the
//! caller's job, as for every ONNX image model), class probabilities out.
//!
//! The head is appended to graft's own encoder graph with everything that happens between
//! feature row and probability folded into its weights: feature standardisation into the first
//! layer (`W' = W / std`, `b' = b − (mean / std)·W`) and the calibration temperature into the
//! last (`W / T`, `b / T`), so the graph is Gemm (+ Relu) + Softmax and nothing else.

use graft_model::arch::NetSpec;
use graft_model::onnx::{encoder_graph_in, gemm, ExportOptions, OnnxError, Precision};
use graft_model::weights::StateDict;
use graft_train::HeadModel;

/// Name of the graph's probability output (`[N, classes]`); "features" (`[N, dim]`) stays an
/// output too, for monitoring drift.
pub const PROBABILITIES: &str = "probabilities";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    #[error("the head reads {head} features but the {encoder} encoder gives {given}")]
    Mismatch {
        encoder: String,
        head: usize,
        given: usize,
    },
}

/// One dense layer in PyTorch's `[out, in]` layout.
struct Dense {
    out: usize,
    inp: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// The head's layers with standardisation and temperature folded in.
fn folded_layers(model: &HeadModel) -> Vec<Dense> {
    let layers = &model.head.layers;
    let last = layers.len() - 1;
    let t = if model.meta.temperature > 0.0 {
        model.meta.temperature
    } else {
        1.0
    };
    layers
        .iter()
        .enumerate()
        .map(|(li, l)| {
            // Our layers are `rows (in) × cols (out)`, row-major.
            let mut w = vec![0.0f32; l.rows * l.cols];
            let mut b = l.b.clone();
            for r in 0..l.rows {
                let (scale, shift) = if li == 0 {
                    let s = model.standardizer.std[r];
                    (1.0 / s, model.standardizer.mean[r] / s)
                } else {
                    (1.0, 0.0)
                };
                for c in 0..l.cols {
                    let v = l.w[r * l.cols + c];
                    w[c * l.rows + r] = v * scale;
                    b[c] -= shift * v;
                }
            }
            if li == last {
                w.iter_mut().for_each(|v| *v /= t);
                b.iter_mut().for_each(|v| *v /= t);
            }
            Dense {
                out: l.cols,
                inp: l.rows,
                w,
                b,
            }
        })
        .collect()
}

/// Serialised ONNX model: input "input" `[N, 3, S, S]`, outputs "features" and "probabilities".
pub fn classifier_to_onnx(
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
) -> Result<Vec<u8>, ExportError> {
    classifier_to_onnx_in(spec, weights, model, Precision::Float)
}

/// [`classifier_to_onnx`] with the encoder's convolutions in `precision` (the head, a few
/// thousandths of the work, stays float).
pub fn classifier_to_onnx_in(
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
    precision: Precision<'_>,
) -> Result<Vec<u8>, ExportError> {
    if spec.feature_dim != model.meta.feature_dim {
        return Err(ExportError::Mismatch {
            encoder: spec.kind.name().to_string(),
            head: model.meta.feature_dim,
            given: spec.feature_dim,
        });
    }
    let opts = ExportOptions {
        input_size: None,
        logits: false,
        feature_map: false,
    };
    let mut eg = encoder_graph_in(spec, weights, opts, precision)?;
    let g = &mut eg.graph;
    let mut x = eg.features.clone();
    let layers = folded_layers(model);
    let count = layers.len();
    for (i, d) in layers.into_iter().enumerate() {
        let w = g.initializer(&format!("head.{i}.weight"), &[d.out, d.inp], &d.w);
        let b = g.initializer(&format!("head.{i}.bias"), &[d.out], &d.b);
        x = gemm(g, &x, &w, &b, &format!("head.{i}.out"));
        if i + 1 < count {
            x = g.node("Relu", &[&x], &format!("head.{i}.relu"), &[]);
        }
    }
    let probs = g.node(
        "Softmax",
        &[&x],
        PROBABILITIES,
        &[("axis", graft_model::onnx::Attr::Int(1))],
    );
    g.output(
        &probs,
        &[
            graft_model::onnx::Dim::Named("N".into()),
            graft_model::onnx::Dim::Fixed(model.meta.classes.len()),
        ],
    );
    Ok(g.to_model("graft", env!("CARGO_PKG_VERSION")))
}
