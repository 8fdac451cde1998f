//! The encoder family as an ONNX graph, built from the same [`NetSpec`] as every backend.

use super::graph::{Attr, Dim, Graph};
use super::OnnxError;
use crate::arch::{Act, Block, ConvBn, Gate, Linear, NetSpec, SqueezeExcite};
use crate::weights::StateDict;

/// What the exported graph offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Square input side; the spec's preprocessing size when `None`.
    pub input_size: Option<u32>,
    /// Add the pretrained ImageNet classifier as output "logits" (when the weights have one).
    pub logits: bool,
    /// Also output the last spatial map as "feature_map" (for attention-pool heads, Grad-CAM).
    pub feature_map: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            input_size: None,
            logits: true,
            feature_map: false,
        }
    }
}

/// An encoder graph still open for additions: outputs are declared, values are named, and a
/// later stage may append nodes (a head reading `features`) before [`Graph::to_model`].
#[derive(Debug)]
pub struct EncoderGraph {
    pub graph: Graph,
    /// "features", `[N, feature_dim]`.
    pub features: String,
    /// The last feature map `[N, feature_dim, h, h]` (declared as output only if asked).
    pub feature_map: String,
    pub feature_map_size: usize,
    pub logits: Option<String>,
    /// The file this graph extends (a user's encoder, see [`file_encoder_graph`]); `None`
    /// for graft's own, complete graph.
    pub extends: Option<Vec<u8>>,
}

impl EncoderGraph {
    /// The serialised model: graft's graph on its own, or appended to the file it extends.
    pub fn finish(&self, producer: &str, version: &str) -> Vec<u8> {
        match &self.extends {
            None => self.graph.to_model(producer, version),
            Some(base) => self.graph.append_to(base),
        }
    }
}

/// Where a later stage may change the encoder graph as it is built: at each activation a
/// convolution reads, and at each convolution's constants. The float graph ([`Float`]) changes
/// nothing; INT8 export (graft-export) inserts quantize/dequantize pairs and integer weights,
/// and its calibration declares the activations as outputs to observe their ranges. This is
/// the writer's only knowledge of quantization.
pub trait Marker {
    /// `x` (at place `key`: "input", "b3.l1" for block 3 layer 1 after its activation (and
    /// the block's pooling, if any), "b3.proj" for a projected shortcut, "b3.add" for a
    /// residual sum after its activation; shape `[N, c, h, w]`) is read next by a convolution
    /// or sum of block `next_block` (or, for the final map, comes from it). Returns the value
    /// the next layer reads.
    fn mark(
        &mut self,
        g: &mut Graph,
        x: String,
        key: &str,
        shape: [usize; 3],
        next_block: usize,
    ) -> Result<String, OnnxError>;

    /// The (weight, bias) values of `layer`'s convolution, BatchNorm folded in: `w` has
    /// `shape` `[out, in/groups, k, k]`; the convolution reads the value marked `input`.
    /// Float initializers unless a marker says otherwise.
    fn conv_params(
        &mut self,
        g: &mut Graph,
        layer: &ConvBn,
        input: &str,
        shape: &[usize],
        w: &[f32],
        b: &[f32],
    ) -> (String, String) {
        let _ = input;
        float_conv_params(g, layer, shape, w, b)
    }
}

/// float32 throughout: no marks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Float;

impl Marker for Float {
    fn mark(
        &mut self,
        _: &mut Graph,
        x: String,
        _: &str,
        _: [usize; 3],
        _: usize,
    ) -> Result<String, OnnxError> {
        Ok(x)
    }
}

/// `layer`'s folded convolution constants as float32 initializers.
pub fn float_conv_params(
    g: &mut Graph,
    layer: &ConvBn,
    shape: &[usize],
    w: &[f32],
    b: &[f32],
) -> (String, String) {
    (
        g.initializer(&format!("{}.folded", layer.conv), shape, w),
        g.initializer(&format!("{}.bias", layer.bn), &[b.len()], b),
    )
}

/// The batch dimension every graph input and output shares.
pub fn batch() -> Dim {
    Dim::Named("N".into())
}

/// Serialised ONNX model of the encoder: input "input" `[N,3,S,S]`, outputs "features",
/// optionally "logits" and "feature_map".
pub fn encoder_to_onnx(
    spec: &NetSpec,
    weights: &StateDict,
    opts: ExportOptions,
) -> Result<Vec<u8>, OnnxError> {
    let g = encoder_graph(spec, weights, opts)?;
    Ok(g.graph.to_model("graft", env!("CARGO_PKG_VERSION")))
}

