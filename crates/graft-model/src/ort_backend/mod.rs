//! Inference through ONNX Runtime, loaded at run time (`ort` with `load-dynamic`): graft builds
//! and runs without it, and uses it when the shared library can be found.

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::Environment;
pub use ort::session::Session;
use ort::session::{OutputSelector, RunOptions};
use ort::value::TensorRef;

use crate::arch::NetSpec;
use crate::encoder::{EncoderError, EncoderOutput, ImageEncoder};
use crate::onnx::{encoder_to_onnx, ExportOptions};
use crate::weights::StateDict;

mod file;
pub use file::OnnxFileEncoder;

/// The library file the fetch script unpacks (from the `onnxruntime` 1.32 wheel).
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.32.0";
const BACKEND: &str = "onnxruntime";

#[derive(Debug, thiserror::Error)]
pub enum OrtError {
    #[error(
        "ONNX Runtime not found ({detail}); run scripts/fetch-onnxruntime.sh, or set \
         ORT_DYLIB_PATH to a libonnxruntime shared library (1.32 or newer)"
    )]
    NotFound { detail: String },
    #[error("loading ONNX Runtime from {path}: {detail}")]
    Load { path: PathBuf, detail: String },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    /// A failure to load, remembered from the first attempt.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Export(#[from] crate::onnx::OnnxError),
    #[error(transparent)]
    File(#[from] crate::choice::OnnxEncoderError),
}

impl From<ort::Error> for OrtError {
    fn from(e: ort::Error) -> Self {
        OrtError::Runtime(e.to_string())
    }
}

impl From<OrtError> for EncoderError {
    fn from(e: OrtError) -> Self {
        EncoderError::Backend {
            backend: BACKEND,
            detail: e.to_string(),
        }
    }
}

/// graft's cache folder for the library: `${GRAFT_CACHE:-~/.cache/graft}/onnxruntime`.
pub fn default_library_dir() -> Option<PathBuf> {
    let base = std::env::var_os("GRAFT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/graft")))?;
    Some(base.join("onnxruntime"))
}

/// `ORT_DYLIB_PATH` if set (it must exist), else the fetch script's file in graft's cache.
pub fn library_path() -> Result<PathBuf, OrtError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(OrtError::NotFound {
                detail: format!("ORT_DYLIB_PATH={} is not a file", p.display()),
            })
        };
    }
    let dir = default_library_dir().ok_or_else(|| OrtError::NotFound {
        detail: "neither ORT_DYLIB_PATH nor HOME is set".into(),
    })?;
    let p = dir.join(ORT_LIBRARY_FILE);
    if p.is_file() {
        Ok(p)
    } else {
        Err(OrtError::NotFound {
            detail: format!("no {}", p.display()),
        })
    }
}

/// Load the library and create the process-wide environment, once; later calls return the
/// same result (ONNX Runtime cannot be loaded twice in one process).
pub fn environment() -> Result<&'static Environment, OrtError> {
    static ENV: OnceLock<Result<Environment, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = library_path().map_err(|e| e.to_string())?;
        let load = |detail: String| {
            OrtError::Load {
                path: path.clone(),
                detail,
            }
            .to_string()
        };
        let env = ort::init_from(&path)
            .map_err(|e| load(e.to_string()))?
            .with_name("graft")
            .build()
            .map_err(|e| load(e.to_string()))?;
        tracing::info!("ONNX Runtime loaded from {}", path.display());
        Ok(env)
    })
    .as_ref()
    .map_err(|e| OrtError::Unavailable(e.clone()))
}

/// Whether ONNX Runtime can be used in this process (loads it on first call).
pub fn available() -> bool {
    environment().is_ok()
}

/// Session settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrtOptions {
    /// Threads used inside each operator; all cores when `None`.
    pub intra_threads: Option<usize>,
    /// Whether idle worker threads spin waiting for the next run (`None`: ONNX Runtime's
    /// default, spinning). Spinning wins for back-to-back batches; a server sharing its cores
    /// with request decoding does better without it.
    pub spinning: Option<bool>,
}

/// A session over a serialised ONNX model.
pub fn session_from_onnx(model: &[u8], opts: OrtOptions) -> Result<Session, OrtError> {
    let env = environment()?;
    let threads = opts.intra_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut builder = Session::builder(env)?
        .with_intra_threads(threads)
        .map_err(ort::Error::from)?;
    if let Some(spin) = opts.spinning {
        builder = builder
            .with_intra_op_spinning(spin)
            .map_err(ort::Error::from)?;
    }
    Ok(builder.commit_from_memory(model)?)
}

/// Run a model with one image input `input` (`[n, 3, size, size]`) and return its `output`.
pub fn run_images(
    session: &mut Session,
    input: &[f32],
    n: usize,
    size: usize,
    output: &str,
) -> Result<Vec<f32>, OrtError> {
    let mut outs = run_images_outputs(session, input, n, size, &[output])?;
    Ok(outs.pop().unwrap_or_default())
}

