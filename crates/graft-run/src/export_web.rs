//! `graft export --format web`: the run's exported classifier as a static folder that runs in
//! the browser (graft-export's [`graft_export::web`] writes it; this reads the run).

use std::path::{Path, PathBuf};

use graft_data::class_info::ClassInfo;
use graft_train::HeadModel;

use crate::{Context, Precision, RunDir, RunError};

/// The ONNX Runtime Web version scripts/fetch-onnxruntime-web.sh fetches.
pub const ORT_WEB_VERSION: &str = "1.31.1";

/// Where ONNX Runtime Web's files are: `$GRAFT_ORT_WEB_DIR`, else the folder
/// scripts/fetch-onnxruntime-web.sh fills (`${GRAFT_CACHE:-~/.cache/graft}/onnxruntime-web/VERSION`).
pub fn ort_web_dir() -> PathBuf {
    std::env::var_os("GRAFT_ORT_WEB_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            graft_model::fetch::cache_dir()
                .join("onnxruntime-web")
                .join(ORT_WEB_VERSION)
        })
}

/// What `graft export --format web` writes.
#[derive(Debug, Clone)]
pub struct WebRequest<'a> {
    /// Which of the run's exported files goes in (it must exist: `graft export` first).
    pub precision: Precision,
    pub out: &'a Path,
    pub threshold: f32,
    pub top: usize,
    /// ONNX Runtime Web's folder ([`ort_web_dir`]).
    pub runtime: PathBuf,
    /// Where the page sends the predictions it made offline (`/`: the server serving it).
    pub api: Option<String>,
}

/// Write the run's exported classifier as a static web app that runs in the browser.
pub fn export_web(
    run: &RunDir,
    req: &WebRequest<'_>,
) -> Result<graft_export::web::WebFiles, RunError> {
    let model = HeadModel::load(run.root())
        .with_context(|| format!("loading the model of run {}", run.root().display()))?;
    let onnx = run.onnx(req.precision);
    let bytes = std::fs::read(&onnx).map_err(|e| RunError::read(&onnx, e))?;
    let class_info = match std::fs::read_to_string(run.class_info()) {
        Ok(text) => ClassInfo::parse(&text, &run.class_info(), &model.meta.classes)
            .map_err(|e| RunError::Settings {
                path: e.path,
                reason: e.why,
            })?
            .to_json(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(RunError::read(&run.class_info(), e)),
    };
    // graft's graphs call their input "input"; a user's ONNX encoder keeps its own name.
    let input = graft_model::onnx::read_model(&bytes)
        .ok()
        .and_then(|info| info.inputs.first().map(|i| i.name.clone()))
        .unwrap_or_else(|| "input".into());
    let meta = graft_export::web::WebMeta {
        name: run.name(),
        encoder: model.meta.encoder.to_string(),
        classes: model.meta.classes.clone(),
        class_info,
        preprocess: model.meta.preprocess,
        threshold: req.threshold,
        top: req.top.clamp(1, model.meta.classes.len().max(1)),
        input,
        output: graft_export::PROBABILITIES.into(),
        precision: req.precision.name().into(),
        sha256: graft_data::hash::sha256_bytes(&bytes),
        trained_ms: run.trained_ms(),
        graft: env!("CARGO_PKG_VERSION").into(),
        api: req.api.clone(),
    };
    let app = graft_export::web::WebApp {
        model: &bytes,
        meta: &meta,
        runtime: &req.runtime,
    };
    graft_export::web::write_web(req.out, &app).map_err(|e| RunError::Invalid(e.to_string()))
}
