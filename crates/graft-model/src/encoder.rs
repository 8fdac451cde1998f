//! What every encoder backend (burn, ONNX Runtime) offers the rest of graft.

/// Outputs of one forward pass over a batch of `n` images.
#[derive(Debug, Clone, Default)]
pub struct EncoderOutput {
    /// Globally average-pooled features, `n × feature_dim`, row-major.
    pub features: Vec<f32>,
    /// Pretrained ImageNet logits, `n × 1000` (empty when the backend was asked for features
    /// only, or the weights have no classifier).
    pub logits: Vec<f32>,
    /// Last spatial feature map, `n × feature_dim × h × w` (NCHW), when requested.
    pub feature_map: Option<Vec<f32>>,
}

/// A frozen pretrained encoder.
pub trait ImageEncoder: Send {
    fn feature_dim(&self) -> usize;
    /// Backend name for logs and benchmarks ("burn-flex", "onnxruntime").
    fn backend(&self) -> &'static str;
    /// Run a preprocessed batch: `input` is `n × 3 × size × size` (NCHW) as produced by
    /// [`crate::arch::Preprocess::apply`].
    fn encode(
        &mut self,
        input: &[f32],
        n: usize,
        want_feature_map: bool,
    ) -> Result<EncoderOutput, EncoderError>;
}

/// Check that `input` holds `n ≥ 1` images of 3×`size`×`size`; every backend's `encode`
/// starts here.
pub fn check_batch(input: &[f32], n: usize, size: u32) -> Result<(), EncoderError> {
    let s = size as usize;
    let expected = n * 3 * s * s;
    if input.len() != expected || n == 0 {
        return Err(EncoderError::BadInput {
            got: input.len(),
            expected,
            n,
            size,
        });
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("input has {got} values, expected {expected} ({n} images of 3×{size}×{size})")]
    BadInput {
        got: usize,
        expected: usize,
        n: usize,
        size: u32,
    },
    #[error("{backend} failed: {detail}")]
    Backend {
        backend: &'static str,
        detail: String,
    },
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightError),
}
