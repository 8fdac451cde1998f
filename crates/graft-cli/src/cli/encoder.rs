//! The flags of `--encoder FILE.onnx` (`graft train`, `graft extract`).

use clap::Args;

const ONNX_FLAGS: &str = "ONNX encoder (--encoder FILE.onnx)";

/// How to run your own ONNX feature extractor (`--encoder FILE.onnx`). graft feeds it
/// float32 images `[N, 3, S, S]`, prepared as these flags say (they must match how the network
/// was trained), and reads one output: pooled features `[N, C]`, or a feature map
/// `[N, C, H, W]` that graft average-pools (and that Grad-CAM explains). `graft models inspect
/// FILE.onnx` lists the file's outputs.
#[derive(Debug, Args, Default, Clone)]
pub struct OnnxArgs {
    /// The output with the features [default: the file's only output].
    #[arg(long, help_heading = ONNX_FLAGS, value_name = "NAME")]
    pub output: Option<String>,
    /// Side of the square centre crop the file takes [default: its fixed input size, else 224].
    #[arg(long, help_heading = ONNX_FLAGS, value_name = "PIXELS")]
    pub input_size: Option<u32>,
    /// Shorter side images are resized to before the crop [default: input size × 256/224].
    #[arg(long, help_heading = ONNX_FLAGS, value_name = "PIXELS")]
    pub resize_shorter: Option<u32>,
    /// Per-channel (R,G,B) mean subtracted from pixels scaled to 0–1 [default: ImageNet's,
    /// 0.485,0.456,0.406].
    #[arg(long, help_heading = ONNX_FLAGS, value_name = "R,G,B", value_delimiter = ',')]
    pub mean: Option<Vec<f32>>,
    /// Per-channel (R,G,B) divisor after the mean [default: ImageNet's, 0.229,0.224,0.225].
    #[arg(long, help_heading = ONNX_FLAGS, value_name = "R,G,B", value_delimiter = ',')]
    pub std: Option<Vec<f32>>,
}

impl OnnxArgs {
    /// Whether any flag is given.
    fn any(&self) -> bool {
        self.output.is_some()
            || self.input_size.is_some()
            || self.resize_shorter.is_some()
            || self.mean.is_some()
            || self.std.is_some()
    }

    /// `encoder` with these flags applied; an error when they are given for a named encoder
    /// (whose preprocessing is its weights').
    pub fn apply(&self, encoder: &mut graft_model::Encoder) -> anyhow::Result<()> {
        let graft_model::Encoder::Onnx(o) = encoder else {
            if self.any() {
                anyhow::bail!(
                    "--output, --input-size, --resize-shorter, --mean and --std are for an ONNX \
                     encoder (--encoder FILE.onnx); {encoder} prepares images as its weights \
                     were trained"
                );
            }
            return Ok(());
        };
        let rgb = |flag: &str, v: &[f32]| -> anyhow::Result<[f32; 3]> {
            <[f32; 3]>::try_from(v).map_err(|_| {
                anyhow::anyhow!("--{flag} takes three numbers, R,G,B (got {})", v.len())
            })
        };
        if let Some(v) = &self.output {
            o.output = v.clone();
        }
        if let Some(v) = self.input_size {
            o.preprocess.size = v;
        }
        if let Some(v) = self.resize_shorter {
            o.preprocess.resize_shorter = v;
        }
        if let Some(v) = &self.mean {
            o.preprocess.mean = rgb("mean", v)?;
        }
        if let Some(v) = &self.std {
            o.preprocess.std = rgb("std", v)?;
        }
        Ok(())
    }
}
