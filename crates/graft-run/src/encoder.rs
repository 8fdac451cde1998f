//! Where a run gets its encoder: pretrained weights from graft's cache or a fine-tune's own
//! file, run by ONNX Runtime when its library is found, else by burn. The one place backends
//! are chosen for extraction, evaluation, prediction, export and fine-tuning's prefix.

use std::sync::Once;

use graft_export::ClassifierGraph;
use graft_model::arch::{spec_for, EncoderKind, NetSpec};
use graft_model::burn_backend::BurnEncoder;
use graft_model::encoder::ImageEncoder;
use graft_model::ort_backend::{OnnxFileEncoder, OrtEncoder, OrtOptions};
use graft_model::prefix::PrefixEncoder;
use graft_model::weights::StateDict;
use graft_model::{Encoder, OnnxEncoder};
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

/// A run's encoder, loaded: one of graft's architectures with its weights, or a user's ONNX
/// file (its bytes, checked to be the file the run's features came from).
pub enum RunEncoder {
    Graft {
        spec: NetSpec,
        weights: StateDict,
    },
    File {
        encoder: OnnxEncoder,
        bytes: Vec<u8>,
    },
}

/// The encoder a trained run uses: its fine-tuned file when it has one (`model.json`'s
/// `encoder_file`), else the pretrained weights from graft's cache, or its ONNX file.
pub fn load_run_encoder(run: &RunDir, model: &HeadModel) -> Result<RunEncoder, RunError> {
    let kind = match &model.meta.encoder {
        Encoder::Known(k) => *k,
        Encoder::Onnx(o) => {
            let bytes = o.bytes_checked(&model.meta.weights)?;
            return Ok(RunEncoder::File {
                encoder: o.clone(),
                bytes,
            });
        }
    };
    let Some(file) = &model.meta.encoder_file else {
        let (spec, weights) = load_weights(kind)?;
        return Ok(RunEncoder::Graft { spec, weights });
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
    Ok(RunEncoder::Graft { spec, weights })
}

impl RunEncoder {
    /// A ready encoder on `backend` (an ONNX file needs ONNX Runtime).
    pub fn open(&self, backend: Backend) -> Result<Box<dyn ImageEncoder>, RunError> {
        match self {
            RunEncoder::Graft { spec, weights } => encoder_from(spec, weights, backend),
            RunEncoder::File { encoder, bytes } => file_encoder(encoder, bytes, backend),
        }
    }

    /// The float classifier of `model` over this encoder as ONNX bytes: `what` says which
    /// outputs besides "features" and "probabilities" (graft-export's classifier, explainer
    /// at the last map, or Grad-CAM graph).
    pub fn classifier_onnx(
        &self,
        model: &HeadModel,
        what: ClassifierGraph,
    ) -> Result<Vec<u8>, RunError> {
        Ok(match self {
            RunEncoder::Graft { spec, weights } => match what {
                ClassifierGraph::Probabilities => {
                    graft_export::classifier_to_onnx(spec, weights, model)?
                }
                ClassifierGraph::FeatureMap => {
                    graft_export::explainer_to_onnx(spec, weights, model, None)?
                }
                ClassifierGraph::GradCam => graft_export::grad_cam_to_onnx(spec, weights, model)?,
            },
            RunEncoder::File { encoder, bytes } => {
                let side = file_map_side(encoder, bytes)?;
                graft_export::file_classifier_to_onnx(encoder, bytes.clone(), side, model, what)?
            }
        })
    }
}

/// The side of an ONNX encoder's feature map (`None` when it gives pooled features): as the
/// file declares it, else from a run on a blank image.
pub fn file_map_side(encoder: &OnnxEncoder, bytes: &[u8]) -> Result<Option<usize>, RunError> {
    let layout = encoder.layout(bytes)?;
    if layout.pooled {
        return Ok(None);
    }
    if layout.map_side.is_some() {
        return Ok(layout.map_side);
    }
    Ok(open_file_encoder(encoder, bytes, Backend::Ort)?.feature_map_size())
}

/// The architecture and weights of a run's encoder, for work that changes or cuts the network
/// (fine-tuning, Grad-CAM at an earlier block, INT8, randomising blocks): `doing` names that
/// work in the message when the run's encoder is an ONNX file, which graft runs as it is.
pub fn load_run_weights(
    run: &RunDir,
    model: &HeadModel,
    doing: &str,
) -> Result<(NetSpec, StateDict), RunError> {
    match load_run_encoder(run, model)? {
        RunEncoder::Graft { spec, weights } => Ok((spec, weights)),
        RunEncoder::File { encoder, .. } => Err(not_for_files(&encoder, doing)),
    }
}

/// Why `doing` cannot be done with the ONNX encoder `encoder`.
pub fn not_for_files(encoder: &OnnxEncoder, doing: &str) -> RunError {
    RunError::Invalid(format!(
        "{doing} needs one of graft's own encoders (see `graft models list`); this run's encoder \
         is the ONNX file {}, which graft runs as it is but cannot change or cut",
        encoder.onnx.display()
    ))
}

/// A ready encoder for a trained run ([`load_run_encoder`]).
pub fn open_run_encoder(
    run: &RunDir,
    model: &HeadModel,
    backend: Backend,
) -> Result<Box<dyn ImageEncoder>, RunError> {
    load_run_encoder(run, model)?.open(backend)
}

/// A ready encoder (weights found, verified and loaded; a file read and tried).
pub fn open_encoder(
    encoder: &Encoder,
    backend: Backend,
) -> Result<Box<dyn ImageEncoder>, RunError> {
    match encoder {
        Encoder::Known(kind) => {
            let (spec, weights) = load_weights(*kind)?;
            encoder_from(&spec, &weights, backend)
        }
        Encoder::Onnx(o) => file_encoder(o, &o.bytes()?, backend),
    }
}

/// A user's ONNX file on ONNX Runtime (burn cannot run an arbitrary graph).
pub fn file_encoder(
    encoder: &OnnxEncoder,
    bytes: &[u8],
    backend: Backend,
) -> Result<Box<dyn ImageEncoder>, RunError> {
    Ok(Box::new(open_file_encoder(encoder, bytes, backend)?))
}

/// [`file_encoder`] as its own type (which knows its map's side).
pub fn open_file_encoder(
    encoder: &OnnxEncoder,
    bytes: &[u8],
    backend: Backend,
) -> Result<OnnxFileEncoder, RunError> {
    if backend == Backend::Burn {
        return Err(RunError::Invalid(format!(
            "{} is an ONNX file: it runs on ONNX Runtime, not burn (leave the backend at auto \
             or ort)",
            encoder.onnx.display()
        )));
    }
    let opts = OrtOptions {
        intra_threads: Some(rayon::current_num_threads()),
        ..OrtOptions::default()
    };
    OnnxFileEncoder::new(encoder, bytes, opts).map_err(|e| {
        RunError::Invalid(format!(
            "opening the ONNX encoder {}: {e}",
            encoder.onnx.display()
        ))
    })
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

/// Identity of an encoder's weights, stored in caches and models so features of other weights
/// are never mixed in: the cached weights' id for a known encoder (see
/// [`graft_model::fetch::weights_id`]), the file's content id for an ONNX file.
pub fn weights_id(encoder: &Encoder) -> Result<String, RunError> {
    match encoder {
        Encoder::Known(kind) => Ok(graft_model::fetch::weights_id(
            *kind,
            &graft_model::fetch::cache_dir(),
        )),
        Encoder::Onnx(o) => Ok(o.id_of(&o.bytes()?)),
    }
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
