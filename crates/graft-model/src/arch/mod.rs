//! The encoder family graft knows, described once as data ([`NetSpec`]) and derived from a
//! state dict. The burn model and the ONNX writer are both built from the same spec, so they
//! cannot disagree about the architecture.

pub mod checkpoint;
mod cost;
mod efficientnet_lite;
mod mobilenet_v2;
mod read;
pub mod resnet;
mod spec;

pub use spec::{
    Act, Block, ConvBn, EncoderKind, Linear, MaxPool, NetSpec, Padding, Preprocess, UnknownEncoder,
};

use crate::weights::{StateDict, WeightError};

/// Build the spec of `kind` from its weights (shapes are checked, strides come from the
/// published architecture).
pub fn spec_for(kind: EncoderKind, weights: &StateDict) -> Result<NetSpec, WeightError> {
    match kind {
        EncoderKind::MobileNetV2 => mobilenet_v2::spec(weights),
        EncoderKind::EfficientNetLite0
        | EncoderKind::EfficientNetLite1
        | EncoderKind::EfficientNetLite2 => efficientnet_lite::spec(kind, weights),
        EncoderKind::ResNet18 | EncoderKind::ResNet34 | EncoderKind::ResNet50 => {
            resnet::spec(kind, weights)
        }
    }
}
