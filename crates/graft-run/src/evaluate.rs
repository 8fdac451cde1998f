//! Stage 4 of a run: the head scored on held-out images from the feature cache — metrics
//! (into metrics.json), per-class table, figures and report.html.

use std::path::{Path, PathBuf};
use std::time::Instant;

use graft_data::scan::Split;
use graft_eval::plots::{self, Tile};
use graft_eval::report::{render, ReportInputs};
use graft_eval::{galleries, summarise, Evaluation, Latency, Prediction};
use graft_features::Origin;
use graft_model::Encoder;
use graft_train::HeadModel;

use crate::error::Context;
use crate::files::{read_json, write_file, write_json, Metrics};
use crate::held_out::{features_of, held_out_rows, model_inputs, open_run_cache};
use crate::report::{Event, Reporter};
use crate::{Figure, RunDir, RunError};

/// Which run to evaluate, on what.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub run: PathBuf,
    /// "test" (the val split when there is no test split), "val" or "train".
    pub split: Split,
    /// The feature cache; the run's own (run.json) when `None`.
    pub features: Option<PathBuf>,
    /// Time this many images one at a time, decode to probabilities (0: no timing).
    pub latency: usize,
}

/// What an evaluation found and wrote.
#[derive(Debug)]
pub struct Evaluated {
    pub eval: Evaluation,
    pub report: PathBuf,
}

/// Score the run's head on `req.split` and write metrics, figures and the report.
pub fn evaluate(req: &EvalRequest, reporter: &dyn Reporter) -> Result<Evaluated, RunError> {
    let note = |text: String| reporter.event(Event::Note(text));
    let run = RunDir::new(&req.run);
    let model = HeadModel::load(&req.run)
        .with_context(|| format!("loading the model of run {}", req.run.display()))?;
    if model.meta.encoder_file.is_some() {
        return Err(RunError::Invalid(format!(
            "{} holds a fine-tuned encoder, and `graft eval` scores runs from the frozen \
             encoder's feature cache; its test scores are in {}",
            req.run.display(),
            run.metrics().display()
        )));
    }
    let features = features_of(&run, req.features.as_deref())?;
    let cache = open_run_cache(&features, &model)?;
    let h = cache.header();
    let asked = req.split;
    let (split, rows) = held_out_rows(&cache, asked);
    if split != asked {
        note(
            "note: the data has no test images; evaluating the val split instead (an \
             optimistic estimate: val also chose the head). Keep a test split for an \
             unbiased one."
                .into(),
        );
    }
    if rows.is_empty() {
        return Err(RunError::NoImages {
            features: features.clone(),
            split,
        });
    }
    let (labels, x) = model_inputs(&cache, &model, &rows, &features)?;
    let probs = model.predict_proba(&x, rows.len());
    let (mut eval, preds) = summarise(split.as_str(), &probs, &labels, &model.meta.classes);

    let origin = Origin::read(&features);
    let head_bytes = std::fs::metadata(run.model_weights())
        .map(|m| m.len())
        .unwrap_or(0);
    let encoder_file = match &model.meta.encoder {
        Encoder::Known(k) => graft_model::fetch::model_path(&graft_model::fetch::cache_dir(), *k),
        Encoder::Onnx(o) => o.onnx.clone(),
    };
    let encoder_bytes = std::fs::metadata(encoder_file)
        .map(|m| m.len())
        .unwrap_or(0);
    eval.model_bytes = Some(head_bytes + encoder_bytes);
    if req.latency > 0 {
        match &origin {
            Some(o) => {
                let files: Vec<PathBuf> = rows
                    .iter()
                    .take(req.latency)
                    .map(|&i| o.root.join(&h.items[i].path))
                    .collect();
                eval.latency = Some(latency(&model.meta.encoder, &model, &files)?);
            }
            None => note("note: latency not measured (image folder of the cache unknown)".into()),
        }
    }

    write_file(&run.per_class(), eval.per_class_csv().as_bytes())?;
    update_metrics(&run, &eval)?;
    let mut figures = Vec::new();
    let mut figure =
        |name: Figure, caption: &str, draw: &dyn Fn(&Path) -> Result<(), graft_eval::EvalError>| {
            let path = run.figure(name);
            match draw(&path) {
                Ok(()) => {
                    if let Ok(bytes) = std::fs::read(&path) {
                        figures.push((caption.to_string(), bytes));
                    }
                }
                Err(e) => note(format!("note: {e}")),
            }
        };
    figure(
        Figure::ConfusionMatrix,
        "Confusion matrix (rows: true class)",
        &|p| plots::confusion_matrix(&eval.confusion, &model.meta.classes, p),
    );
    figure(Figure::Reliability, "Reliability diagram", &|p| {
        plots::reliability(&eval.calibration, p)
    });
    let (wrong, right) = galleries(&preds, 18);
    // An attention head shows where it looked, over the crop the encoder saw.
    let attention = model.attention(&x, rows.len());
    let locations = model.meta.locations.max(1);
    let side = (locations as f64).sqrt().round() as usize;
    let pre = model.meta.preprocess;
    let heat_of = |row: usize| {
        (!attention.is_empty() && side * side == locations).then(|| plots::Heat {
            weights: attention[row * locations..(row + 1) * locations].to_vec(),
            side,
            crop: pre.size as f32 / pre.resize_shorter.max(1) as f32,
        })
    };
    let tiles = |list: &[Prediction]| -> Vec<Tile> {
        list.iter()
            .map(|p| {
                let item = &h.items[rows[p.row]];
                Tile {
                    heat: heat_of(p.row),
                    image: origin.as_ref().and_then(|o| {
                        graft_data::decode::read_and_decode(&o.root.join(&item.path))
                            .ok()
                            .map(|(_, img)| img)
                    }),
                    lines: vec![
                        format!("true {}", model.meta.classes[p.truth]),
                        format!("pred {} {:.2}", model.meta.classes[p.pred], p.confidence),
                    ],
                    wrong: p.pred != p.truth,
                }
            })
            .collect()
    };
    let where_ = if attention.is_empty() {
        ""
    } else {
        " (red: where the attention head looked)"
    };
    let title = format!("Most confident mistakes{where_}");
    figure(Figure::Misclassified, &title, &|p| {
        plots::gallery(&title, &tiles(&wrong), p)
    });
    let title = format!("Most confident correct predictions{where_}");
    figure(Figure::Correct, &title, &|p| {
        plots::gallery(&title, &tiles(&right), p)
    });

    let run_name = run.name();
    let model_line = format!(
        "{} head on {} features",
        model.meta.head, model.meta.encoder
    );
    let facts = vec![
        ("head".to_string(), model.meta.head.to_string()),
        (
            "encoder".to_string(),
            format!("{} ({})", model.meta.encoder, model.meta.weights),
        ),
        ("learning rate".to_string(), model.meta.train.lr.to_string()),
        (
            "class balance".to_string(),
            model.meta.train.balance.to_string(),
        ),
        ("features".to_string(), features.display().to_string()),
        ("classes".to_string(), model.meta.classes.len().to_string()),
    ];
    let html = render(
        &eval,
        &ReportInputs {
            run_name: &run_name,
            model: &model_line,
            facts,
            sweep: read_sweep(&run),
            figures,
            explanations: crate::explain::report::section(&run),
            ablations: crate::ablate::report_section(&run),
            baselines: crate::baseline::report_section(&run),
        },
    );
    write_file(&run.report(), html.as_bytes())?;
    let done = Evaluated {
        eval,
        report: run.report(),
    };
    reporter.event(Event::Evaluated(&done));
    Ok(done)
}

