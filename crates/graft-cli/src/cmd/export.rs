//! `graft export --run RUN`: the classifier as one ONNX file (float, or INT8 after calibration),
//! validated against graft on the run's held-out images, with a model card.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context};
use graft_data::scan::Split;
use graft_model::onnx::Precision as GraphPrecision;
use graft_model::ort_backend::{calibrate, run_images, session_from_onnx, OrtOptions};
use graft_run::files::{read_json_if_exists, write_file, write_json};
use graft_run::{ExportRecord, ExportRecords, RunDir};
use graft_train::HeadModel;
use rayon::prelude::*;

use crate::cli::{ExportArgs, Precision};

/// Images per ONNX Runtime / encoder call while validating and calibrating.
const CHUNK: usize = 32;

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    if args.format != "onnx" {
        bail!(
            "format {:?} is not supported; use --format onnx",
            args.format
        );
    }
    let run = RunDir::new(&args.run);
    let model = HeadModel::load(&args.run)
        .with_context(|| format!("loading the model of run {}", args.run.display()))?;
    let (spec, weights) = graft_run::encoder::load_run_weights(&run, &model)?;

    // Validate before writing: the file on disk is always one that passed.
    let held = graft_run::held_out::split_images(&run, &model, Split::Test, args.validate)?;
    let (input, labels) = preprocess_all(&model, &held);
    let n = labels.len();
    if n == 0 {
        bail!("no readable test image to validate the export on");
    }
    let size = model.meta.preprocess.size as usize;
    let opts = OrtOptions {
        intra_threads: Some(rayon::current_num_threads()),
        ..OrtOptions::default()
    };

    let bits = args.int8_weights.resolve();
    let (bytes, calibration_images) = match args.precision {
        Precision::Fp32 => (
            graft_export::classifier_to_onnx(&spec, &weights, &model)?,
            None,
        ),
        Precision::Int8 => {
            let train =
                graft_run::held_out::split_images(&run, &model, Split::Train, args.calibration)?;
            let (cal_input, cal_labels) = preprocess_all(&model, &train);
            let m = cal_labels.len();
            if m == 0 {
                bail!("no readable training image to calibrate INT8 on");
            }
            say!(
                "Calibrating INT8 activation ranges on {m} training images ({} weights{})…",
                bits.name(),
                match (bits, graft_model::onnx::quant::cpu_has_vnni()) {
                    (graft_model::onnx::WeightBits::Seven, false) =>
                        ": this CPU has no VNNI, where 8-bit weights can saturate",
                    _ => "",
                }
            );
            let cal = calibrate(&spec, &weights, &cal_input, m, CHUNK, opts)
                .context("observing activation ranges (ONNX Runtime is needed)")?;
            let graph = GraphPrecision::Int8 {
                calibration: &cal,
                float_blocks: args.float_blocks,
                weights: bits,
            };
            (
                graft_export::classifier_to_onnx_in(&spec, &weights, &model, graph)?,
                Some(m),
            )
        }
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
    let mut encoder = graft_run::encoder::encoder_from(&spec, &weights, graft_run::Backend::Auto)?;
    let mut graft_probs = Vec::new();
    for chunk in input.chunks(CHUNK * per) {
        let k = chunk.len() / per;
        let x = graft_run::encoder::head_input(encoder.as_mut(), &model, chunk, k)?;
        graft_probs.extend(model.predict_proba(&x, k));
    }
    let c = model.meta.classes.len();
    if onnx_probs.len() != n * c {
        bail!(
            "the exported model gave {} values for {n} images × {c} classes",
            onnx_probs.len()
        );
    }
    let max_diff = onnx_probs
        .iter()
        .zip(&graft_probs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let top_onnx = graft_train::metrics::argmax_rows(&onnx_probs, c);
    let top_graft = graft_train::metrics::argmax_rows(&graft_probs, c);
    let same_top1 = top_onnx
        .iter()
        .zip(&top_graft)
        .filter(|(a, b)| a == b)
        .count();
    let accuracy_graft = accuracy(&top_graft, &labels);
    let accuracy_file = accuracy(&top_onnx, &labels);
    say!(
        "Validated on {n} held-out images: max |p_onnx − p_graft| = {max_diff:.2e}, same top-1 on {same_top1}/{n}"
    );
    // Whether an INT8 file past the accuracy limit is written because of --force.
    let forced = match args.precision {
        Precision::Fp32 => {
            if max_diff >= 1e-4 || same_top1 != n {
                bail!("the exported model does not match graft (limit 1e-4, all top-1 equal); not written");
            }
            false
        }
        Precision::Int8 => {
            let Some(d) = AccuracyDrop::measure(&top_graft, &top_onnx, &labels) else {
                bail!(
                    "no validation image has a label the model knows; cannot check INT8 accuracy"
                );
            };
            let (lo, hi) = d.interval();
            say!(
                "  accuracy: graft (float) {:.4}, {} {:.4}: drop {:.1} points (95% interval {:.1} to {:.1})",
                accuracy_graft.unwrap_or(0.0),
                args.precision.file_name(),
                accuracy_file.unwrap_or(0.0),
                d.drop() * 100.0,
                lo * 100.0,
                hi * 100.0
            );
            let over = d.exceeds(args.max_accuracy_drop);
            if over {
                if !args.force {
                    bail!(
                        "INT8 loses {:.1} points of accuracy, more than --max-accuracy-drop {}; \
                         not written. Try --float-blocks with more blocks, --int8-weights 7, \
                         more --validate images, or serve the float model.onnx (--force \
                         writes it anyway)",
                        d.drop() * 100.0,
                        args.max_accuracy_drop
                    );
                }
                note!(
                    "warning: INT8 loses more than --max-accuracy-drop {}; written because of --force",
                    args.max_accuracy_drop
                );
            }
            over
        }
    };
    let int8 = args.precision == Precision::Int8;

    let path = run.onnx(args.precision);
    write_file(&path, &bytes)?;
    let sha = graft_model::weights::sha256_file(&path)?;
    let record = ExportRecord {
        file: args.precision.file_name().to_string(),
        sha256: sha.clone(),
        bytes: bytes.len(),
        validated: n,
        max_diff,
        same_top1,
        accuracy_graft,
        accuracy_file,
        calibration_images,
        int8_weights: int8.then_some(bits),
        cpu_vnni: int8.then(graft_model::onnx::quant::cpu_has_vnni),
        forced,
    };
    let records = update_records(&run, args.precision, record)?;
    let card = model_card(&run, &model, &records);
    write_file(&run.model_card(), card.as_bytes())?;
    say!(
        "Wrote {} ({:.1} MB, sha256 {}) and model_card.md",
        path.display(),
        bytes.len() as f64 / 1e6,
        &sha[..16]
    );
    Ok(())
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

/// Paired accuracy change from the float model to the exported one on the same images.
#[derive(Debug, Clone, Copy, PartialEq)]
struct AccuracyDrop {
    /// Labelled images.
    n: usize,
    /// Right in float, wrong in the file.
    lost: usize,
    /// Wrong in float, right in the file.
    gained: usize,
}

impl AccuracyDrop {
    fn measure(float: &[usize], file: &[usize], labels: &[Option<usize>]) -> Option<AccuracyDrop> {
        let mut d = AccuracyDrop {
            n: 0,
            lost: 0,
            gained: 0,
        };
        for ((&a, &b), l) in float.iter().zip(file).zip(labels) {
            let Some(l) = *l else { continue };
            d.n += 1;
            match (a == l, b == l) {
                (true, false) => d.lost += 1,
                (false, true) => d.gained += 1,
                _ => {}
            }
        }
        (d.n > 0).then_some(d)
    }

    fn drop(&self) -> f64 {
        (self.lost as f64 - self.gained as f64) / self.n as f64
    }

    /// Whether the file loses more than `max` of accuracy: a loss the images show (95% sure
    /// it is one, so one flip among a handful of images does not condemn a file) and larger
    /// than allowed.
    fn exceeds(&self, max: f64) -> bool {
        self.drop() > max && self.interval().0 > 0.0
    }

    /// 95% interval of the drop: only the images whose verdict changed carry information
    /// (McNemar), so a few flips on a small test split do not condemn the file.
    fn interval(&self) -> (f64, f64) {
        let half = 1.96 * ((self.lost + self.gained) as f64).sqrt() / self.n as f64;
        (self.drop() - half, self.drop() + half)
    }
}

fn accuracy(pred: &[usize], labels: &[Option<usize>]) -> Option<f64> {
    let known: Vec<(usize, usize)> = pred
        .iter()
        .zip(labels)
        .filter_map(|(&p, l)| l.map(|l| (p, l)))
        .collect();
    if known.is_empty() {
        return None;
    }
    let right = known.iter().filter(|(p, l)| p == l).count();
    Some(right as f64 / known.len() as f64)
}

/// Add `record` to RUN/export.json, dropping records of files that are gone or older than the
/// model (a retrained run makes them stale). A damaged export.json is started afresh.
fn update_records(
    run: &RunDir,
    precision: Precision,
    record: ExportRecord,
) -> anyhow::Result<ExportRecords> {
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

/// The run's float classifier as ONNX bytes (the run's encoder weights), not validated.
pub fn build_onnx(run: &RunDir, model: &HeadModel) -> anyhow::Result<Vec<u8>> {
    let (spec, weights) = graft_run::encoder::load_run_weights(run, model)?;
    Ok(graft_export::classifier_to_onnx(&spec, &weights, model)?)
}

fn model_card(run: &RunDir, model: &HeadModel, records: &ExportRecords) -> String {
    let m = &model.meta;
    // A fine-tuned run keeps other metrics; the card then quotes the export checks only.
    let metrics: Option<graft_run::Metrics> = read_json_if_exists(&run.metrics()).ok().flatten();
    let mut s = String::new();
    let _ = writeln!(s, "# Model card: {}\n", run.name());
    let _ = writeln!(s, "## Files\n");
    for (precision, r) in records {
        let what = match precision.as_str() {
            "int8" => "INT8 weights and activations (QDQ), head in float",
            _ => "float32",
        };
        let _ = writeln!(
            s,
            "- `{}`: {what}, {:.1} MB, sha256 `{}`",
            r.file,
            r.bytes as f64 / 1e6,
            r.sha256
        );
    }
    let _ = writeln!(
        s,
        "- input `input` `[N, 3, {0}, {0}]` float32, RGB, CHW",
        m.preprocess.size
    );
    let _ = writeln!(
        s,
        "- outputs `probabilities` `[N, {}]` (softmax, calibrated), `features` `[N, {}]`\n",
        m.classes.len(),
        m.feature_dim
    );
    let _ = writeln!(s, "## Preprocessing (must match)\n");
    let _ = writeln!(
        s,
        "Resize the shorter side to {} ({:?}, antialiased), centre-crop {}×{}, scale to 0–1, subtract mean {:?}, divide by std {:?}.\n",
        m.preprocess.resize_shorter, m.preprocess.filter, m.preprocess.size, m.preprocess.size, m.preprocess.mean, m.preprocess.std
    );
    let _ = writeln!(s, "## Model\n");
    let _ = writeln!(
        s,
        "- encoder: {} (weights {}), frozen",
        m.encoder, m.weights
    );
    let _ = writeln!(
        s,
        "- head: {} (lr {}, balance {}), temperature {:.3}",
        m.head, m.train.lr, m.train.balance, m.temperature
    );
    let _ = writeln!(
        s,
        "- classes ({}): {}\n",
        m.classes.len(),
        m.classes.join(", ")
    );
    let _ = writeln!(s, "## Quality\n");
    if let Some(e) = metrics.as_ref().and_then(graft_run::Metrics::headline_eval) {
        let _ = writeln!(
            s,
            "- {} split, {} images: accuracy {:.4}, macro-F1 {:.4}, ECE {:.3}",
            e.split, e.images, e.accuracy, e.macro_f1, e.calibration.ece
        );
    }
    if let Some(r) = metrics.as_ref().map(|m| m.rows) {
        let _ = writeln!(s, "- trained on {} images, validated on {}", r.train, r.val);
    }
    for r in records.values() {
        let _ = write!(
            s,
            "- export check of `{}`: {} held-out images through ONNX Runtime vs graft, max probability difference {:.1e}, same top-1 on {}/{}",
            r.file, r.validated, r.max_diff, r.same_top1, r.validated
        );
        if let (Some(a), Some(b)) = (r.accuracy_graft, r.accuracy_file) {
            let _ = write!(s, "; accuracy {b:.4} (graft float {a:.4})");
        }
        if let Some(c) = r.calibration_images {
            let _ = write!(s, "; activation ranges from {c} training images");
        }
        if let Some(bits) = r.int8_weights {
            let cpu = match r.cpu_vnni {
                Some(true) => "a CPU with VNNI",
                Some(false) => "a CPU without VNNI",
                None => "an unrecorded CPU",
            };
            let _ = write!(
                s,
                "; {} weights, exported and checked on {cpu}",
                bits.name()
            );
        }
        if r.forced {
            let _ = write!(s, "; **written with --force past the accuracy limit**");
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "\n## Limits\n");
    let _ = writeln!(s, "- Knows only the classes above: any photo gets one of them. Treat a top probability below the threshold (default 0.70) as \"unsure\" and retake the photo.");
    let _ = writeln!(s, "- Quality holds for photos like the training set (same kind of camera, framing, light); measure again on new sources before relying on it.");
    match records.get("int8").and_then(|r| r.int8_weights) {
        Some(graft_model::onnx::WeightBits::Eight) => {
            let _ = writeln!(s, "- The INT8 file has 8-bit weights: right on CPUs with VNNI (AVX-512 VNNI, AVX-VNNI) and on ARM, but on x86-64 CPUs without VNNI (AVX2 laptops) ONNX Runtime's uint8×int8 kernels can saturate and lose accuracy. For those, export with `--int8-weights 7`.");
        }
        Some(graft_model::onnx::WeightBits::Seven) => {
            let _ = writeln!(s, "- The INT8 file has 7-bit weights, which cannot saturate ONNX Runtime's 16-bit pair sums: right on every x86-64 CPU; fastest on CPUs with VNNI.");
        }
        None => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_drop_counts_only_changed_verdicts() {
        // Labels 0..6; float right on 0-3, the file right on 0-1 and 4.
        let labels: Vec<Option<usize>> = vec![Some(0), Some(1), Some(2), Some(3), Some(4), None];
        let float = [0, 1, 2, 3, 9, 5];
        let file = [0, 1, 9, 9, 4, 7];
        let d = AccuracyDrop::measure(&float, &file, &labels).expect("labelled");
        assert_eq!((d.n, d.lost, d.gained), (5, 2, 1));
        assert!((d.drop() - 0.2).abs() < 1e-12);
        let (lo, hi) = d.interval();
        let half = 1.96 * 3f64.sqrt() / 5.0;
        assert!((lo - (0.2 - half)).abs() < 1e-12 && (hi - (0.2 + half)).abs() < 1e-12);
        // Identical predictions: no drop and no uncertainty.
        let same = AccuracyDrop::measure(&float, &float, &labels).expect("labelled");
        assert_eq!(same.interval(), (0.0, 0.0));
        assert!(AccuracyDrop::measure(&float, &file, &[None; 6]).is_none());
    }

    #[test]
    fn the_gate_refuses_a_real_loss_past_the_limit_only() {
        let drop = |n, lost, gained| AccuracyDrop { n, lost, gained };
        // The demo on a CPU without VNNI with 8-bit weights: 5.3 points, interval 0.8 to 9.9.
        assert!(drop(150, 10, 2).exceeds(0.02));
        // One flip among 9 images: 11 points, but nothing the images can show.
        assert!(!drop(9, 1, 0).exceeds(0.02));
        // A real loss within the limit.
        assert!(!drop(2000, 30, 8).exceeds(0.02));
        assert!(drop(2000, 30, 8).exceeds(0.005));
    }
}
