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
use graft_model::onnx::{
    batch, encoder_graph, encoder_graph_marked, gemm, Attr, Dim, ExportOptions, Graph,
};
use graft_model::weights::StateDict;
use graft_train::data::Standardizer;
use graft_train::head::Layer;
use graft_train::HeadModel;

use crate::int8::Int8;
use crate::ExportError;

/// Name of the graph's probability output (`[N, classes]`); "features" (`[N, dim]`) stays an
/// output too, for monitoring drift.
pub const PROBABILITIES: &str = "probabilities";
/// The encoder's last feature map, in [`explainer_to_onnx`]'s graph.
pub const FEATURE_MAP: &str = "feature_map";

/// One dense layer in PyTorch's `[out, in]` layout.
struct Dense {
    out: usize,
    inp: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

/// `l` in PyTorch's layout, reading raw features when `standardise` is given (`W' = W / std`,
/// `b' = b − (mean / std)·W`) and with its outputs divided by `t`.
fn fold(l: &Layer, standardise: Option<&Standardizer>, t: f32) -> Dense {
    // Our layers are `rows (in) × cols (out)`, row-major.
    let mut w = vec![0.0f32; l.rows * l.cols];
    let mut b = l.b.clone();
    for r in 0..l.rows {
        let (scale, shift) = match standardise {
            Some(st) => (1.0 / st.std[r], st.mean[r] / st.std[r]),
            None => (1.0, 0.0),
        };
        for c in 0..l.cols {
            let v = l.w[r * l.cols + c];
            w[c * l.rows + r] = v * scale;
            b[c] -= shift * v;
        }
    }
    w.iter_mut().for_each(|v| *v /= t);
    b.iter_mut().for_each(|v| *v /= t);
    Dense {
        out: l.cols,
        inp: l.rows,
        w,
        b,
    }
}

/// The head's layers with standardisation (into the first) and temperature (into the last)
/// folded in.
fn folded_layers(model: &HeadModel) -> Vec<Dense> {
    let layers = &model.head.layers;
    let last = layers.len() - 1;
    layers
        .iter()
        .enumerate()
        .map(|(li, l)| {
            let st = (li == 0).then_some(&model.standardizer);
            let t = if li == last { model.temperature() } else { 1.0 };
            fold(l, st, t)
        })
        .collect()
}

/// Attention pooling over `map` (`[N, C, H, W]`) into logits, standardisation and temperature
/// folded in. Returns the logits' name.
fn attention_head(g: &mut Graph, map: &str, model: &HeadModel, locations: usize) -> String {
    let (q, out) = (&model.head.layers[0], &model.head.layers[1]);
    let c = out.rows;
    let st = &model.standardizer;
    // Scores: (q / σ) · x / √C per location; the −q·(μ/σ) term is the same at every location.
    let scale = 1.0 / (c as f32).sqrt();
    let query: Vec<f32> = (0..c).map(|ch| q.w[ch] / st.std[ch] * scale).collect();
    // The pooled vector is a weighted mean of raw locations: standardise it like a feature row.
    let d = fold(out, Some(st), model.temperature());
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
    let wn = g.initializer("head.out.weight", &[d.out, d.inp], &d.w);
    let bn = g.initializer("head.out.bias", &[d.out], &d.b);
    gemm(g, &pooled, &wn, &bn, "head.out")
}

/// Serialised ONNX model: input "input" `[N, 3, S, S]`, outputs "features" and "probabilities".
pub fn classifier_to_onnx(
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
) -> Result<Vec<u8>, ExportError> {
    classifier_to_onnx_in(spec, weights, model, None)
}

/// [`classifier_to_onnx`] with the encoder's convolutions in INT8 when `int8` is given (the
/// head, a few thousandths of the work, stays float).
pub fn classifier_to_onnx_in(
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
    int8: Option<Int8<'_>>,
) -> Result<Vec<u8>, ExportError> {
    classifier_graph(spec, weights, model, int8, false)
}

/// The float classifier with the encoder's last feature map as a third output,
/// [`FEATURE_MAP`] `[N, C, h, w]`: what Grad-CAM weighs, from the same run that gives the
/// probabilities it explains.
pub fn explainer_to_onnx(
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
) -> Result<Vec<u8>, ExportError> {
    classifier_graph(spec, weights, model, None, true)
}

fn classifier_graph(
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
    int8: Option<Int8<'_>>,
    feature_map: bool,
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
        feature_map,
    };
    let mut eg = match int8 {
        None => encoder_graph(spec, weights, opts)?,
        Some(q) => encoder_graph_marked(spec, weights, opts, &mut q.marker())?,
    };
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
    g.output(&probs, &[batch(), Dim::Fixed(model.meta.classes.len())]);
    Ok(g.to_model("graft", env!("CARGO_PKG_VERSION")))
}
