//! graft's model layer.
//!
//! For now this is the weight importer: PyTorch `.pth` checkpoints (legacy and zip
//! serialization) are read in pure Rust — nothing is ever executed — into an ordered
//! name → tensor map, and cached as safetensors.

pub mod arch;
pub mod encoder;
pub mod onnx;
pub mod ort_backend;
pub mod weights;

pub use weights::{
    expected_hash_prefix, load_pth, load_pth_bytes, load_pth_cached, load_safetensors,
    save_safetensors, sha256_file, verify_hash_prefix, DType, StateDict, Tensor, WeightError,
};
