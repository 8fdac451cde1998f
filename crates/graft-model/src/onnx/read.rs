//! What graft needs to know of an ONNX file it did not write: its inputs and outputs (names,
//! element types, shapes), its opsets and every value name, so that nodes can be added to it
//! ([`Graph::append_to`]) without a clash. Only those fields are read; the rest of the file
//! (weights, nodes) is left as bytes.

use std::collections::HashSet;

use super::graph::{Dim, Graph};
use super::proto::{fields, Value};
use super::OnnxError;

/// A graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueInfo {
    pub name: String,
    /// `TensorProto.DataType` (1 = float); 0 when the file does not say.
    pub elem_type: i64,
    /// `None` when the file gives no shape.
    pub dims: Option<Vec<Dim>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelInfo {
    pub ir_version: i64,
    /// (domain, version); "" is the default domain.
    pub opsets: Vec<(String, i64)>,
    /// Inputs the caller feeds (initializers listed as inputs by old files left out).
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    /// Every value name in the graph: inputs, initializers and node outputs.
    pub names: HashSet<String>,
}

impl ModelInfo {
    /// The default domain's opset version (0 when absent).
    pub fn opset(&self) -> i64 {
        self.opsets
            .iter()
            .find(|(d, _)| d.is_empty() || d == "ai.onnx")
            .map_or(0, |(_, v)| *v)
    }

    pub fn output(&self, name: &str) -> Option<&ValueInfo> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// `dims` as people read a shape: `[N, 3, 224, 224]`, a dimension the file leaves unnamed as
/// `?`.
pub fn shape_text(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Fixed(v) => v.to_string(),
            Dim::Named(p) if p.is_empty() => "?".into(),
            Dim::Named(p) => p.clone(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn bad(detail: impl std::fmt::Display) -> OnnxError {
    OnnxError::Read(detail.to_string())
}

fn text(v: Value<'_>, what: &str) -> Result<String, OnnxError> {
    match v {
        Value::Len(b) => {
            String::from_utf8(b.to_vec()).map_err(|_| bad(format!("{what} is not UTF-8")))
        }
        _ => Err(bad(format!("{what} is not a string"))),
    }
}

fn message<'a>(v: Value<'a>, what: &str) -> Result<&'a [u8], OnnxError> {
    match v {
        Value::Len(b) => Ok(b),
        _ => Err(bad(format!("{what} is not a message"))),
    }
}

fn int(v: Value<'_>) -> i64 {
    match v {
        Value::Varint(x) | Value::Fixed64(x) => x as i64,
        Value::Fixed32(x) => i64::from(x),
        Value::Len(_) => 0,
    }
}

/// The fields of the embedded message `v`.
fn sub_fields<'a>(v: Value<'a>, what: &str) -> Result<Vec<(u32, Value<'a>)>, OnnxError> {
    fields(message(v, what)?).map_err(bad)
}

/// TensorShapeProto.Dimension: dim_value (1) | dim_param (2).
fn dim(v: Value<'_>) -> Result<Dim, OnnxError> {
    let mut dim = Dim::Named(String::new());
    for (f, v) in sub_fields(v, "a dim")? {
        match f {
            1 => dim = Dim::Fixed(int(v).max(0) as usize),
            2 => dim = Dim::Named(text(v, "a dim name")?),
            _ => {}
        }
    }
    Ok(dim)
}

/// TypeProto.Tensor: elem_type (1), shape (2) → dim (1).
fn tensor_type(v: Value<'_>, info: &mut ValueInfo) -> Result<(), OnnxError> {
    for (f, v) in sub_fields(v, "a tensor type")? {
        match f {
            1 => info.elem_type = int(v),
            2 => {
                let dims = sub_fields(v, "a shape")?
                    .into_iter()
                    .filter(|(f, _)| *f == 1);
                info.dims = Some(dims.map(|(_, d)| dim(d)).collect::<Result<_, _>>()?);
            }
            _ => {}
        }
    }
    Ok(())
}

