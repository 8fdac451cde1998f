//! The arithmetic of a fine-tune: f32, or bf16 mixed precision.

use burn::tensor::{FloatDType, Tensor};

/// Arithmetic of a fine-tune's forward and backward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// Mixed precision: the encoder's convolutions (forward and backward) run in bfloat16,
    /// while the weights, their gradients, AdamW, the pooled features, the head and the loss
    /// stay f32 (each step casts the f32 master weights down). bfloat16 keeps f32's exponent
    /// range, so no loss scaling is needed; float16 would need it and is not offered.
    Bf16,
}

impl Precision {
    pub const NAMES: &'static str = "f32, bf16";

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// `t` in this precision's compute type (no-op for f32).
    pub(crate) fn compute<const D: usize>(self, t: Tensor<D>) -> Tensor<D> {
        match self {
            Precision::F32 => t,
            Precision::Bf16 => t.cast(FloatDType::BF16),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "f16" | "fp16" | "float16" => Err(
                "float16 would need loss scaling to keep small gradients; use bf16 (same speed \
                 on GPUs since Ampere, f32's range)"
                    .into(),
            ),
            other => Err(format!(
                "unknown precision {other:?}; use one of {}",
                Self::NAMES
            )),
        }
    }
}
