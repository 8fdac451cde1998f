//! `graft export` on a run folder: the classifier as one ONNX file (float, or INT8 after
//! calibration), checked against graft on the run's held-out images before it is written, its
//! record added to export.json and the model card rewritten. graft-export does the work on
//! plain values; this module reads the run and writes its files.

use std::path::PathBuf;

use graft_data::scan::Split;
use graft_export::card::{Card, Quality};
use graft_export::{
    AccuracyDrop, Agreement, ClassifierGraph, ExportRecord, ExportRecords, Int8, WeightBits,
};
use graft_model::ort_backend::{run_images, session_from_onnx, OrtOptions};
use graft_train::HeadModel;
use rayon::prelude::*;

use crate::encoder::RunEncoder;
use crate::files::{read_json_if_exists, write_file, write_json};
use crate::report::{Event, Reporter};
use crate::{Context, Metrics, Precision, RunDir, RunError};

/// Images per ONNX Runtime / encoder call while validating and calibrating.
const CHUNK: usize = 32;

/// What to export, and how strictly to check it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExportRequest {
    pub precision: Precision,
    /// Held-out (test, else val) images to validate on.
    pub validate: usize,
    /// INT8: training images whose activations set the quantization ranges.
    pub calibration: usize,
    /// INT8: leading encoder blocks kept in float.
    pub float_blocks: usize,
    /// INT8: levels of the quantized weights.
    pub weights: WeightBits,
    /// INT8: the largest accuracy drop (a fraction) a file may show and still be written.
    pub max_accuracy_drop: f64,
    /// INT8: write the file even past `max_accuracy_drop`.
    pub force: bool,
}

/// INT8 calibration is about to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibrating {
    pub images: usize,
    pub weights: WeightBits,
    pub cpu_vnni: bool,
}

/// INT8 accuracy, measured on the labelled validation images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccuracyChecked {
    pub float: f64,
    pub file: f64,
    pub drop: AccuracyDrop,
}

/// A file that passed and was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub path: PathBuf,
    pub record: ExportRecord,
}

/// Build, check and write `req.precision`'s file of `run`.
pub fn export(
    run: &RunDir,
    req: &ExportRequest,
    reporter: &dyn Reporter,
) -> Result<Exported, RunError> {
    let model = HeadModel::load(run.root())
        .with_context(|| format!("loading the model of run {}", run.root().display()))?;
    let encoder = crate::encoder::load_run_encoder(run, &model)?;

    // Validate before writing: the file on disk is always one that passed.
    let held = crate::held_out::split_images(run, &model, Split::Test, req.validate)?;
    let (input, labels) = preprocess_all(&model, &held);
    let n = labels.len();
    if n == 0 {
        return Err(RunError::Invalid(
            "no readable test image to validate the export on".into(),
        ));
    }
    let size = model.meta.preprocess.size as usize;
    let opts = OrtOptions {
        intra_threads: Some(rayon::current_num_threads()),
        ..OrtOptions::default()
    };

    let int8 = req.precision == Precision::Int8;
    let (bytes, calibration_images) = if int8 {
        let (spec, weights) = match &encoder {
            RunEncoder::Graft { spec, weights } => (spec, weights),
            RunEncoder::File { encoder, .. } => {
                return Err(crate::encoder::not_for_files(encoder, "INT8 export"))
            }
        };
        let train = crate::held_out::split_images(run, &model, Split::Train, req.calibration)?;
        let (cal_input, cal_labels) = preprocess_all(&model, &train);
        let m = cal_labels.len();
        if m == 0 {
            return Err(RunError::Invalid(
                "no readable training image to calibrate INT8 on".into(),
            ));
        }
        reporter.event(Event::Calibrating(&Calibrating {
            images: m,
            weights: req.weights,
            cpu_vnni: graft_export::cpu_has_vnni(),
        }));
        let cal = graft_export::calibrate(spec, weights, &cal_input, m, CHUNK, opts)
            .context("observing activation ranges (ONNX Runtime is needed)")?;
        let q = Int8 {
            calibration: &cal,
            float_blocks: req.float_blocks,
            weights: req.weights,
        };
        (
            graft_export::classifier_to_onnx_in(spec, weights, &model, Some(q))?,
            Some(m),
        )
    } else {
        (
            encoder.classifier_onnx(&model, ClassifierGraph::Probabilities)?,
            None,
        )
    };

    let mut session = session_from_onnx(&bytes, opts).context(
        "ONNX Runtime is needed to validate the export (scripts/fetch-onnxruntime.sh or ORT_DYLIB_PATH)",
    )?;
    let per = 3 * size * size;
    let mut onnx_probs = Vec::new();
    for chunk in input.chunks(CHUNK * per) {
        let k = chunk.len() / per;
        onnx_probs.extend(run_images(
            &mut session,
            chunk,
            k,
            size,
            graft_export::PROBABILITIES,
        )?);
    }
    let mut encoder = encoder.open(crate::Backend::Auto)?;
    let mut graft_probs = Vec::new();
    for chunk in input.chunks(CHUNK * per) {
        let k = chunk.len() / per;
        let x = crate::encoder::head_input(encoder.as_mut(), &model, chunk, k)?;
        graft_probs.extend(model.predict_proba(&x, k));
    }
    let c = model.meta.classes.len();
    if onnx_probs.len() != n * c {
        return Err(RunError::Invalid(format!(
            "the exported model gave {} values for {n} images × {c} classes",
            onnx_probs.len()
        )));
    }
    let agree = Agreement::measure(&onnx_probs, &graft_probs, c);
    let accuracy_graft = graft_export::accuracy(&agree.top_graft, &labels);
    let accuracy_file = graft_export::accuracy(&agree.top_file, &labels);
    reporter.event(Event::Validated(&agree));
    // Whether an INT8 file past the accuracy limit is written because of `force`.
    let forced = if int8 {
        let Some(drop) = AccuracyDrop::measure(&agree.top_graft, &agree.top_file, &labels) else {
            return Err(RunError::Invalid(
                "no validation image has a label the model knows; cannot check INT8 accuracy"
                    .into(),
            ));
        };
        reporter.event(Event::AccuracyChecked(&AccuracyChecked {
            float: accuracy_graft.unwrap_or(0.0),
            file: accuracy_file.unwrap_or(0.0),
            drop,
        }));
        let over = drop.exceeds(req.max_accuracy_drop);
        if over {
            if !req.force {
                return Err(RunError::AccuracyLimit {
                    drop: drop.drop(),
                    max: req.max_accuracy_drop,
                });
            }
            reporter.event(Event::ForcedPastLimit {
                max: req.max_accuracy_drop,
            });
        }
        over
    } else {
        if !agree.float_matches() {
            return Err(RunError::Invalid(format!(
                "the exported model does not match graft (limit {:e}, all top-1 equal); not written",
                graft_export::check::FLOAT_MAX_DIFF
            )));
        }
        false
    };

    let path = run.onnx(req.precision);
    write_file(&path, &bytes)?;
    let sha256 = graft_model::weights::sha256_file(&path)?;
    let record = ExportRecord {
        file: req.precision.file_name().to_string(),
        sha256,
        bytes: bytes.len(),
        validated: n,
        max_diff: agree.max_diff,
        same_top1: agree.same_top1,
        accuracy_graft,
        accuracy_file,
        calibration_images,
        int8_weights: int8.then_some(req.weights),
        cpu_vnni: int8.then(graft_export::cpu_has_vnni),
        forced,
    };
    let records = update_records(run, req.precision, record.clone())?;
    write_card(run, &model, &records)?;
    // What `graft monitor` judges the served model's traffic against: it depends on the
    // model and its training images, not on the precision, so one export writes it.
    let stale = !run.is_current(&run.reference());
    if let Err(e) = stale.then(|| crate::reference::write(run)).transpose() {
        reporter.event(Event::Note(format!(
            "note: no reference profile for graft monitor ({e}); it builds one when first run"
        )));
    }
    Ok(Exported { path, record })
}

