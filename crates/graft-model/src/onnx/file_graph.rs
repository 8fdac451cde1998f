//! A user's ONNX encoder as the start of a graph graft extends ([`Graph::append_to`]): the
//! same names graft's own encoder graph gives ("features", and "feature_map" when asked), so
//! graft-export appends a head to either alike.

use super::export::check_name;
use super::{batch, read_model, Attr, Dim, EncoderGraph, Graph, OnnxError};
use crate::choice::OnnxEncoder;

/// The graph of `enc`'s file `bytes` with "features" `[N, channels]` (its pooled output, or
/// its map average-pooled) and, when `feature_map`, "feature_map" `[N, channels, s, s]` (`s`
/// the map's side, `map_side`) as outputs. The file's own outputs stay.
pub fn file_encoder_graph(
    enc: &OnnxEncoder,
    bytes: Vec<u8>,
    channels: usize,
    map_side: Option<usize>,
    feature_map: bool,
) -> Result<EncoderGraph, OnnxError> {
    let info = read_model(&bytes)?;
    let layout = enc
        .layout_of(&info)
        .map_err(|e| OnnxError::Spec(e.to_string()))?;
    let mut g = Graph::extending("graft", &info.names);
    let out = layout.output.clone();
    let (features, map, side) = if layout.pooled {
        if feature_map {
            return Err(OnnxError::Spec(format!(
                "{}'s output `{out}` is pooled features: there is no feature map to explain \
                 (train with --output naming a [N, C, H, W] output)",
                enc.onnx.display()
            )));
        }
        (out.clone(), out, 0)
    } else {
        let side = map_side.ok_or_else(|| {
            OnnxError::Spec(format!(
                "the side of {}'s feature map `{out}` is unknown",
                enc.onnx.display()
            ))
        })?;
        let pooled = g.node("GlobalAveragePool", &[&out], "graft.pooled", &[]);
        let f = g.node("Flatten", &[&pooled], "features", &[("axis", Attr::Int(1))]);
        (f, out, side)
    };
    if features != "features" {
        // A pooled output under another name: "features" is what graft's graphs give.
        let f = g.node("Identity", &[&features], "features", &[]);
        check_name(&f, "features")?;
    }
    if info.output("features").is_none() {
        g.output("features", &[batch(), Dim::Fixed(channels)]);
    }
    if feature_map {
        let fm = if map == "feature_map" {
            map.clone()
        } else {
            let fm = g.node("Identity", &[&map], "feature_map", &[]);
            check_name(&fm, "feature_map")?;
            fm
        };
        if info.output("feature_map").is_none() {
            g.output(
                &fm,
                &[
                    batch(),
                    Dim::Fixed(channels),
                    Dim::Fixed(side),
                    Dim::Fixed(side),
                ],
            );
        }
    }
    Ok(EncoderGraph {
        graph: g,
        features: "features".into(),
        feature_map: map,
        feature_map_size: side,
        logits: None,
        extends: Some(bytes),
    })
}
