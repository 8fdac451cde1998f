//! A small ONNX graph builder: float values (plus integer constants for quantized weights),
//! default domain, one opset. Nodes are
//! appended in topological order by the caller; names are checked for uniqueness so a later
//! stage (a classifier head) can keep appending to a graph it did not build.

use std::collections::{HashMap, HashSet};

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
    /// [`Graph::shared_initializer`]'s constants, by the name asked for.
    shared: HashMap<String, String>,
}

/// Field numbers of the ONNX protobuf messages graft writes (onnx.proto3).
mod field {
    pub mod model {
        pub const IR_VERSION: u32 = 1;
        pub const PRODUCER_NAME: u32 = 2;
        pub const PRODUCER_VERSION: u32 = 3;
        pub const GRAPH: u32 = 7;
        pub const OPSET_IMPORT: u32 = 8;
    }
    pub mod opset {
        pub const DOMAIN: u32 = 1;
        pub const VERSION: u32 = 2;
    }
    pub mod graph {
        pub const NODE: u32 = 1;
        pub const NAME: u32 = 2;
        pub const INITIALIZER: u32 = 5;
        pub const INPUT: u32 = 11;
        pub const OUTPUT: u32 = 12;
    }
    pub mod node {
        pub const INPUT: u32 = 1;
        pub const OUTPUT: u32 = 2;
        pub const NAME: u32 = 3;
        pub const OP_TYPE: u32 = 4;
        pub const ATTRIBUTE: u32 = 5;
    }
    /// AttributeProto, and the values of its `type` field.
    pub mod attribute {
        pub const NAME: u32 = 1;
        pub const F: u32 = 2;
        pub const I: u32 = 3;
        pub const S: u32 = 4;
        pub const INTS: u32 = 8;
        pub const TYPE: u32 = 20;
        pub const TYPE_FLOAT: i64 = 1;
        pub const TYPE_INT: i64 = 2;
        pub const TYPE_STRING: i64 = 3;
        pub const TYPE_INTS: i64 = 7;
    }
    pub mod tensor {
        pub const DIMS: u32 = 1;
        pub const DATA_TYPE: u32 = 2;
        pub const NAME: u32 = 8;
        pub const RAW_DATA: u32 = 9;
    }
    pub mod value_info {
        pub const NAME: u32 = 1;
        pub const TYPE: u32 = 2;
    }
    /// TypeProto (`tensor_type`), TypeProto.Tensor, TensorShapeProto and its Dimension.
    pub mod types {
        pub const TENSOR_TYPE: u32 = 1;
        pub const ELEM_TYPE: u32 = 1;
        pub const SHAPE: u32 = 2;
        pub const DIM: u32 = 1;
        pub const DIM_VALUE: u32 = 1;
        pub const DIM_PARAM: u32 = 2;
    }
}

fn value_info(name: &str, dims: &[Dim]) -> Msg {
    use field::types;
    let mut shape = Msg::new();
    for d in dims {
        let mut dim = Msg::new();
        match d {
            Dim::Fixed(v) => dim.int(types::DIM_VALUE, *v as i64),
            Dim::Named(p) => dim.str(types::DIM_PARAM, p),
        };
        shape.msg(types::DIM, &dim);
    }
    let mut tensor = Msg::new();
    tensor
        .int(types::ELEM_TYPE, DataType::Float as i64)
        .msg(types::SHAPE, &shape);
    let mut ty = Msg::new();
    ty.msg(types::TENSOR_TYPE, &tensor);
    let mut vi = Msg::new();
    vi.str(field::value_info::NAME, name)
        .msg(field::value_info::TYPE, &ty);
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

    /// A constant float tensor written once and shared by every node that asks for `name`
    /// (the first call's values stand).
    pub fn shared_initializer(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        if let Some(n) = self.shared.get(name) {
            return n.clone();
        }
        let n = self.initializer(name, dims, data);
        self.shared.insert(name.to_string(), n.clone());
        n
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
            let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
            t.packed_ints(field::tensor::DIMS, &dims);
        }
        t.int(field::tensor::DATA_TYPE, ty as i64)
            .str(field::tensor::NAME, &name)
            .bytes(field::tensor::RAW_DATA, raw);
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
        use field::{attribute as at, node};
        for i in inputs {
            n.str(node::INPUT, i);
        }
        n.str(node::OUTPUT, &out)
            .str(node::NAME, &out)
            .str(node::OP_TYPE, op);
        for (name, value) in attrs {
            let mut a = Msg::new();
            a.str(at::NAME, name);
            match value {
                Attr::Float(f) => a.float(at::F, *f).int(at::TYPE, at::TYPE_FLOAT),
                Attr::Int(i) => a.int(at::I, *i).int(at::TYPE, at::TYPE_INT),
                Attr::Str(s) => a.str(at::S, s).int(at::TYPE, at::TYPE_STRING),
                Attr::Ints(is) => a.packed_ints(at::INTS, is).int(at::TYPE, at::TYPE_INTS),
            };
            n.msg(node::ATTRIBUTE, &a);
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

    /// Mark `name` as taken: [`Graph::fresh`] will not give it out.
    pub fn reserve(&mut self, name: &str) {
        self.names.insert(name.to_string());
    }

    fn graph_msg(&self, named: bool) -> Msg {
        use field::graph;
        let mut g = Msg::new();
        for n in &self.nodes {
            g.msg(graph::NODE, n);
        }
        if named {
            g.str(graph::NAME, &self.name);
        }
        for t in &self.initializers {
            g.msg(graph::INITIALIZER, t);
        }
        for i in &self.inputs {
            g.msg(graph::INPUT, i);
        }
        for o in &self.outputs {
            g.msg(graph::OUTPUT, o);
        }
        g
    }

    /// This graph as ModelProto's `graph` field alone (unnamed): appended to a model's bytes,
    /// it extends that model's graph (see [`Graph::append_to`]).
    pub(super) fn as_model_graph_field(&self) -> Vec<u8> {
        let mut m = Msg::new();
        m.msg(field::model::GRAPH, &self.graph_msg(false));
        m.into_bytes()
    }

    /// Serialise as a ModelProto.
    pub fn to_model(&self, producer: &str, version: &str) -> Vec<u8> {
        use field::{model, opset as op};
        let g = self.graph_msg(true);
        let mut opset = Msg::new();
        opset.str(op::DOMAIN, "").int(op::VERSION, OPSET);
        let mut m = Msg::new();
        m.int(model::IR_VERSION, IR_VERSION)
            .str(model::PRODUCER_NAME, producer)
            .str(model::PRODUCER_VERSION, version)
            .msg(model::GRAPH, &g)
            .msg(model::OPSET_IMPORT, &opset);
        m.into_bytes()
    }
}
