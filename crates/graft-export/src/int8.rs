//! INT8 in the encoder graph, through graft-model's [`Marker`] hook: the QDQ rewriting
//! ([`Int8::marker`]) and the calibration run that observes each activation's range first
//! ([`calibrate`]).

use std::collections::BTreeMap;

use graft_model::arch::{ConvBn, NetSpec};
use graft_model::onnx::{
    batch, encoder_graph_marked, float_conv_params, Dim, EncoderGraph, ExportOptions, Graph,
    Marker, OnnxError,
};
use graft_model::ort_backend::{run_images_outputs, session_from_onnx, OrtError, OrtOptions};
use graft_model::weights::StateDict;

use crate::quant::{fake_quant, quantized_conv_params, Calibration, QParams, WeightBits};
use crate::ExportError;

/// INT8 weights and activations (QDQ), activation ranges from `calibration`; the first
/// `float_blocks` blocks stay float (the full-resolution stem is both the cheapest to keep
/// and the layers whose rounding hurts accuracy most).
#[derive(Debug, Clone, Copy)]
pub struct Int8<'a> {
    pub calibration: &'a Calibration,
    pub float_blocks: usize,
    /// [`WeightBits::for_this_cpu`] unless a file is made for another CPU.
    pub weights: WeightBits,
}

impl<'a> Int8<'a> {
    /// The hook that quantizes the encoder graph as it is written.
    pub fn marker(self) -> QdqMarker<'a> {
        QdqMarker {
            int8: self,
            marked: BTreeMap::new(),
        }
    }

    /// The encoder graph of `spec` in INT8.
    pub fn encoder_graph(
        self,
        spec: &NetSpec,
        weights: &StateDict,
        opts: ExportOptions,
    ) -> Result<EncoderGraph, OnnxError> {
        encoder_graph_marked(spec, weights, opts, &mut self.marker())
    }
}

/// Inserts a quantize/dequantize pair at each activation an INT8 block reads and remembers its
/// scale, which the int32 bias of each convolution reading it is quantized at.
#[derive(Debug)]
pub struct QdqMarker<'a> {
    int8: Int8<'a>,
    /// The quantization of each marked place (`None`: left float).
    marked: BTreeMap<String, Option<QParams>>,
}

impl Marker for QdqMarker<'_> {
    fn mark(
        &mut self,
        g: &mut Graph,
        x: String,
        key: &str,
        _: [usize; 3],
        next_block: usize,
    ) -> Result<String, OnnxError> {
        if next_block < self.int8.float_blocks {
            self.marked.insert(key.to_string(), None);
            return Ok(x);
        }
        let (lo, hi) =
            self.int8.calibration.range(key).ok_or_else(|| {
                OnnxError::Spec(format!("the calibration has no range for `{key}`"))
            })?;
        let p = QParams::uint8(lo, hi);
        self.marked.insert(key.to_string(), Some(p));
        Ok(fake_quant(g, &x, key, p))
    }

    fn conv_params(
        &mut self,
        g: &mut Graph,
        layer: &ConvBn,
        input: &str,
        shape: &[usize],
        w: &[f32],
        b: &[f32],
    ) -> (String, String) {
        match self.marked.get(input).copied().flatten() {
            Some(input) => {
                quantized_conv_params(g, &layer.conv, shape, w, b, input.scale, self.int8.weights)
            }
            None => float_conv_params(g, layer, shape, w, b),
        }
    }
}

/// Declares every activation INT8 would quantize as a graph output, to observe its range.
#[derive(Debug, Default)]
struct Probe {
    /// (calibration key, graph output name).
    outputs: Vec<(String, String)>,
}

impl Marker for Probe {
    fn mark(
        &mut self,
        g: &mut Graph,
        x: String,
        key: &str,
        [c, h, w]: [usize; 3],
        _: usize,
    ) -> Result<String, OnnxError> {
        g.output(&x, &[batch(), Dim::Fixed(c), Dim::Fixed(h), Dim::Fixed(w)]);
        self.outputs.push((key.to_string(), x.clone()));
        Ok(x)
    }
}

/// Observe the range of every activation INT8 will quantize, running `n` preprocessed images
/// (`[n, 3, S, S]` at the spec's size) through the float encoder in batches of `batch`.
pub fn calibrate(
    spec: &NetSpec,
    weights: &StateDict,
    images: &[f32],
    n: usize,
    batch: usize,
    opts: OrtOptions,
) -> Result<Calibration, ExportError> {
    let export = ExportOptions {
        input_size: None,
        logits: false,
        feature_map: false,
    };
    let mut probe = Probe::default();
    let eg = encoder_graph_marked(spec, weights, export, &mut probe)?;
    let model = eg.graph.to_model("graft", env!("CARGO_PKG_VERSION"));
    let mut session = session_from_onnx(&model, opts)?;
    let size = spec.preprocess.size as usize;
    let per = 3 * size * size;
    graft_model::encoder::check_batch(images, n, size as u32)
        .map_err(|e| OrtError::Runtime(e.to_string()))?;
    let names: Vec<&str> = probe.outputs.iter().map(|(_, o)| o.as_str()).collect();
    let mut cal = Calibration::default();
    let mut start = 0;
    while start < n {
        let m = batch.max(1).min(n - start);
        let chunk = &images[start * per..(start + m) * per];
        let values = run_images_outputs(&mut session, chunk, m, size, &names)?;
        for ((key, _), v) in probe.outputs.iter().zip(&values) {
            cal.observe(key, v);
        }
        start += m;
    }
    cal.images = n;
    Ok(cal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_blocks_stay_float_and_int8_blocks_read_quantized_values() {
        let mut cal = Calibration::default();
        cal.observe("b1.l0", &[-1.0, 3.0]);
        let int8 = Int8 {
            calibration: &cal,
            float_blocks: 1,
            weights: WeightBits::Seven,
        };
        let mut m = int8.marker();
        let mut g = Graph::new("t");
        let x = g.input("input", &[batch(), Dim::Fixed(1)]);
        // Read by block 0, which stays float: no node, and the next conv is float.
        let same = m
            .mark(&mut g, x.clone(), "input", [1, 1, 1], 0)
            .expect("mark");
        assert_eq!(same, x);
        assert_eq!(m.marked.get("input"), Some(&None));
        // Read by block 1: a quantize/dequantize pair at the calibrated range's scale.
        let dq = m.mark(&mut g, x, "b1.l0", [1, 1, 1], 1).expect("mark");
        assert_eq!(dq, "b1.l0.dq");
        assert_eq!(
            m.marked.get("b1.l0"),
            Some(&Some(QParams::uint8(-1.0, 3.0)))
        );
        // A place the calibration never saw is an error naming it.
        let err = m
            .mark(&mut g, "y".into(), "b2.l0", [1, 1, 1], 2)
            .expect_err("no range");
        assert!(err.to_string().contains("`b2.l0`"), "{err}");
    }
}
