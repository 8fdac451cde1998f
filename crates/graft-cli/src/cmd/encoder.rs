//! Where `graft` gets a pretrained encoder from. The one place backends are chosen.

use graft_model::arch::EncoderKind;
use graft_model::encoder::ImageEncoder;

/// A ready encoder of `kind` (weights found, verified and loaded).
pub fn open_encoder(kind: EncoderKind) -> anyhow::Result<Box<dyn ImageEncoder>> {
    anyhow::bail!(
        "encoders not yet available: this build of graft has no backend to run {kind} \
         (the burn and ONNX Runtime encoders are not merged yet)"
    )
}

/// Identity of the pretrained weights of `kind`, stored in caches so features of other weights
/// are never mixed in: the published file name, whose suffix is the start of its sha256
/// (checked when the weights are loaded).
pub fn weights_id(kind: EncoderKind) -> &'static str {
    match kind {
        EncoderKind::MobileNetV2 => "mobilenet_v2-b0353104",
        EncoderKind::EfficientNetLite0 => "efficientnet-lite0-57934424",
        EncoderKind::EfficientNetLite1 => "efficientnet-lite1-77cc7160",
        EncoderKind::EfficientNetLite2 => "efficientnet-lite2-9656183e",
    }
}
