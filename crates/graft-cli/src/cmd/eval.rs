//! `graft eval --run RUN`: metrics, figures and report.html for a trained run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use graft_data::scan::Split;
use graft_eval::plots::{self, Tile};
use graft_eval::report::{render, ReportInputs};
use graft_eval::{galleries, summarise, Evaluation, Latency, Prediction};
use graft_features::{FeatureCache, Origin};
use graft_model::arch::EncoderKind;
use graft_train::model::write_atomic;
use graft_train::HeadModel;

use crate::cli::EvalArgs;

/// The feature cache in `features`, checked to hold the encoder and weights `model` was
/// trained on.
pub fn open_run_cache(features: &Path, model: &HeadModel) -> anyhow::Result<FeatureCache> {
    let cache = FeatureCache::open(features)
        .with_context(|| format!("opening the feature cache {}", features.display()))?;
    let h = cache.header();
    if h.encoder != model.meta.encoder || h.weights != model.meta.weights {
        bail!(
            "{} holds {} ({}) features, but the run was trained on {} ({})",
            features.display(),
            h.encoder,
            h.weights,
            model.meta.encoder,
            model.meta.weights
        );
    }
    Ok(cache)
}

/// Usable rows (failed images left out) of `split`; when that is test and there is none, the
/// val rows instead. Returns the split the rows belong to.
pub fn held_out_rows(cache: &FeatureCache, split: Split) -> (Split, Vec<usize>) {
    let items = &cache.header().items;
    let rows_of = |s: Split| -> Vec<usize> {
        (0..cache.len())
            .filter(|&i| !cache.is_failed(i) && items[i].split == Some(s))
            .collect()
    };
    let rows = rows_of(split);
    if rows.is_empty() && split == Split::Test {
        let val = rows_of(Split::Val);
        if !val.is_empty() {
            return (Split::Val, val);
        }
    }
    (split, rows)
}

/// `run.json`: what a run was trained from.
pub const RUN_FILE: &str = "run.json";

