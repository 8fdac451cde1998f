//! ONNX export written by hand: graft's encoders are a small, fixed family of operators
//! (Conv, Clip, Add, GlobalAveragePool, Flatten, Gemm; QuantizeLinear/DequantizeLinear for
//! INT8), so a protobuf writer of ~100 lines
//! replaces a code generator and its build-time dependencies.

mod export;
mod graph;
mod proto;
pub mod quant;

pub use export::{
    encoder_graph, encoder_graph_in, encoder_to_onnx, fold_bn, gemm, EncoderGraph, ExportOptions,
    Precision,
};
pub use graph::{Attr, DataType, Dim, Graph, IR_VERSION, OPSET};
pub use quant::{Calibration, WeightBits};

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightError),
    #[error("cannot export: {0}")]
    Spec(String),
}