/// ValueInfoProto: name (1), type (2) → TypeProto.tensor_type (1); other types (sequences,
/// maps) are left without element type or shape.
fn value_info(buf: &[u8]) -> Result<ValueInfo, OnnxError> {
    let mut info = ValueInfo {
        name: String::new(),
        elem_type: 0,
        dims: None,
    };
    for (f, v) in fields(buf).map_err(bad)? {
        match f {
            1 => info.name = text(v, "a value's name")?,
            2 => {
                for (tf, tv) in sub_fields(v, "a type")? {
                    if tf == 1 {
                        tensor_type(tv, &mut info)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// The inputs, outputs, opsets and value names of the ONNX model `bytes`.
pub fn read_model(bytes: &[u8]) -> Result<ModelInfo, OnnxError> {
    let mut info = ModelInfo::default();
    // A message field given twice is merged (see [`Graph::append_to`]): read every part.
    let mut parts = Vec::new();
    for (f, v) in fields(bytes).map_err(bad)? {
        match f {
            1 => info.ir_version = int(v),
            7 => parts.push(message(v, "the graph")?),
            8 => {
                let (mut domain, mut version) = (String::new(), 0);
                for (of, ov) in sub_fields(v, "an opset")? {
                    match of {
                        1 => domain = text(ov, "an opset domain")?,
                        2 => version = int(ov),
                        _ => {}
                    }
                }
                info.opsets.push((domain, version));
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        return Err(bad("no graph in the file: not an ONNX model"));
    }
    let mut inputs = Vec::new();
    let mut initializers = HashSet::new();
    let graph_fields = parts
        .into_iter()
        .map(fields)
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    for (f, v) in graph_fields.into_iter().flatten() {
        match f {
            // NodeProto: output (2).
            1 => {
                for (nf, nv) in sub_fields(v, "a node")? {
                    if nf == 2 {
                        info.names.insert(text(nv, "a node output")?);
                    }
                }
            }
            // TensorProto: name (8).
            5 => {
                for (tf, tv) in sub_fields(v, "an initializer")? {
                    if tf == 8 {
                        initializers.insert(text(tv, "an initializer's name")?);
                    }
                }
            }
            11 => inputs.push(value_info(message(v, "an input")?)?),
            12 => info.outputs.push(value_info(message(v, "an output")?)?),
            _ => {}
        }
    }
    info.names.extend(inputs.iter().map(|i| i.name.clone()));
    info.names.extend(initializers.iter().cloned());
    info.inputs = inputs
        .into_iter()
        .filter(|i| !initializers.contains(&i.name))
        .collect();
    Ok(info)
}

impl Graph {
    /// A graph whose value names will not clash with `existing` (a file's, from
    /// [`read_model`]), to be added to that file with [`Graph::append_to`].
    pub fn extending(name: &str, existing: &HashSet<String>) -> Graph {
        let mut g = Graph::new(name);
        for n in existing {
            g.reserve(n);
        }
        g
    }

    /// `model` with this graph's nodes, initializers and outputs added to its graph. Protobuf
    /// merges a message field that appears twice, and appends the repeated fields inside it:
    /// the second `graph` field extends the first, and the file's own bytes stay as they are.
    pub fn append_to(&self, model: &[u8]) -> Vec<u8> {
        let mut out = model.to_vec();
        out.extend(self.as_model_graph_field());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::graph::Attr;

    #[test]
    fn reads_what_graft_writes_and_refuses_junk() {
        let mut g = Graph::new("t");
        let x = g.input(
            "input",
            &[Dim::Named("N".into()), Dim::Fixed(3), Dim::Fixed(8)],
        );
        let w = g.initializer("w", &[1], &[2.0]);
        let y = g.node("Mul", &[&x, &w], "scaled", &[]);
        let z = g.node("Relu", &[&y], "features", &[("unused", Attr::Int(1))]);
        g.output(&z, &[Dim::Named("N".into()), Dim::Fixed(24)]);
        let bytes = g.to_model("test", "0");
        let info = read_model(&bytes).expect("graft's own file");
        assert_eq!(info.opset(), crate::onnx::OPSET);
        assert_eq!(info.inputs.len(), 1);
        assert_eq!(info.inputs[0].name, "input");
        assert_eq!(info.inputs[0].elem_type, 1);
        assert_eq!(
            info.inputs[0].dims,
            Some(vec![Dim::Named("N".into()), Dim::Fixed(3), Dim::Fixed(8)])
        );
        assert_eq!(
            info.output("features").and_then(|o| o.dims.clone()),
            Some(vec![Dim::Named("N".into()), Dim::Fixed(24)])
        );
        for n in ["input", "w", "scaled", "features"] {
            assert!(info.names.contains(n), "{n}");
        }
        // A graph extending it never reuses a name.
        let mut more = Graph::extending("more", &info.names);
        assert_eq!(more.fresh("features"), "features_1");

        assert!(matches!(read_model(b"not onnx"), Err(OnnxError::Read(_))));
        for n in 0..bytes.len() {
            // Every truncation: an error or a shorter model, never a panic.
            let _ = read_model(&bytes[..n]);
        }
    }
}