/// The feature cache a run was trained on (from its run.json), unless given.
pub fn features_of(run: &Path, given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let path = run.join(RUN_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading {} (is {} a run folder from `graft train`? Or pass --features)",
            path.display(),
            run.display()
        )
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    v["features"]
        .as_str()
        .map(PathBuf::from)
        .with_context(|| format!("{} names no feature cache; pass --features", path.display()))
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let model = HeadModel::load(&args.run)
        .with_context(|| format!("loading the model of run {}", args.run.display()))?;
    if model.meta.encoder_file.is_some() {
        bail!(
            "{} holds a fine-tuned encoder, and `graft eval` scores runs from the frozen \
             encoder's feature cache; its test scores are in {}",
            args.run.display(),
            args.run.join("metrics.json").display()
        );
    }
    let features = features_of(&args.run, args.features.as_deref())?;
    let cache = open_run_cache(&features, &model)?;
    let h = cache.header();
    let asked: Split = args.split.parse().map_err(anyhow::Error::msg)?;
    let (split, rows) = held_out_rows(&cache, asked);
    if split != asked {
        eprintln!(
            "note: the data has no test images; evaluating the val split instead (an \
             optimistic estimate: val also chose the head). Keep a test split for an \
             unbiased one."
        );
    }
    if rows.is_empty() {
        bail!(
            "{} has no {} images to evaluate; try --split val",
            features.display(),
            split.as_str()
        );
    }
    // Class indices of the cache mapped onto the model's class list.
    let mut labels = Vec::with_capacity(rows.len());
    let mut x = Vec::with_capacity(rows.len() * model.row_len());
    for &i in &rows {
        let name = &h.items[i].label;
        let Some(y) = model.meta.classes.iter().position(|c| c == name) else {
            bail!(
                "class {name:?} of {} is unknown to the model",
                h.items[i].path
            );
        };
        labels.push(y);
        let row = if model.reads_maps() {
            cache.spatial_row(i).with_context(|| {
                format!(
                    "the run's {} head reads feature maps, and {} has none (extract with --spatial)",
                    model.meta.head,
                    features.display()
                )
            })?
        } else {
            cache.row(i).context("cache row")?
        };
        x.extend(row);
    }
    let probs = model.predict_proba(&x, rows.len());
    let (mut eval, preds) = summarise(split.as_str(), &probs, &labels, &model.meta.classes);

    let origin = Origin::read(&features);
    let head_bytes = std::fs::metadata(args.run.join(graft_train::model::MODEL_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    let encoder_bytes = std::fs::metadata(
        graft_model::fetch::cache_dir()
            .join("models")
            .join(format!("{}.safetensors", model.meta.encoder)),
    )
    .map(|m| m.len())
    .unwrap_or(0);
    eval.model_bytes = Some(head_bytes + encoder_bytes);
    if args.latency > 0 {
        match (&origin, EncoderKind::from_name(&model.meta.encoder)) {
            (Some(o), Some(kind)) => {
                let files: Vec<PathBuf> = rows
                    .iter()
                    .take(args.latency)
                    .map(|&i| o.root.join(&h.items[i].path))
                    .collect();
                eval.latency = Some(latency(kind, &model, &files)?);
            }
            _ => eprintln!("note: latency not measured (image folder of the cache unknown)"),
        }
    }

    let out = &args.run;
    std::fs::write(out.join("per_class.csv"), eval.per_class_csv())
        .with_context(|| format!("writing per_class.csv in {}", out.display()))?;
    update_metrics(out, &eval)?;
    let mut figures = Vec::new();
    let mut figure =
        |name: &str, caption: &str, draw: &dyn Fn(&Path) -> Result<(), graft_eval::EvalError>| {
            let path = out.join(name);
            match draw(&path) {
                Ok(()) => {
                    if let Ok(bytes) = std::fs::read(&path) {
                        figures.push((caption.to_string(), bytes));
                    }
                }
                Err(e) => eprintln!("note: {e}"),
            }
        };
    figure(
        "confusion_matrix.png",
        "Confusion matrix (rows: true class)",
        &|p| plots::confusion_matrix(&eval.confusion, &model.meta.classes, p),
    );
    figure("reliability.png", "Reliability diagram", &|p| {
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
    figure("misclassified.png", &title, &|p| {
        plots::gallery(&title, &tiles(&wrong), p)
    });
    let title = format!("Most confident correct predictions{where_}");
    figure("correct.png", &title, &|p| {
        plots::gallery(&title, &tiles(&right), p)
    });

    let run_name = args
        .run
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
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
            sweep: read_sweep(out),
            figures,
        },
    );
    write_atomic(&out.join("report.html"), html.as_bytes())?;
    print_summary(&eval);
    println!("Report: {}", out.join("report.html").display());
    Ok(())
}

fn print_summary(e: &Evaluation) {
    println!(
        "{} split, {} images: accuracy {:.4}, macro-F1 {:.4}{}, ECE {:.3}",
        e.split,
        e.images,
        e.accuracy,
        e.macro_f1,
        e.top_k
            .iter()
            .map(|(k, v)| format!(", top-{k} {v:.4}"))
            .collect::<String>(),
        e.calibration.ece
    );
    if let Some(l) = &e.latency {
        println!(
            "Latency per image ({} images, one at a time): P50 {:.1} ms, P95 {:.1} ms",
            l.images, l.p50_ms, l.p95_ms
        );
    }
    let mut worst: Vec<_> = e
        .per_class
        .iter()
        .filter(|c| c.metrics.support > 0)
        .collect();
    worst.sort_by(|a, b| a.metrics.f1.total_cmp(&b.metrics.f1));
    for c in worst.iter().take(3) {
        println!(
            "  weakest: {:<20} F1 {:.3} (precision {:.3}, recall {:.3}, {} images)",
            c.class, c.metrics.f1, c.metrics.precision, c.metrics.recall, c.metrics.support
        );
    }
}

/// Decode + preprocess + encoder + head, one image at a time.
fn latency(kind: EncoderKind, model: &HeadModel, files: &[PathBuf]) -> anyhow::Result<Latency> {
    let mut encoder = super::encoder::open_encoder(kind, super::encoder::Backend::Auto)?;
    let pre = kind.preprocess();
    let mut times = Vec::with_capacity(files.len());
    for (k, f) in files.iter().enumerate() {
        let t = Instant::now();
        let Ok((_, img)) = graft_data::decode::read_and_decode(f) else {
            continue;
        };
        let input = pre.apply(&img);
        let x = super::encoder::head_input(encoder.as_mut(), model, &input, 1)?;
        let _ = model.predict_proba(&x, 1);
        // The first call warms the session up; users see that once, not per image.
        if k > 0 || files.len() == 1 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    if times.is_empty() {
        bail!("no image could be timed");
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    Ok(Latency {
        images: times.len(),
        p50_ms: q(0.5),
        p95_ms: q(0.95),
    })
}

/// Add this evaluation to the run's metrics.json under "eval".<split>.
fn update_metrics(dir: &Path, e: &Evaluation) -> anyhow::Result<()> {
    let path = dir.join("metrics.json");
    let mut v: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if !v.is_object() {
        v = serde_json::json!({});
    }
    v["eval"][&e.split] = serde_json::to_value(e)?;
    write_atomic(&path, (serde_json::to_string_pretty(&v)? + "\n").as_bytes())?;
    Ok(())
}

/// sweep.csv as a table for the report, the best row (highest val macro-F1) starred.
fn read_sweep(dir: &Path) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(dir.join("sweep.csv")).ok()?;
    let mut lines = text.lines();
    let head: Vec<String> = lines.next()?.split(',').map(str::to_string).collect();
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
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

/// Paths of up to `n` images of the run's test split (val if none), from its feature cache.
pub fn held_out_images(run: &Path, model: &HeadModel, n: usize) -> anyhow::Result<Vec<PathBuf>> {
    Ok(split_images(run, model, Split::Test, n)?
        .into_iter()
        .map(|(p, _)| p)
        .collect())
}

/// Up to `n` images (path, label) of the run's `split`, spread evenly over the split (a cache
/// is often ordered by class); test falls back to val as in [`held_out_rows`].
pub fn split_images(
    run: &Path,
    model: &HeadModel,
    split: Split,
    n: usize,
) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let features = features_of(run, None)?;
    let cache = open_run_cache(&features, model)?;
    let origin = Origin::read(&features).with_context(|| {
        format!(
            "{} does not say where its images are (source.json)",
            features.display()
        )
    })?;
    let items = &cache.header().items;
    let (_, rows) = held_out_rows(&cache, split);
    let take = n.min(rows.len());
    Ok((0..take)
        .map(|k| rows[k * rows.len() / take.max(1)])
        .map(|i| (origin.root.join(&items[i].path), items[i].label.clone()))
        .collect())
}