pub fn encoder_graph(
    spec: &NetSpec,
    weights: &StateDict,
    opts: ExportOptions,
) -> Result<EncoderGraph, OnnxError> {
    encoder_graph_marked(spec, weights, opts, &mut Float)
}

/// [`encoder_graph`] with `marker` consulted at every activation and convolution.
pub fn encoder_graph_marked(
    spec: &NetSpec,
    weights: &StateDict,
    opts: ExportOptions,
    acts: &mut dyn Marker,
) -> Result<EncoderGraph, OnnxError> {
    let size = opts.input_size.unwrap_or(spec.preprocess.size) as usize;
    let mut g = Graph::new(spec.kind.name());
    let mut x = g.input(
        "input",
        &[batch(), Dim::Fixed(3), Dim::Fixed(size), Dim::Fixed(size)],
    );
    x = acts.mark(&mut g, x, "input", [3, size, size], 0)?;
    let mut w = Writer {
        g,
        acts,
        weights,
        eps: spec.bn_eps,
        size,
    };
    let mut s = size;
    let mut key = "input".to_string();
    let blocks = spec.blocks.len();
    for (bi, block) in spec.blocks.iter().enumerate() {
        let (block_in, block_key, block_s) = (x.clone(), key.clone(), s);
        let last_block = bi + 1 == blocks;
        for (li, layer) in block.layers.iter().enumerate() {
            (x, s) = w.conv(layer, x, &key, s, &format!("b{bi}.l{li}"))?;
            key = format!("b{bi}.l{li}");
            let last_layer = li + 1 == block.layers.len();
            if let (true, Some(p)) = (last_layer, block.max_pool) {
                x = w.g.node(
                    "MaxPool",
                    &[&x],
                    &format!("b{bi}.pool"),
                    &[
                        ("kernel_shape", Attr::Ints(vec![p.kernel as i64; 2])),
                        ("strides", Attr::Ints(vec![p.stride as i64; 2])),
                        ("pads", Attr::Ints(vec![p.padding as i64; 4])),
                    ],
                );
                s = p.output_size(s);
            }
            // The last layer's output goes on to the next block (through the residual sum, if any).
            // (The final map goes on to pooling, in float: its block decides alone.)
            let next = if !last_layer || block.residual || last_block {
                bi
            } else {
                bi + 1
            };
            x = w.acts.mark(&mut w.g, x, &key, [layer.out_ch, s, s], next)?;
            if let Some(se) = block.se.as_ref().filter(|se| se.after == li) {
                x = w.squeeze_excite(se, x, &format!("b{bi}.se"))?;
                key = format!("b{bi}.se");
                x = w.acts.mark(&mut w.g, x, &key, [layer.out_ch, s, s], bi)?;
            }
        }
        if block.residual {
            let shortcut = match &block.projection {
                Some(p) => {
                    let pk = format!("b{bi}.proj");
                    let (y, ps) = w.conv(p, block_in, &block_key, block_s, &pk)?;
                    w.acts.mark(&mut w.g, y, &pk, [p.out_ch, ps, ps], bi)?
                }
                None => block_in,
            };
            x =
                w.g.node("Add", &[&shortcut, &x], &format!("b{bi}.add"), &[]);
            x = w.activation(x, block.post_act, &format!("b{bi}.add"));
            let next = (bi + 1).min(blocks - 1);
            key = format!("b{bi}.add");
            x = w
                .acts
                .mark(&mut w.g, x, &key, [block.out_ch(), s, s], next)?;
        }
    }
    let mut g = w.g;
    let fd = spec.feature_dim;
    let feature_map = x;
    let pooled = g.node("GlobalAveragePool", &[&feature_map], "pooled", &[]);
    let features = g.node("Flatten", &[&pooled], "features", &[("axis", Attr::Int(1))]);
    check_name(&features, "features")?;
    g.output(&features, &[batch(), Dim::Fixed(fd)]);
    let logits = if let (true, Some(c)) = (opts.logits, &spec.classifier) {
        let mut x = features.clone();
        if let Some(h) = &spec.hidden {
            let (w, b) = linear(h, weights)?;
            let wn = g.initializer(&h.weight, &[h.out_features, h.in_features], w);
            let bn = g.initializer(&h.bias, &[h.out_features], b);
            x = gemm(&mut g, &x, &wn, &bn, "hidden");
            x = activation(&mut g, x, Some(Act::Hardswish), "hidden");
        }
        let (w, b) = linear(c, weights)?;
        let wn = g.initializer(&c.weight, &[c.out_features, c.in_features], w);
        let bn = g.initializer(&c.bias, &[c.out_features], b);
        let l = gemm(&mut g, &x, &wn, &bn, "logits");
        check_name(&l, "logits")?;
        g.output(&l, &[batch(), Dim::Fixed(c.out_features)]);
        Some(l)
    } else {
        None
    };
    if opts.feature_map {
        // A graph output must be a distinct value name; Identity gives it one.
        let fm = g.node("Identity", &[&feature_map], "feature_map", &[]);
        check_name(&fm, "feature_map")?;
        g.output(
            &fm,
            &[batch(), Dim::Fixed(fd), Dim::Fixed(s), Dim::Fixed(s)],
        );
    }
    Ok(EncoderGraph {
        graph: g,
        features,
        feature_map,
        feature_map_size: s,
        logits,
        extends: None,
    })
}

