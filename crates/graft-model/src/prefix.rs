//! The encoder up to a cut, giving the activation the first trained block reads: what a
//! fine-tune caches once per image, on ONNX Runtime or burn (which one is the caller's choice:
//! graft-run picks for every encoder in one place).

use ort::session::Session;

use crate::arch::NetSpec;
use crate::burn_backend::{default_device, EncoderNet};
use crate::encoder::{check_batch, EncoderError};
use crate::onnx::{encoder_to_onnx, ExportOptions};
use crate::ort_backend::{run_images, session_from_onnx, OrtOptions};
use crate::weights::StateDict;

pub enum PrefixEncoder {
    Ort(Box<Session>, usize),
    Burn(Box<EncoderNet>, usize),
}

fn backend_err(backend: &'static str, e: impl std::fmt::Display) -> EncoderError {
    EncoderError::Backend {
        backend,
        detail: e.to_string(),
    }
}

impl PrefixEncoder {
    /// On ONNX Runtime. `prefix` is a spec truncated at the cut (its last block's output is
    /// the activation).
    pub fn ort(
        prefix: &NetSpec,
        weights: &StateDict,
        opts: OrtOptions,
    ) -> Result<PrefixEncoder, EncoderError> {
        let size = prefix.preprocess.size as usize;
        let export = ExportOptions {
            input_size: None,
            logits: false,
            feature_map: true,
        };
        let bytes = encoder_to_onnx(prefix, weights, export).map_err(|e| backend_err("onnx", e))?;
        let session = session_from_onnx(&bytes, opts).map_err(|e| backend_err("onnxruntime", e))?;
        Ok(PrefixEncoder::Ort(Box::new(session), size))
    }

    /// On burn (slower; no ONNX Runtime needed).
    pub fn burn(prefix: &NetSpec, weights: &StateDict) -> Result<PrefixEncoder, EncoderError> {
        let size = prefix.preprocess.size as usize;
        let net = EncoderNet::from_spec(prefix, weights, &default_device())?;
        Ok(PrefixEncoder::Burn(Box::new(net), size))
    }

    /// The engine it runs on.
    pub fn backend(&self) -> &'static str {
        match self {
            PrefixEncoder::Ort(..) => "onnxruntime",
            PrefixEncoder::Burn(..) => "burn",
        }
    }

    /// `n` preprocessed images (`n × 3 × S × S`) to `n` activations (NCHW, flat).
    pub fn encode(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>, EncoderError> {
        match self {
            PrefixEncoder::Ort(s, size) => {
                check_batch(x, n, *size as u32)?;
                run_images(s, x, n, *size, "feature_map").map_err(|e| backend_err("onnxruntime", e))
            }
            PrefixEncoder::Burn(net, size) => {
                check_batch(x, n, *size as u32)?;
                let t = burn::tensor::Tensor::<4>::from_data(
                    burn::tensor::TensorData::new(x.to_vec(), [n, 3, *size, *size]),
                    &default_device(),
                );
                net.forward_map(t)
                    .into_data()
                    .try_into_vec::<f32>()
                    .map_err(|e| backend_err("burn-flex", format!("{e:?}")))
            }
        }
    }
}
