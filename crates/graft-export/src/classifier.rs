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
    batch, encoder_graph, encoder_graph_marked, gemm, Attr, Dim, ExportOptions, Graph, Marker,
    OnnxError,
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
/// [`grad_cam_to_onnx`]'s map output, `[N, classes, h, w]`: each class's Grad-CAM map.
pub const CAMS: &str = "cams";

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
/// folded in. Returns the logits' name and the attention's (`[N, 1, locations]`).
fn attention_head(
    g: &mut Graph,
    map: &str,
    model: &HeadModel,
    locations: usize,
) -> (String, String) {
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
    (gemm(g, &pooled, &wn, &bn, "head.out"), attn)
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
    match int8 {
        None => classifier_graph(spec, weights, model, None, ClassifierGraph::Probabilities),
        Some(q) => classifier_graph(
            spec,
            weights,
            model,
            Some(&mut q.marker()),
            ClassifierGraph::Probabilities,
        ),
    }
}

/// The float classifier with the encoder's last feature map as a third output,
/// [`FEATURE_MAP`] `[N, C, h, w]`: what Grad-CAM weighs, from the same run that gives the
/// probabilities it explains. With `block`, that block's output is a fourth, [`BLOCK_MAP`]
/// (what Grad-CAM at an earlier layer weighs; only the blocks above it then need a backward).
pub fn explainer_to_onnx(
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
    block: Option<usize>,
) -> Result<Vec<u8>, ExportError> {
    let Some(b) = block else {
        return classifier_graph(spec, weights, model, None, ClassifierGraph::FeatureMap);
    };
    let Some(block) = spec.blocks.get(b) else {
        return Err(ExportError::Onnx(OnnxError::Spec(format!(
            "{} has no block {b}",
            spec.kind.name()
        ))));
    };
    let key = graft_model::onnx::block_output_key(block, b);
    let mut tap = BlockTap { key, found: false };
    let bytes = classifier_graph(
        spec,
        weights,
        model,
        Some(&mut tap),
        ClassifierGraph::FeatureMap,
    )?;
    if !tap.found {
        return Err(ExportError::Onnx(OnnxError::Spec(format!(
            "block {b}'s output `{}` is not in the graph",
            tap.key
        ))));
    }
    Ok(bytes)
}

/// The output of block `B` in [`explainer_to_onnx`]'s graph, `[N, c, h, w]`.
pub const BLOCK_MAP: &str = "block_map";

/// Declares one block's output (the writer's key for it) as the graph output [`BLOCK_MAP`].
struct BlockTap {
    key: String,
    found: bool,
}

impl Marker for BlockTap {
    fn mark(
        &mut self,
        g: &mut Graph,
        x: String,
        key: &str,
        [c, h, w]: [usize; 3],
        _: usize,
    ) -> Result<String, OnnxError> {
        if key == self.key && !self.found {
            self.found = true;
            let out = g.node("Identity", &[&x], BLOCK_MAP, &[]);
            if out != BLOCK_MAP {
                return Err(OnnxError::Spec(format!(
                    "output `{BLOCK_MAP}` clashes with a weight name"
                )));
            }
            g.output(
                &out,
                &[batch(), Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(w)],
            );
        }
        Ok(x)
    }
}

/// The float classifier with Grad-CAM at the last feature map inside the graph, for a service
/// that has ONNX Runtime and nothing else: input "input", outputs "features", "probabilities"
/// and [`CAMS`] `[N, classes, h, w]`. Class `c`'s map is `relu(Σ_k w_k·(A_k − μ_k))`, `A` the
/// map, `μ` the standardiser's training mean and `w` the gradient, averaged over the locations,
/// of logit `c` less the mean logit: the map graft explain draws (graft-explain's
/// `class_activation(GradCam, …)` on graft-train's `logit_gradient` and `centred`). The head's
/// backward is a few MatMuls, for every class at once (a pooled head on a frozen encoder needs
/// no encoder backward, and the ReLU masks are the same for every class); an attention head
/// gives its attention over the map for every class.
pub fn grad_cam_to_onnx(
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
) -> Result<Vec<u8>, ExportError> {
    classifier_graph(spec, weights, model, None, ClassifierGraph::GradCam)
}