/// The marker key of block `index`'s output (see [`Marker::mark`]): its residual sum, else its
/// last layer.
pub fn block_output_key(block: &Block, index: usize) -> String {
    if block.residual {
        format!("b{index}.add")
    } else {
        format!("b{index}.l{}", block.layers.len().saturating_sub(1))
    }
}

/// The encoder writer's state between layers.
struct Writer<'a> {
    g: Graph,
    acts: &'a mut dyn Marker,
    weights: &'a StateDict,
    eps: f32,
    /// The graph's input side, for messages.
    size: usize,
}

impl Writer<'_> {
    /// `layer` (conv, folded BatchNorm, activation) on `x` (`s`×`s`, marked `input`), its
    /// nodes named from `name`; returns the output and its side.
    fn conv(
        &mut self,
        layer: &ConvBn,
        x: String,
        input: &str,
        s: usize,
        name: &str,
    ) -> Result<(String, usize), OnnxError> {
        let (before, after) = layer.padding.amounts(s, layer.kernel, layer.stride);
        if s + before + after < layer.kernel {
            return Err(OnnxError::Spec(format!(
                "input size {} is too small: `{}` sees {s}×{s}",
                self.size, layer.conv
            )));
        }
        let (w, b) = fold_bn(layer, self.weights, self.eps)?;
        let (wn, bn) = self
            .acts
            .conv_params(&mut self.g, layer, input, &w.0, &w.1, &b);
        let k = layer.kernel as i64;
        let (p0, p1) = (before as i64, after as i64);
        let y = self.g.node(
            "Conv",
            &[&x, &wn, &bn],
            &format!("{name}.conv"),
            &[
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![layer.stride as i64; 2])),
                ("pads", Attr::Ints(vec![p0, p0, p1, p1])),
                ("group", Attr::Int(layer.groups as i64)),
            ],
        );
        let out = (s + before + after - layer.kernel) / layer.stride + 1;
        Ok((self.activation(y, layer.act, name), out))
    }

    fn activation(&mut self, x: String, act: Option<Act>, name: &str) -> String {
        activation(&mut self.g, x, act, name)
    }

    /// Squeeze-and-excitation on `x` (`c` channels), its nodes named from `name`.
    fn squeeze_excite(
        &mut self,
        se: &SqueezeExcite,
        x: String,
        name: &str,
    ) -> Result<String, OnnxError> {
        let pointwise = |g: &mut Graph, l: &Linear, input: &str, part: &str| {
            let (o, i) = (l.out_features, l.in_features);
            let w = self.weights.require(&l.weight, &[o, i, 1, 1])?;
            let b = self.weights.require(&l.bias, &[o])?;
            let wn = g.initializer(&l.weight, &[o, i, 1, 1], &w.data);
            let bn = g.initializer(&l.bias, &[o], &b.data);
            Ok::<_, OnnxError>(g.node(
                "Conv",
                &[input, &wn, &bn],
                &format!("{name}.{part}"),
                &[("kernel_shape", Attr::Ints(vec![1, 1]))],
            ))
        };
        let pooled = self
            .g
            .node("GlobalAveragePool", &[&x], &format!("{name}.pool"), &[]);
        let s = pointwise(&mut self.g, &se.reduce, &pooled, "reduce")?;
        let s = activation(&mut self.g, s, Some(se.act), &format!("{name}.reduce"));
        let s = pointwise(&mut self.g, &se.expand, &s, "expand")?;
        let s = gate(&mut self.g, &s, se.gate, &format!("{name}.gate"));
        Ok(self.g.node("Mul", &[&x, &s], &format!("{name}.scale"), &[]))
    }
}

