//! Arguments of `graft export`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Run folder written by `graft train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Output format: onnx (the file, into the run folder) or web (a static folder that runs the
    /// model in the browser, offline once opened: page, ONNX file, ONNX Runtime Web, service
    /// worker; needs --out, and the run's ONNX file of --precision, exported first if missing).
    #[arg(long, default_value = "onnx", value_name = "onnx|web")]
    pub format: String,
    /// web: the folder to write (serve it with `graft serve --web DIR`, or any static host).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// web: below this top probability the page flags the answer as uncertain.
    #[arg(long, default_value_t = 0.7, value_name = "P")]
    pub threshold: f32,
    /// web: send the predictions made on the device to this API when online (POST
    /// API/feedback; kept in the browser's IndexedDB until acknowledged, so none is lost
    /// offline): `/` for the `graft serve` that serves the folder, or a URL (that server then
    /// needs --cors-origin for the page's origin).
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
    /// web: classes shown per answer.
    #[arg(long, default_value_t = 3, value_name = "K")]
    pub top: usize,
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
    /// int8: refuse the file when its accuracy on the validation images is lower than the
    /// float model's (95% sure) by more than this (0.02 = two points). The drop and its 95%
    /// interval are printed either way; --force writes the file all the same.
    #[arg(long, default_value_t = 0.02, value_name = "FRACTION")]
    pub max_accuracy_drop: f64,
    /// int8: write the file even when it loses more than --max-accuracy-drop.
    #[arg(long)]
    pub force: bool,
    /// int8: levels of the quantized weights. auto: 8 bits on a CPU with VNNI (AVX-512 VNNI,
    /// AVX-VNNI), 7 bits on one without, where ONNX Runtime's 8-bit kernels can saturate
    /// (AVX2 laptops). 7 makes a file that is right on every x86-64, for serving elsewhere.
    #[arg(long, value_enum, default_value_t = Int8Weights::Auto)]
    pub int8_weights: Int8Weights,
    /// int8: leading encoder blocks kept in float. The default 2 (the stem and the first
    /// block) costs little speed and keeps most of the accuracy INT8 would lose; 0 quantizes
    /// every convolution.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub float_blocks: usize,
}

/// `--int8-weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Int8Weights {
    Auto,
    #[value(name = "8")]
    Eight,
    #[value(name = "7")]
    Seven,
}

impl Int8Weights {
    pub fn resolve(self) -> graft_export::WeightBits {
        use graft_export::WeightBits;
        match self {
            Int8Weights::Auto => WeightBits::for_this_cpu(),
            Int8Weights::Eight => WeightBits::Eight,
            Int8Weights::Seven => WeightBits::Seven,
        }
    }
}

/// Number format of an exported model (its file in the run folder).
pub use graft_run::Precision;