/// The run's float classifier as ONNX bytes (the run's encoder weights), not validated.
pub fn float_onnx(run: &RunDir, model: &HeadModel) -> Result<Vec<u8>, RunError> {
    crate::encoder::load_run_encoder(run, model)?
        .classifier_onnx(model, ClassifierGraph::Probabilities)
}

/// The run's float classifier with every class's Grad-CAM map as an output (graft-export's
/// `grad_cam_to_onnx`), for `POST /explain`.
pub fn grad_cam_onnx(run: &RunDir, model: &HeadModel) -> Result<Vec<u8>, RunError> {
    crate::encoder::load_run_encoder(run, model)?.classifier_onnx(model, ClassifierGraph::GradCam)
}

/// Decoded and preprocessed images (unreadable ones skipped) with their class index, if the
/// model knows the label.
fn preprocess_all(
    model: &HeadModel,
    images: &[(PathBuf, String)],
) -> (Vec<f32>, Vec<Option<usize>>) {
    let pre = model.meta.preprocess;
    let done: Vec<(Vec<f32>, Option<usize>)> = images
        .par_iter()
        .filter_map(|(p, label)| {
            let (_, img) = graft_data::decode::read_and_decode(p).ok()?;
            let class = model.meta.classes.iter().position(|c| c == label);
            Some((pre.apply(&img), class))
        })
        .collect();
    let mut input = Vec::with_capacity(done.len() * pre.len());
    let mut labels = Vec::with_capacity(done.len());
    for (x, l) in done {
        input.extend(x);
        labels.push(l);
    }
    (input, labels)
}

/// Add `record` to RUN/export.json, dropping records of files that are gone or older than the
/// model (a retrained run makes them stale). A damaged export.json is started afresh.
fn update_records(
    run: &RunDir,
    precision: Precision,
    record: ExportRecord,
) -> Result<ExportRecords, RunError> {
    let path = run.export_records();
    let mut records: ExportRecords = read_json_if_exists(&path)
        .ok()
        .flatten()
        .unwrap_or_default();
    records.retain(|_, r| run.is_current(&run.root().join(&r.file)));
    records.insert(precision.name().to_string(), record);
    write_json(&path, &records)?;
    Ok(records)
}

/// RUN/model_card.md from the model, the run's metrics and `records`. A fine-tuned run keeps
/// other metrics; the card then quotes the export checks only.
fn write_card(run: &RunDir, model: &HeadModel, records: &ExportRecords) -> Result<(), RunError> {
    let metrics: Option<Metrics> = read_json_if_exists(&run.metrics()).ok().flatten();
    let quality = metrics
        .as_ref()
        .and_then(Metrics::headline_eval)
        .map(|e| Quality {
            split: e.split.clone(),
            images: e.images,
            accuracy: e.accuracy,
            macro_f1: e.macro_f1,
            ece: e.calibration.ece,
        });
    let name = run.name();
    let card = graft_export::card::model_card(&Card {
        name: &name,
        model,
        quality: quality.as_ref(),
        rows: metrics.as_ref().map(|m| (m.rows.train, m.rows.val)),
        records,
    });
    write_file(&run.model_card(), card.as_bytes())
}