/// Grad-CAM for every class over `map` (`[N, C, h, w]`): the centred class targets back
/// through the dense layers `(weight, pre-activation of the layer's input)` (`None` for the
/// first, which reads the pooled features), then weighed channels summed. Returns
/// `[N, classes, locations]`.
fn grad_cam(
    g: &mut Graph,
    map: &str,
    layers: &[(String, Option<String>)],
    mean: &[f32],
    classes: usize,
    locations: usize,
) -> String {
    // Row c: one-hot c less 1/K (what the softmax sees of class c), over the locations (the
    // pooled features are the map's mean, and Grad-CAM averages the gradient over it).
    let per = 1.0 / locations as f32;
    let targets: Vec<f32> = (0..classes * classes)
        .map(|i| (f32::from(i / classes == i % classes) - 1.0 / classes as f32) * per)
        .collect();
    let mut grad = g.initializer("cam.targets", &[classes, classes], &targets);
    let zero = g.initializer("cam.zero", &[], &[0.0]);
    let axis1 = g.i64_initializer("cam.axis1", &[1], &[1]);
    for (i, (w, pre)) in layers.iter().enumerate().rev() {
        // Gemm computes x·Wᵀ + b, so the gradient with respect to x is grad·W.
        grad = g.node("MatMul", &[&grad, w], &format!("cam.grad{i}"), &[]);
        if let Some(z) = pre {
            // `[N, 1, in]`: the image's ReLU mask, the same for every class's row.
            let on = g.node("Greater", &[z, &zero], &format!("cam.on{i}"), &[]);
            let on = g.node(
                "Cast",
                &[&on],
                &format!("cam.mask{i}"),
                &[("to", Attr::Int(1))],
            );
            let on = g.node(
                "Unsqueeze",
                &[&on, &axis1],
                &format!("cam.mask{i}.rows"),
                &[],
            );
            grad = g.node("Mul", &[&grad, &on], &format!("cam.grad{i}.relu"), &[]);
        }
    }
    let channels = mean.len();
    let shape = g.i64_initializer(
        "cam.map_shape",
        &[3],
        &[0, channels as i64, locations as i64],
    );
    let maps = g.node("Reshape", &[map, &shape], "cam.maps", &[]);
    // Σ_k w_k·(A_k − μ_k) = (w·A) − (w·μ).
    let weighed = g.node("MatMul", &[&grad, &maps], "cam.weighed", &[]);
    let mu = g.initializer("cam.mean", &[channels, 1], mean);
    let shift = g.node("MatMul", &[&grad, &mu], "cam.shift", &[]);
    let sum = g.node("Sub", &[&weighed, &shift], "cam.sum", &[]);
    g.node("Relu", &[&sum], "cam.relu", &[])
}

fn classifier_graph(
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
    marker: Option<&mut dyn Marker>,
    extra: ClassifierGraph,
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
        feature_map: extra == ClassifierGraph::FeatureMap,
    };
    let eg = match marker {
        None => encoder_graph(spec, weights, opts)?,
        Some(m) => encoder_graph_marked(spec, weights, opts, m)?,
    };
    head_graph(eg, spec.kind.name(), model, extra)
}

/// What a classifier graph gives besides "features" and "probabilities".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassifierGraph {
    /// Nothing more: [`classifier_to_onnx`]'s graph.
    Probabilities,
    /// The last feature map, [`FEATURE_MAP`]: [`explainer_to_onnx`]'s graph at the last map.
    FeatureMap,
    /// Every class's Grad-CAM map, [`CAMS`]: [`grad_cam_to_onnx`]'s graph.
    GradCam,
}