/// Decode + preprocess + encoder + head, one image at a time.
fn latency(kind: &Encoder, model: &HeadModel, files: &[PathBuf]) -> Result<Latency, RunError> {
    let mut encoder = crate::encoder::open_encoder(kind, crate::Backend::Auto)?;
    let pre = kind.preprocess();
    let mut times = Vec::with_capacity(files.len());
    for (k, f) in files.iter().enumerate() {
        let t = Instant::now();
        let Ok((_, img)) = graft_data::decode::read_and_decode(f) else {
            continue;
        };
        let input = pre.apply(&img);
        let x = crate::encoder::head_input(encoder.as_mut(), model, &input, 1)?;
        let _ = model.predict_proba(&x, 1);
        // The first call warms the session up; users see that once, not per image.
        if k > 0 || files.len() == 1 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    if times.is_empty() {
        return Err(RunError::Invalid("no image could be timed".into()));
    }
    Ok(Latency {
        images: times.len(),
        p50_ms: graft_eval::percentile(&mut times, 0.5),
        p95_ms: graft_eval::percentile(&mut times, 0.95),
    })
}

/// Add this evaluation to the run's metrics.json under "eval".<split>.
fn update_metrics(run: &RunDir, e: &Evaluation) -> Result<(), RunError> {
    let path = run.metrics();
    let mut metrics: Metrics = read_json(&path)
        .context("the run has no head metrics; train it first (graft train heads)")?;
    metrics.eval.insert(e.split.clone(), e.clone());
    write_json(&path, &metrics)?;
    Ok(())
}

/// sweep.csv as a table for the report, the best row (highest val macro-F1) starred.
fn read_sweep(run: &RunDir) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(run.sweep()).ok()?;
    let (head, mut rows) = graft_data::table::parse_csv(&text).ok()?;
    let f1 = head.iter().position(|c| c == "val_macro_f1")?;
    let best = (0..rows.len()).max_by(|&a, &b| {
        let v = |r: usize| {
            rows[r]
                .get(f1)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        v(a).total_cmp(&v(b)).then(b.cmp(&a))
    })?;
    rows[best][0] = format!("★ {}", rows[best][0]);
    Some((head, rows))
}