/// [`run_images`] returning several outputs, in the order of `outputs`.
pub fn run_images_outputs(
    session: &mut Session,
    input: &[f32],
    n: usize,
    size: usize,
    outputs: &[&str],
) -> Result<Vec<Vec<f32>>, OrtError> {
    let (name, fixed_batch) = image_input(session)?;
    // A file exported without a dynamic batch axis takes its fixed batch (one image) at a time.
    let step = match fixed_batch {
        Some(b) if b < n => b,
        _ => n,
    };
    let per = 3 * size * size;
    let mut all: Vec<Vec<f32>> = vec![Vec::new(); outputs.len()];
    for start in (0..n).step_by(step.max(1)) {
        let m = step.min(n - start);
        let part = &input[start * per..(start + m) * per];
        let tensor = TensorRef::from_array_view(([m, 3, size, size], part))?;
        let got = session.run(ort::inputs![name.as_str() => tensor])?;
        for (out, &output) in all.iter_mut().zip(outputs) {
            let v = got
                .get(output)
                .ok_or_else(|| OrtError::Runtime(format!("no output `{output}`")))?;
            let (_, data) = v.try_extract_tensor::<f32>()?;
            out.extend_from_slice(data);
        }
    }
    Ok(all)
}

/// The session's image input: its name (graft's own graphs call it "input"; a user's file
/// may not) and the batch size it is fixed to, if it is.
pub fn image_input(session: &Session) -> Result<(String, Option<usize>), OrtError> {
    let first = session
        .inputs()
        .first()
        .ok_or_else(|| OrtError::Runtime("the model has no input".into()))?;
    let batch = first
        .dtype()
        .tensor_shape()
        .and_then(|s| s.first().copied())
        .and_then(|b| usize::try_from(b).ok())
        .filter(|b| *b > 0);
    Ok((first.name().to_string(), batch))
}

/// A pretrained encoder exported to ONNX and run by ONNX Runtime.
pub struct OrtEncoder {
    session: Session,
    feature_dim: usize,
    classes: usize,
    size: usize,
    map_size: usize,
    /// Runs that skip the `feature_map` output (ONNX Runtime then does not copy it).
    without_map: RunOptions<ort::session::HasSelectedOutputs>,
}

impl OrtEncoder {
    /// Export `spec` at its preprocessing size and open a session on it.
    pub fn new(spec: &NetSpec, weights: &StateDict, opts: OrtOptions) -> Result<Self, OrtError> {
        let export = ExportOptions {
            input_size: None,
            logits: true,
            feature_map: true,
        };
        let model = encoder_to_onnx(spec, weights, export)?;
        let size = spec.preprocess.size as usize;
        Ok(OrtEncoder {
            session: session_from_onnx(&model, opts)?,
            feature_dim: spec.feature_dim,
            classes: spec.classifier.as_ref().map_or(0, |c| c.out_features),
            size,
            map_size: spec.feature_map_size(size),
            without_map: RunOptions::new()?.with_outputs(if spec.classifier.is_some() {
                OutputSelector::no_default().with("features").with("logits")
            } else {
                OutputSelector::no_default().with("features")
            }),
        })
    }

    /// Side of the last feature map.
    pub fn feature_map_size(&self) -> usize {
        self.map_size
    }
}

fn take(
    outputs: &ort::session::SessionOutputs<'_>,
    name: &str,
    want: usize,
) -> Result<Vec<f32>, OrtError> {
    let v = outputs
        .get(name)
        .ok_or_else(|| OrtError::Runtime(format!("no output `{name}`")))?;
    let (_, data) = v.try_extract_tensor::<f32>()?;
    if data.len() != want {
        return Err(OrtError::Runtime(format!(
            "output `{name}` has {} values, expected {want}",
            data.len()
        )));
    }
    Ok(data.to_vec())
}

impl ImageEncoder for OrtEncoder {
    fn feature_dim(&self) -> usize {
        self.feature_dim
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
        let s = self.size;
        crate::encoder::check_batch(input, n, s as u32)?;
        let tensor = TensorRef::from_array_view(([n, 3, s, s], input)).map_err(OrtError::from)?;
        let inputs = ort::inputs!["input" => tensor];
        let outputs = if want_feature_map {
            self.session.run(inputs)
        } else {
            self.session.run_with_options(inputs, &self.without_map)
        }
        .map_err(OrtError::from)?;
        let features = take(&outputs, "features", n * self.feature_dim)?;
        let logits = if self.classes > 0 {
            take(&outputs, "logits", n * self.classes)?
        } else {
            Vec::new()
        };
        let feature_map = if want_feature_map {
            let m = self.map_size;
            Some(take(&outputs, "feature_map", n * self.feature_dim * m * m)?)
        } else {
            None
        };
        Ok(EncoderOutput {
            features,
            logits,
            feature_map,
        })
    }
}
