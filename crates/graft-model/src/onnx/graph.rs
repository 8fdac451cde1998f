//! A small ONNX graph builder: float values (plus integer constants for quantized weights),
//! default domain, one opset. Nodes are
//! appended in topological order by the caller; names are checked for uniqueness so a later
//! stage (a classifier head) can keep appending to a graph it did not build.

use std::collections::HashSet;

use super::proto::Msg;

/// Element types of constant tensors (`TensorProto.DataType` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Float = 1,
    Uint8 = 2,
    Int8 = 3,
    Int32 = 6,
    Int64 = 7,
}
/// IR version 8 (onnx 1.10+): understood by every ONNX Runtime since 1.10.
pub const IR_VERSION: i64 = 8;
/// Opset 13: Clip takes min/max as inputs, Gemm/Conv are stable, all runtimes support it.
pub const OPSET: i64 = 13;

/// A node attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
    Str(String),
}

/// One dimension of a graph input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    /// A symbolic dimension such as the batch size "N".
    Named(String),
}

#[derive(Debug, Default)]
pub struct Graph {
    name: String,
    nodes: Vec<Msg>,
    initializers: Vec<Msg>,
    inputs: Vec<Msg>,
    outputs: Vec<Msg>,
    names: HashSet<String>,
    counter: usize,
}

fn value_info(name: &str, dims: &[Dim]) -> Msg {
    let mut shape = Msg::new();
    for d in dims {
        let mut dim = Msg::new();
        match d {
            Dim::Fixed(v) => dim.int(1, *v as i64),
            Dim::Named(p) => dim.str(2, p),
        };
        shape.msg(1, &dim);
    }
    let mut tensor = Msg::new();
    tensor.int(1, DataType::Float as i64).msg(2, &shape);
    let mut ty = Msg::new();
    ty.msg(1, &tensor);
    let mut vi = Msg::new();
    vi.str(1, name).msg(2, &ty);
    vi
}

impl Graph {
    pub fn new(name: &str) -> Self {
        Graph {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// A name not used yet, derived from `base`.
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        while self.names.contains(&name) {
            self.counter += 1;
            name = format!("{base}_{}", self.counter);
        }
        self.names.insert(name.clone());
        name
    }

    pub fn input(&mut self, name: &str, dims: &[Dim]) -> String {
        let name = self.claim(name);
        self.inputs.push(value_info(&name, dims));
        name
    }

    /// Declare an existing value as a graph output.
    pub fn output(&mut self, name: &str, dims: &[Dim]) {
        self.outputs.push(value_info(name, dims));
    }

    /// A constant float tensor stored as little-endian `raw_data`; returns its (unique) name.
    pub fn initializer(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_initializer(name, dims, DataType::Float, data.len(), &raw)
    }

    /// A constant int8 tensor (quantized weights, symmetric zero points).
    pub fn i8_initializer(&mut self, name: &str, dims: &[usize], data: &[i8]) -> String {
        let raw: Vec<u8> = data.iter().map(|&v| v as u8).collect();
        self.raw_initializer(name, dims, DataType::Int8, data.len(), &raw)
    }

    /// A constant uint8 tensor (activation zero points).
    pub fn u8_initializer(&mut self, name: &str, dims: &[usize], data: &[u8]) -> String {
        self.raw_initializer(name, dims, DataType::Uint8, data.len(), data)
    }

    /// A constant int32 tensor (quantized biases).
    pub fn i32_initializer(&mut self, name: &str, dims: &[usize], data: &[i32]) -> String {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_initializer(name, dims, DataType::Int32, data.len(), &raw)
    }

    /// A constant int64 tensor (shapes for Reshape).
    pub fn i64_initializer(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.raw_initializer(name, dims, DataType::Int64, data.len(), &raw)
    }

    fn raw_initializer(
        &mut self,
        name: &str,
        dims: &[usize],
        ty: DataType,
        count: usize,
        raw: &[u8],
    ) -> String {
        assert_eq!(
            dims.iter().product::<usize>(),
            count,
            "initializer {name}: shape {dims:?} does not match {count} values",
        );
        let name = self.fresh(name);
        let mut t = Msg::new();
        if !dims.is_empty() {
            t.packed_ints(1, &dims.iter().map(|&d| d as i64).collect::<Vec<_>>());
        }
        t.int(2, ty as i64).str(8, &name).bytes(9, raw);
        self.initializers.push(t);
        name
    }

    /// Append a node with one output named after `output` (made unique); returns that name.
    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attrs: &[(&str, Attr)],
    ) -> String {
        let out = self.fresh(output);
        let mut n = Msg::new();
        for i in inputs {
            n.str(1, i);
        }
        n.str(2, &out).str(3, &out).str(4, op);
        for (name, value) in attrs {
            let mut a = Msg::new();
            a.str(1, name);
            // AttributeProto: f=2, i=3, s=4, ints=8; type=20 (FLOAT=1, INT=2, STRING=3, INTS=7).
            match value {
                Attr::Float(f) => a.float(2, *f).int(20, 1),
                Attr::Int(i) => a.int(3, *i).int(20, 2),
                Attr::Str(s) => a.str(4, s).int(20, 3),
                Attr::Ints(is) => a.packed_ints(8, is).int(20, 7),
            };
            n.msg(5, &a);
        }
        self.nodes.push(n);
        out
    }

    fn claim(&mut self, name: &str) -> String {
        assert!(
            self.names.insert(name.to_string()),
            "ONNX value name `{name}` used twice"
        );
        name.to_string()
    }

    /// Serialise as a ModelProto.
    pub fn to_model(&self, producer: &str, version: &str) -> Vec<u8> {
        let mut g = Msg::new();
        for n in &self.nodes {
            g.msg(1, n);
        }
        g.str(2, &self.name);
        for t in &self.initializers {
            g.msg(5, t);
        }
        for i in &self.inputs {
            g.msg(11, i);
        }
        for o in &self.outputs {
            g.msg(12, o);
        }
        let mut opset = Msg::new();
        opset.str(1, "").int(2, OPSET);
        let mut m = Msg::new();
        m.int(1, IR_VERSION)
            .str(2, producer)
            .str(3, version)
            .msg(7, &g)
            .msg(8, &opset);
        m.into_bytes()
    }
}
