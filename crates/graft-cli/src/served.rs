//! A run's model as `graft serve` and `graft bench serve` load it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use graft_serve::{ClassInfo, ServedModel};
use graft_train::HeadModel;

use crate::cli::Precision;

/// The run's model as the service needs it: ONNX bytes (RUN/model.onnx, or built now when it is
/// missing or older than the model), classes and preprocessing, and the per-class information.
pub fn load_model(
    run: &Path,
    classes_info: Option<&Path>,
    precision: Precision,
) -> anyhow::Result<ServedModel> {
    served_model(run, &head_model(run)?, classes_info, precision)
}

/// The run's trained head and its metadata.
pub fn head_model(run: &Path) -> anyhow::Result<HeadModel> {
    HeadModel::load(run).with_context(|| format!("loading the model of run {}", run.display()))
}

/// [`load_model`] for the run's `model`, already loaded.
pub fn served_model(
    run: &Path,
    model: &HeadModel,
    classes_info: Option<&Path>,
    precision: Precision,
) -> anyhow::Result<ServedModel> {
    let dir = graft_run::RunDir::new(run);
    let file_name = precision.file_name();
    let file = dir.onnx(precision);
    let fresh = dir.is_current(&file);
    let (onnx, onnx_origin) = if fresh {
        let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        (bytes, file_name.to_string())
    } else if precision == Precision::Int8 {
        // Quantization needs calibration and an accuracy check: never done silently here.
        let why = if file.exists() {
            "is older than the model"
        } else {
            "does not exist"
        };
        bail!(
            "{} {why}; write it first with `graft export --run {} --precision int8`",
            file.display(),
            run.display()
        );
    } else {
        if file.exists() {
            note!(
                "note: {} is older than the model; serving a graph built from the model now \
                 (run `graft export` to refresh the file)",
                file.display()
            );
        }
        (
            graft_run::export::float_onnx(&dir, model)?,
            "built at start-up; `graft export` writes and validates model.onnx".to_string(),
        )
    };
    let info_path: Option<PathBuf> = classes_info
        .map(Path::to_path_buf)
        .or_else(|| Some(dir.class_info()).filter(|p| p.is_file()));
    let class_info = match &info_path {
        Some(p) => ClassInfo::load(p, &model.meta.classes)?,
        None => ClassInfo::default(),
    };
    let name = run
        .file_name()
        .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned());
    Ok(ServedModel {
        name,
        run: run.display().to_string(),
        onnx,
        onnx_origin,
        encoder: model.meta.encoder.to_string(),
        preprocess: model.meta.preprocess,
        classes: model.meta.classes.clone(),
        class_info,
        registered: None,
        explainer: None,
        trained_ms: dir.trained_ms(),
    })
}

/// `POST /explain`'s graph and settings for the run (its `[explain]` table of config.toml),
/// or why there is none: the service then runs without the route.
pub fn explainer(
    run: &Path,
    model: &HeadModel,
) -> anyhow::Result<(graft_serve::Explainable, graft_serve::ExplainSettings)> {
    let dir = graft_run::RunDir::new(run);
    let onnx = graft_run::export::grad_cam_onnx(&dir, model)?;
    let config = dir.config();
    let c = if config.is_file() {
        graft_run::explain::ExplainConfig::read(&config)?
    } else {
        graft_run::explain::ExplainConfig::default()
    };
    let settings = graft_serve::ExplainSettings {
        perturb_share: c.top_share,
        steps: c.steps,
        thresholds: c.thresholds(),
    };
    let explainable = graft_serve::Explainable {
        onnx,
        attention: model.reads_maps(),
    };
    Ok((explainable, settings))
}
