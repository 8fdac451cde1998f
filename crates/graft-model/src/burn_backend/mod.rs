//! Pure-Rust inference and (later) training path: the encoder as a burn module.

mod net;

pub use burn::tensor::Device;
pub use net::{activate, gate, max_pool, ConvBnLayer, EncoderBlock, EncoderNet, NetOutput};

use burn::tensor::{Tensor, TensorData};

use crate::arch::{spec_for, EncoderKind, NetSpec};
use crate::encoder::{EncoderError, EncoderOutput, ImageEncoder};
use crate::weights::{StateDict, WeightError};

const BACKEND: &str = "burn-flex";

/// The burn flex CPU device (pure Rust, no setup).
pub fn default_device() -> Device {
    Device::flex()
}

/// Backends graft can train on, by the name users give (`--backend`).
pub const TRAIN_BACKENDS: &[&str] = &["flex", "tch", "tch-cuda"];

/// Whether the backend of this name runs on libtorch (`tch`, `tch-cuda`).
pub fn is_libtorch(name: &str) -> bool {
    matches!(name, "tch" | "tch-cuda")
}

/// The burn device for a backend name: `flex` (pure Rust, always built), `tch` (libtorch on
/// the CPU) or `tch-cuda` (libtorch on GPU 0); the last two need graft built with the `tch`
/// feature against a PyTorch 2.9 install.
// burn 0.22 marks its libtorch backend deprecated (in favour of CubeCL backends); it is still
// the one that runs PyTorch's own CPU kernels.
#[allow(deprecated)]
pub fn device_named(name: &str) -> Result<Device, String> {
    match name {
        "flex" => Ok(Device::flex()),
        #[cfg(feature = "tch")]
        "tch" => Ok(Device::libtorch()),
        #[cfg(feature = "tch")]
        "tch-cuda" => Ok(Device::libtorch_cuda(0)),
        #[cfg(not(feature = "tch"))]
        "tch" | "tch-cuda" => Err(format!(
            "this graft was built without the `tch` feature; rebuild with `cargo build --release \
             --features tch` against PyTorch 2.9 (see the README) to use --backend {name}"
        )),
        other => Err(format!(
            "unknown backend {other:?}; use one of {}",
            TRAIN_BACKENDS.join(", ")
        )),
    }
}

/// A pretrained encoder on burn, ready for [`ImageEncoder::encode`].
#[derive(Debug)]
pub struct BurnEncoder {
    net: EncoderNet,
    spec: NetSpec,
    device: Device,
}

impl BurnEncoder {
    /// Derive the architecture from the weights and build the module on the flex device.
    pub fn new(kind: EncoderKind, weights: &StateDict) -> Result<Self, WeightError> {
        Self::on_device(kind, weights, default_device())
    }

    pub fn on_device(
        kind: EncoderKind,
        weights: &StateDict,
        device: Device,
    ) -> Result<Self, WeightError> {
        let spec = spec_for(kind, weights)?;
        let net = EncoderNet::from_spec(&spec, weights, &device)?;
        Ok(Self { net, spec, device })
    }

    pub fn spec(&self) -> &NetSpec {
        &self.spec
    }

    pub fn net(&self) -> &EncoderNet {
        &self.net
    }

    pub fn device(&self) -> &Device {
        &self.device
    }
}

fn read(t: Tensor<2>) -> Result<Vec<f32>, EncoderError> {
    to_vec(t.into_data())
}

fn to_vec(d: TensorData) -> Result<Vec<f32>, EncoderError> {
    d.try_into_vec::<f32>().map_err(|e| EncoderError::Backend {
        backend: BACKEND,
        detail: format!("reading the output tensor: {e:?}"),
    })
}

impl ImageEncoder for BurnEncoder {
    fn feature_dim(&self) -> usize {
        self.spec.feature_dim
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn encode(
        &mut self,
        input: &[f32],
        n: usize,
        want_feature_map: bool,
    ) -> Result<EncoderOutput, EncoderError> {
        let size = self.spec.preprocess.size;
        crate::encoder::check_batch(input, n, size)?;
        let s = size as usize;
        let x = Tensor::<4>::from_data(TensorData::new(input.to_vec(), [n, 3, s, s]), &self.device);
        let out = self.net.forward(x);
        Ok(EncoderOutput {
            features: read(out.features)?,
            logits: out.logits.map(read).transpose()?.unwrap_or_default(),
            feature_map: if want_feature_map {
                Some(to_vec(out.feature_map.into_data())?)
            } else {
                None
            },
        })
    }
}