/// The classifier over a user's ONNX encoder (`enc`, its file `bytes`): graft's head nodes
/// appended to the file's own graph, which stays byte for byte. `map_side` is the side of
/// the file's feature map (`None` when it gives pooled features).
pub fn file_classifier_to_onnx(
    enc: &graft_model::OnnxEncoder,
    bytes: Vec<u8>,
    map_side: Option<usize>,
    model: &HeadModel,
    extra: ClassifierGraph,
) -> Result<Vec<u8>, ExportError> {
    let needs_map = extra != ClassifierGraph::Probabilities || model.meta.head.spatial();
    let eg = graft_model::onnx::file_encoder_graph(
        enc,
        bytes,
        model.meta.feature_dim,
        map_side,
        extra == ClassifierGraph::FeatureMap,
    )?;
    if needs_map && map_side.is_none() {
        return Err(ExportError::Onnx(OnnxError::Spec(format!(
            "{} gives pooled features, not a feature map: {} needs the map (train with \
             --output naming a [N, C, H, W] output)",
            enc.onnx.display(),
            if extra == ClassifierGraph::Probabilities {
                "an attention head"
            } else {
                "Grad-CAM"
            }
        ))));
    }
    head_graph(eg, &enc.stem(), model, extra)
}

/// The head, and what `extra` asks for, appended to the encoder graph `eg`.
fn head_graph(
    mut eg: graft_model::onnx::EncoderGraph,
    encoder: &str,
    model: &HeadModel,
    extra: ClassifierGraph,
) -> Result<Vec<u8>, ExportError> {
    let side = eg.feature_map_size;
    let locations = side * side;
    let g = &mut eg.graph;
    let classes = model.meta.classes.len();
    let cams = extra == ClassifierGraph::GradCam;
    let (x, cam) = if model.meta.head.spatial() {
        if model.meta.locations != locations {
            return Err(ExportError::Locations {
                encoder: encoder.to_string(),
                head: model.meta.locations,
                given: locations,
            });
        }
        let (logits, attention) = attention_head(g, &eg.feature_map, model, locations);
        // `[N, 1, L]`, the same map whatever the class.
        let cam = cams.then(|| {
            let shape = g.i64_initializer("cam.expand", &[3], &[1, classes as i64, 1]);
            g.node("Expand", &[&attention, &shape], "cam.attention", &[])
        });
        (logits, cam)
    } else {
        let mut x = eg.features.clone();
        let layers = folded_layers(model);
        let count = layers.len();
        // Each layer's weight and the pre-activation its input came from, for the backward.
        let mut backward = Vec::with_capacity(count);
        let mut pre = None;
        for (i, d) in layers.into_iter().enumerate() {
            let w = g.initializer(&format!("head.{i}.weight"), &[d.out, d.inp], &d.w);
            let b = g.initializer(&format!("head.{i}.bias"), &[d.out], &d.b);
            backward.push((w.clone(), pre.take()));
            x = gemm(g, &x, &w, &b, &format!("head.{i}.out"));
            if i + 1 < count {
                pre = Some(x.clone());
                x = g.node("Relu", &[&x], &format!("head.{i}.relu"), &[]);
            }
        }
        let cam = cams.then(|| {
            let mean = &model.standardizer.mean;
            grad_cam(g, &eg.feature_map, &backward, mean, classes, locations)
        });
        (x, cam)
    };
    let probs = g.node("Softmax", &[&x], PROBABILITIES, &[("axis", Attr::Int(1))]);
    g.output(&probs, &[batch(), Dim::Fixed(classes)]);
    if let Some(cam) = cam {
        let shape = g.i64_initializer(
            "cam.shape",
            &[4],
            &[0, classes as i64, side as i64, side as i64],
        );
        let out = g.node("Reshape", &[&cam, &shape], CAMS, &[]);
        if out != CAMS {
            return Err(ExportError::Onnx(graft_model::onnx::OnnxError::Spec(
                format!("output `{CAMS}` clashes with a weight name"),
            )));
        }
        g.output(
            &out,
            &[
                batch(),
                Dim::Fixed(classes),
                Dim::Fixed(side),
                Dim::Fixed(side),
            ],
        );
    }
    Ok(eg.finish("graft", env!("CARGO_PKG_VERSION")))
}
