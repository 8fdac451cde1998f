//! Where a run gets its encoder: pretrained weights from graft's cache or a fine-tune's own
//! file, run by ONNX Runtime when its library is found, else by burn. The one place backends
//! are chosen for extraction, evaluation, prediction, export and fine-tuning's prefix.

use std::sync::Once;

use graft_model::arch::{spec_for, EncoderKind, NetSpec};
use graft_model::burn_backend::BurnEncoder;
use graft_model::encoder::ImageEncoder;
use graft_model::ort_backend::{OrtEncoder, OrtOptions};
use graft_model::prefix::PrefixEncoder;
use graft_model::weights::StateDict;
use graft_train::HeadModel;

use crate::{notes, RunDir, RunError};

/// Which engine runs the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// ONNX Runtime when its library is found, else burn (said once).
    #[default]
    Auto,
    /// ONNX Runtime only (fails if the library is missing).
    Ort,
    /// burn's pure-Rust `flex` backend (no setup, slower).
    Burn,
}

impl Backend {
    /// As the command line's `--backend` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Ort => "ort",
            Backend::Burn => "burn",
        }
    }
}

/// The weights of `kind` from graft's cache (found, verified, loaded) and the network they
/// describe.
pub fn load_weights(kind: EncoderKind) -> Result<(NetSpec, StateDict), RunError> {
    let cache = graft_model::fetch::cache_dir();
    let weights = graft_model::fetch::load(kind, &cache)
        .map_err(|e| RunError::Invalid(format!("loading the {kind} weights: {e}")))?;
    let spec = spec_for(kind, &weights)?;
    Ok((spec, weights))
}

/// The encoder weights a trained run uses: its fine-tuned file when it has one
/// (`model.json`'s `encoder_file`), else the pretrained weights from graft's cache.
pub fn load_run_weights(run: &RunDir, model: &HeadModel) -> Result<(NetSpec, StateDict), RunError> {
    let kind = model.meta.encoder;
    let Some(file) = &model.meta.encoder_file else {
        return load_weights(kind);
    };
    let path = run.root().join(file);
    let weights = graft_model::weights::load_safetensors(&path).map_err(|e| {
        RunError::Invalid(format!(
            "loading the fine-tuned encoder {} (rerun `graft finetune` if it is missing): {e}",
            path.display()
        ))
    })?;
    let spec = spec_for(kind, &weights).map_err(|e| {
        RunError::Invalid(format!("{} does not hold a {kind}: {e}", path.display()))
    })?;
    Ok((spec, weights))
}

/// A ready encoder for a trained run ([`load_run_weights`]).
pub fn open_run_encoder(
    run: &RunDir,
    model: &HeadModel,
    backend: Backend,
) -> Result<Box<dyn ImageEncoder>, RunError> {
    let (spec, weights) = load_run_weights(run, model)?;
    encoder_from(&spec, &weights, backend)
}

/// A ready encoder of `kind` (weights found, verified and loaded).
pub fn open_encoder(
    kind: EncoderKind,
    backend: Backend,
) -> Result<Box<dyn ImageEncoder>, RunError> {
    let (spec, weights) = load_weights(kind)?;
    encoder_from(&spec, &weights, backend)
}

/// An encoder over weights already loaded with [`load_weights`].
pub fn encoder_from(
    spec: &NetSpec,
    weights: &StateDict,
    backend: Backend,
) -> Result<Box<dyn ImageEncoder>, RunError> {
    on_backend(
        backend,
        |opts| Ok(Box::new(OrtEncoder::new(spec, weights, opts)?) as Box<dyn ImageEncoder>),
        || Ok(Box::new(BurnEncoder::new(spec.kind, weights)?)),
    )
}

/// The encoder up to a cut (`prefix`, a truncated spec), for fine-tuning's activation cache.
pub fn prefix_encoder(
    prefix: &NetSpec,
    weights: &StateDict,
    backend: Backend,
) -> Result<PrefixEncoder, RunError> {
    on_backend(
        backend,
        |opts| Ok(PrefixEncoder::ort(prefix, weights, opts)?),
        || Ok(PrefixEncoder::burn(prefix, weights)?),
    )
}

/// The one place that chooses the engine: ONNX Runtime unless burn is asked for; with
/// [`Backend::Auto`], burn (with a note, once) when ONNX Runtime cannot start.
fn on_backend<T>(
    backend: Backend,
    ort: impl FnOnce(OrtOptions) -> Result<T, RunError>,
    burn: impl FnOnce() -> Result<T, RunError>,
) -> Result<T, RunError> {
    if backend != Backend::Burn {
        // ONNX Runtime gets as many threads as graft's pool (`--threads`, default all cores).
        let opts = OrtOptions {
            intra_threads: Some(rayon::current_num_threads()),
            ..OrtOptions::default()
        };
        match ort(opts) {
            Ok(enc) => return Ok(enc),
            Err(err) if backend == Backend::Auto => {
                static SAID: Once = Once::new();
                SAID.call_once(|| {
                    notes::note(&format!(
                        "note: ONNX Runtime unavailable ({err}); using the slower burn encoder. \
                         Run scripts/fetch-onnxruntime.sh or set ORT_DYLIB_PATH for full speed."
                    ))
                });
            }
            Err(err) => {
                return Err(RunError::Invalid(format!(
                    "opening the ONNX Runtime encoder: {err}"
                )))
            }
        }
    }
    burn()
}

/// Identity of the cached weights of `kind`, stored in caches so features of other weights
/// are never mixed in (see [`graft_model::fetch::weights_id`]).
pub fn weights_id(kind: EncoderKind) -> String {
    graft_model::fetch::weights_id(kind, &graft_model::fetch::cache_dir())
}

/// What `model` reads for `n` preprocessed images: pooled features, or the feature maps when
/// its head attends over locations.
pub fn head_input(
    encoder: &mut dyn ImageEncoder,
    model: &HeadModel,
    input: &[f32],
    n: usize,
) -> Result<Vec<f32>, RunError> {
    let maps = model.reads_maps();
    let out = encoder.encode(input, n, maps)?;
    let x = if maps {
        out.feature_map.ok_or_else(|| {
            RunError::Invalid("the encoder gave no feature map for an attention head".into())
        })?
    } else {
        out.features
    };
    if x.len() != n * model.row_len() {
        return Err(RunError::Invalid(format!(
            "the encoder gives {} values per image, the head reads {} (a run from another \
             encoder or input size?)",
            x.len() / n.max(1),
            model.row_len()
        )));
    }
    Ok(x)
}
