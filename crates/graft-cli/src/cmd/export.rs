//! `graft export --run RUN`: the classifier as one ONNX file, validated against graft on the
//! run's test images, with a model card.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use graft_model::arch::{spec_for, EncoderKind};
use graft_model::ort_backend::{run_images, session_from_onnx, OrtOptions};
use graft_train::model::write_atomic;
use graft_train::HeadModel;

use crate::cli::ExportArgs;

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    if args.format != "onnx" {
        bail!(
            "format {:?} is not supported; use --format onnx",
            args.format
        );
    }
    let model = HeadModel::load(&args.run)
        .with_context(|| format!("loading the model of run {}", args.run.display()))?;
    let kind = encoder_kind(&model)?;
    let bytes = build_onnx(&model)?;

    // Validate before writing: the file on disk is always one that passed.
    let images = super::eval::held_out_images(&args.run, &model, args.validate)?;
    let pre = model.meta.preprocess;
    let mut input = Vec::with_capacity(images.len() * pre.len());
    let mut used = Vec::new();
    for p in &images {
        if let Ok((_, img)) = graft_data::decode::read_and_decode(p) {
            input.extend(pre.apply(&img));
            used.push(p.clone());
        }
    }
    let n = used.len();
    if n == 0 {
        bail!("no readable test image to validate the export on");
    }
    let opts = OrtOptions {
        intra_threads: Some(rayon::current_num_threads()),
        ..OrtOptions::default()
    };
    let mut session = session_from_onnx(&bytes, opts).context(
        "ONNX Runtime is needed to validate the export (scripts/fetch-onnxruntime.sh or ORT_DYLIB_PATH)",
    )?;
    let onnx_probs = run_images(
        &mut session,
        &input,
        n,
        pre.size as usize,
        graft_export::PROBABILITIES,
    )?;
    let mut encoder = super::encoder::open_encoder(kind, super::encoder::Backend::Auto)?;
    let feats = encoder.encode(&input, n, false)?.features;
    let graft_probs = model.predict_proba(&feats, n);
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
    let top = |p: &[f32]| graft_train::metrics::argmax_rows(p, c);
    let agree = top(&onnx_probs)
        .iter()
        .zip(top(&graft_probs))
        .filter(|(a, b)| **a == *b)
        .count();
    println!(
        "Validated on {n} images: max |p_onnx − p_graft| = {max_diff:.2e}, same top-1 on {agree}/{n}"
    );
    if max_diff >= 1e-4 || agree != n {
        bail!("the exported model does not match graft (limit 1e-4, all top-1 equal); not written");
    }

    let path = args.run.join("model.onnx");
    write_atomic(&path, &bytes)?;
    let sha = graft_model::weights::sha256_file(&path)?;
    let card = model_card(&args, &model, &sha, bytes.len(), n, max_diff);
    write_atomic(&args.run.join("model_card.md"), card.as_bytes())?;
    println!(
        "Wrote {} ({:.1} MB, sha256 {}) and model_card.md",
        path.display(),
        bytes.len() as f64 / 1e6,
        &sha[..16]
    );
    Ok(())
}

fn encoder_kind(model: &HeadModel) -> anyhow::Result<EncoderKind> {
    EncoderKind::from_name(&model.meta.encoder)
        .with_context(|| format!("the run uses an unknown encoder {:?}", model.meta.encoder))
}

/// The run's classifier as ONNX bytes (encoder weights from graft's cache), not validated.
pub fn build_onnx(model: &HeadModel) -> anyhow::Result<Vec<u8>> {
    let kind = encoder_kind(model)?;
    let weights = graft_model::fetch::load(kind, &graft_model::fetch::cache_dir())
        .with_context(|| format!("loading the {kind} weights"))?;
    let spec = spec_for(kind, &weights)?;
    Ok(graft_export::classifier_to_onnx(&spec, &weights, model)?)
}

fn model_card(
    args: &ExportArgs,
    model: &HeadModel,
    sha: &str,
    size: usize,
    validated: usize,
    max_diff: f32,
) -> String {
    let m = &model.meta;
    let metrics: serde_json::Value = std::fs::read(args.run.join("metrics.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Model card: {}\n",
        args.run
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let _ = writeln!(s, "## Files\n");
    let _ = writeln!(
        s,
        "- `model.onnx`: {:.1} MB, sha256 `{sha}`",
        size as f64 / 1e6
    );
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
    if let Some(e) = metrics["eval"].as_object().and_then(|o| o.values().next()) {
        let _ = writeln!(
            s,
            "- {} split, {} images: accuracy {:.4}, macro-F1 {:.4}, ECE {:.3}",
            e["split"].as_str().unwrap_or("?"),
            e["images"],
            e["accuracy"].as_f64().unwrap_or(0.0),
            e["macro_f1"].as_f64().unwrap_or(0.0),
            e["calibration"]["ece"].as_f64().unwrap_or(0.0)
        );
    }
    if let Some(r) = metrics["rows"].as_object() {
        let _ = writeln!(
            s,
            "- trained on {} images, validated on {}",
            r["train"], r["val"]
        );
    }
    let _ = writeln!(s, "- export check: {validated} images through ONNX Runtime vs graft, max probability difference {max_diff:.1e}, same top-1 on all\n");
    let _ = writeln!(s, "## Limits\n");
    let _ = writeln!(s, "- Knows only the classes above: any photo gets one of them. Treat a top probability below the threshold (default 0.70) as \"unsure\" and retake the photo.");
    let _ = writeln!(s, "- Quality holds for photos like the training set (same kind of camera, framing, light); measure again on new sources before relying on it.");
    s
}
