//! The whole classifier as one ONNX graph: image tensor in (the encoder's preprocessing is the
//! caller's job, as for every ONNX image model), class probabilities out.
//!
//! The head is appended to graft's own encoder graph with everything that happens between
//! feature row and probability folded into its weights: feature standardisation into the first
//! layer (`W' = W / std`, `b' = b − (mean / std)·W`) and the calibration temperature into the
//! last (`W / T`, `b / T`), so the graph is Gemm (+ Relu) + Softmax and nothing else. An
//! attention-pool head reads the encoder's last feature map instead: MatMul with its query,
//! Softmax over locations, MatMul back to a pooled vector, Gemm; standardisation folds into the
//! query (a per-image constant shift of all scores, which the softmax ignores) and the output
//! layer.

use graft_model::arch::NetSpec;
use graft_model::onnx::{encoder_graph_in, gemm, Attr, ExportOptions, Graph, OnnxError, Precision};
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
    #[error("the attention head was trained on maps of {head} locations but the {encoder} encoder gives {given} at this input size")]
    Locations {
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

/// Attention pooling over `map` (`[N, C, H, W]`) into logits, standardisation and temperature
/// folded in. Returns the logits' name.
fn attention_head(g: &mut Graph, map: &str, model: &HeadModel, locations: usize) -> String {
    let (q, out) = (&model.head.layers[0], &model.head.layers[1]);
    let (c, k) = (out.rows, out.cols);
    let st = &model.standardizer;
    let t = if model.meta.temperature > 0.0 {
        model.meta.temperature
    } else {
        1.0
    };
    // Scores: (q / σ) · x / √C per location; the −q·(μ/σ) term is the same at every location.
    let scale = 1.0 / (c as f32).sqrt();
    let query: Vec<f32> = (0..c).map(|ch| q.w[ch] / st.std[ch] * scale).collect();
    // Output layer on the raw pooled vector: W' = W / σ (rows), b' = b − (μ/σ)·W, then / T.
    let mut w = vec![0.0f32; c * k];
    let mut b = out.b.clone();
    for ch in 0..c {
        for j in 0..k {
            let v = out.w[ch * k + j];
            w[j * c + ch] = v / st.std[ch] / t;
            b[j] -= st.mean[ch] / st.std[ch] * v;
        }
    }
    b.iter_mut().for_each(|v| *v /= t);
    let shape = g.i64_initializer("head.map_shape", &[3], &[0, c as i64, locations as i64]);
    let maps = g.node("Reshape", &[map, &shape], "head.maps", &[]);
    let qn = g.initializer("head.query", &[1, c], &query);
    let scores = g.node("MatMul", &[&qn, &maps], "head.scores", &[]);
    let attn = g.node(
        "Softmax",
        &[&scores],
        "head.attention",
        &[("axis", Attr::Int(-1))],
    );
    let attn_t = g.node(
        "Transpose",
        &[&attn],
        "head.attention_t",
        &[("perm", Attr::Ints(vec![0, 2, 1]))],
    );
    let pooled = g.node("MatMul", &[&maps, &attn_t], "head.pooled3", &[]);
    let pooled = g.node(
        "Flatten",
        &[&pooled],
        "head.pooled",
        &[("axis", Attr::Int(1))],
    );
    let wn = g.initializer("head.out.weight", &[k, c], &w);
    let bn = g.initializer("head.out.bias", &[k], &b);
    gemm(g, &pooled, &wn, &bn, "head.out")
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
    let locations = eg.feature_map_size * eg.feature_map_size;
    let g = &mut eg.graph;
    let x = if model.meta.head.spatial() {
        if model.meta.locations != locations {
            return Err(ExportError::Locations {
                encoder: spec.kind.name().to_string(),
                head: model.meta.locations,
                given: locations,
            });
        }
        attention_head(g, &eg.feature_map, model, locations)
    } else {
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
        x
    };
    let probs = g.node("Softmax", &[&x], PROBABILITIES, &[("axis", Attr::Int(1))]);
    g.output(
        &probs,
        &[
            graft_model::onnx::Dim::Named("N".into()),
            graft_model::onnx::Dim::Fixed(model.meta.classes.len()),
        ],
    );
    Ok(g.to_model("graft", env!("CARGO_PKG_VERSION")))
}