/// `act` on `x`, in opset 13's operators (it has no HardSwish or SiLU).
fn activation(g: &mut Graph, x: String, act: Option<Act>, name: &str) -> String {
    match act {
        None => x,
        Some(Act::Relu) => g.node("Relu", &[&x], &format!("{name}.relu"), &[]),
        Some(Act::Relu6) => {
            // Opset 11+ takes Clip's bounds as inputs; one pair serves every Clip.
            let lo = g.shared_initializer("relu6_min", &[], &[0.0]);
            let hi = g.shared_initializer("relu6_max", &[], &[6.0]);
            g.node("Clip", &[&x, &lo, &hi], &format!("{name}.relu6"), &[])
        }
        Some(Act::Silu) => {
            let s = gate(g, &x, Gate::Sigmoid, &format!("{name}.silu"));
            g.node("Mul", &[&x, &s], &format!("{name}.silu"), &[])
        }
        Some(Act::Hardswish) => {
            let s = gate(g, &x, Gate::HardSigmoid, &format!("{name}.hardswish"));
            g.node("Mul", &[&x, &s], &format!("{name}.hardswish"), &[])
        }
    }
}

fn gate(g: &mut Graph, x: &str, gate: Gate, name: &str) -> String {
    match gate {
        Gate::Sigmoid => g.node("Sigmoid", &[x], &format!("{name}.sigmoid"), &[]),
        Gate::HardSigmoid => g.node(
            "HardSigmoid",
            &[x],
            &format!("{name}.hardsigmoid"),
            &[
                ("alpha", Attr::Float(1.0 / 6.0)),
                ("beta", Attr::Float(0.5)),
            ],
        ),
    }
}

/// `y = x · Wᵀ + b` for `W` stored `[out, in]` like PyTorch's Linear.
pub fn gemm(g: &mut Graph, x: &str, w: &str, b: &str, out: &str) -> String {
    g.node("Gemm", &[x, w, b], out, &[("transB", Attr::Int(1))])
}

pub(super) fn check_name(got: &str, want: &str) -> Result<(), OnnxError> {
    if got == want {
        Ok(())
    } else {
        Err(OnnxError::Spec(format!(
            "output `{want}` clashes with a weight name"
        )))
    }
}

fn linear<'a>(c: &Linear, w: &'a StateDict) -> Result<(&'a [f32], &'a [f32]), OnnxError> {
    let wt = w.require(&c.weight, &[c.out_features, c.in_features])?;
    let bt = w.require(&c.bias, &[c.out_features])?;
    Ok((&wt.data, &bt.data))
}

type Folded = ((Vec<usize>, Vec<f32>), Vec<f32>);

/// Inference BatchNorm folded into the conv: w' = w·γ/√(var+eps), b' = β − mean·γ/√(var+eps).
pub fn fold_bn(l: &ConvBn, w: &StateDict, eps: f32) -> Result<Folded, OnnxError> {
    let shape = [l.out_ch, l.in_ch / l.groups, l.kernel, l.kernel];
    let conv = w.require(&l.conv, &shape)?;
    let get = |part: &str| w.require(&format!("{}.{part}", l.bn), &[l.out_ch]);
    let (gamma, beta) = (get("weight")?, get("bias")?);
    let (mean, var) = (get("running_mean")?, get("running_var")?);
    let per_out = shape[1] * shape[2] * shape[3];
    let mut wf = conv.data.clone();
    let mut bias = Vec::with_capacity(l.out_ch);
    for o in 0..l.out_ch {
        // f64 keeps the folded weights within an ulp of the unfused computation.
        let scale = f64::from(gamma.data[o]) / (f64::from(var.data[o]) + f64::from(eps)).sqrt();
        for v in &mut wf[o * per_out..(o + 1) * per_out] {
            *v = (f64::from(*v) * scale) as f32;
        }
        bias.push((f64::from(beta.data[o]) - f64::from(mean.data[o]) * scale) as f32);
    }
    Ok(((shape.to_vec(), wf), bias))
}
