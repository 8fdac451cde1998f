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
#[cfg(feature = "clap")]
pub(crate) use spec::cli;

pub use spec::{
    Act, Block, ConvBn, EncoderKind, Gate, Linear, MaxPool, NetSpec, Padding, Preprocess,
    SqueezeExcite, UnknownEncoder,
};

use crate::weights::{StateDict, WeightError};

/// The layout of the architectures graft writes down whole (the ResNets, EfficientNet-B0,
/// MobileNetV3); `None` for those read from the file alone (MobileNetV2, EfficientNet-Lite).
fn layout(kind: EncoderKind) -> Option<layout::Layout> {
    match kind {
        EncoderKind::EfficientNetB0 => Some(efficientnet_b0::layout()),
        EncoderKind::MobileNetV3Small | EncoderKind::MobileNetV3Large => mobilenet_v3::layout(kind),
        _ => resnet::layout_of(kind),
    }
}

/// Keys every file of `kind` has where its parts start: the stem's convolution weight, and
/// the ImageNet classifier's (weight, bias).
pub(crate) struct Keys {
    pub stem: String,
    pub classifier: (String, String),
}

pub(crate) fn keys(kind: EncoderKind) -> Option<Keys> {
    let keys = |stem: &str, (w, b): (&str, &str)| Keys {
        stem: stem.to_string(),
        classifier: (w.to_string(), b.to_string()),
    };
    match kind {
        EncoderKind::MobileNetV2 => Some(keys(mobilenet_v2::STEM, mobilenet_v2::CLASSIFIER)),
        EncoderKind::EfficientNetLite0
        | EncoderKind::EfficientNetLite1
        | EncoderKind::EfficientNetLite2 => {
            Some(keys(efficientnet_lite::STEM, efficientnet_lite::CLASSIFIER))
        }
        _ => {
            let l = layout(kind)?;
            let stem = l.blocks.first()?.convs.first()?;
            let fc = &l.classifier.0;
            Some(keys(
                &stem.weight,
                (&format!("{fc}.weight"), &format!("{fc}.bias")),
            ))
        }
    }
}

/// Every tensor of `kind`'s torchvision state dict (BatchNorm's `num_batches_tracked`
/// counters aside), name and shape, in the file's order; `None` for the architectures read
/// from the file alone (MobileNetV2, EfficientNet-Lite).
pub fn torchvision_tensors(kind: EncoderKind) -> Option<Vec<(String, Vec<usize>)>> {
    layout(kind).map(|l| l.tensors())
}

/// `kind`'s published architecture, ImageNet classifier included, without weights (for its
/// size and cost); `None` as for [`torchvision_tensors`].
pub fn torchvision_spec(kind: EncoderKind) -> Option<NetSpec> {
    layout(kind).map(|l| l.published(kind))
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
