//! Arguments of `graft export`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run folder written by `graft train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Output format (onnx).
    #[arg(long, default_value = "onnx")]
    pub format: String,
    /// Number format: fp32 writes RUN/model.onnx; int8 writes RUN/model.int8.onnx, quantized
    /// after training with activation ranges observed on training images (about 4× smaller,
    /// 1.5-2× faster on CPUs with AVX-512 VNNI or AVX-VNNI, usually within a point of accuracy).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Held-out (test, else val) images to validate the export on.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub validate: usize,
    /// int8: training images whose activations set the quantization ranges.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub calibration: usize,
    /// int8: refuse the file when its accuracy on the validation images is, with 95%
    /// confidence, more than this below the float model's (0.02 = two points).
    #[arg(long, default_value_t = 0.02, value_name = "FRACTION")]
    pub max_accuracy_drop: f64,
    /// int8: leading encoder blocks kept in float. The default 2 (the stem and the first
    /// block) costs little speed and keeps most of the accuracy INT8 would lose; 0 quantizes
    /// every convolution.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub float_blocks: usize,
}

/// Number format of an exported model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    Fp32,
    Int8,
}

impl Precision {
    /// The model file of this precision inside a run folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Precision::Fp32 => "model.onnx",
            Precision::Int8 => "model.int8.onnx",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}
