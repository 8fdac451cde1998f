//! ONNX export written by hand: graft's encoders are a small, fixed family of operators
//! (Conv, Clip, Relu, MaxPool, Add, GlobalAveragePool, Flatten, Gemm; QuantizeLinear/DequantizeLinear for
//! INT8, which graft-export adds through [`Marker`]), so a protobuf writer of ~100 lines
//! replaces a code generator and its build-time dependencies.

mod export;
mod file_graph;
mod graph;
mod proto;
mod read;

pub use export::{
    batch, block_output_key, encoder_graph, encoder_graph_marked, encoder_to_onnx,
    float_conv_params, fold_bn, gemm, EncoderGraph, ExportOptions, Float, Marker,
};
pub use file_graph::file_encoder_graph;
pub use graph::{Attr, DataType, Dim, Graph, IR_VERSION, OPSET};
pub use read::{read_model, shape_text, ModelInfo, ValueInfo};

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightError),
    #[error("cannot export: {0}")]
    Spec(String),
    #[error("not a readable ONNX model: {0}")]
    Read(String),
}
