//! The encoder family graft knows, described once as data ([`NetSpec`]) and derived from a
//! state dict. The burn model and the ONNX writer are both built from the same spec, so they
//! cannot disagree about the architecture.

pub mod checkpoint;
mod cost;
mod efficientnet_b0;
mod efficientnet_lite;
mod layout;
mod mobilenet_v2;
mod mobilenet_v3;
mod read;
mod resnet;
mod spec;

pub use spec::{
    Act, Block, ConvBn, EncoderKind, Gate, Linear, MaxPool, NetSpec, Padding, Preprocess,
    SqueezeExcite, UnknownEncoder,
};

use crate::weights::{StateDict, WeightError};

/// Every tensor of `kind`'s torchvision state dict, name and shape, in the file's order, for
/// the architectures graft writes down whole (the ResNets, EfficientNet-B0, MobileNetV3);
/// `None` for those read from the file alone (MobileNetV2, EfficientNet-Lite).
pub fn torchvision_tensors(kind: EncoderKind) -> Option<Vec<(String, Vec<usize>)>> {
    match kind {
        EncoderKind::EfficientNetB0 => Some(efficientnet_b0::layout().tensors()),
        EncoderKind::MobileNetV3Small | EncoderKind::MobileNetV3Large => {
            mobilenet_v3::layout(kind).map(|l| l.tensors())
        }
        _ => resnet::tensors(kind),
    }
}

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
        EncoderKind::EfficientNetB0 => efficientnet_b0::spec(weights),
        EncoderKind::MobileNetV3Small | EncoderKind::MobileNetV3Large => {
            mobilenet_v3::spec(kind, weights)
        }
    }
}
