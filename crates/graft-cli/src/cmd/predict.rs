//! `graft predict --run RUN IMAGE...`: a trained classifier on new photos.

use std::path::Path;

use anyhow::{bail, Context};
use graft_train::HeadModel;
use serde::Serialize;

use crate::cli::PredictRunArgs;

/// `--json FILE`: every image's top classes. Fields are in alphabetical order, as the keys of
/// every JSON file graft writes.
#[derive(Debug, Serialize)]
struct PredictReport<'a> {
    predictions: Vec<Prediction<'a>>,
    run: &'a Path,
    threshold: f32,
}

/// One image: its top classes, or why it could not be read.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Prediction<'a> {
    Classified {
        confident: bool,
        image: &'a Path,
        top: Vec<TopClass<'a>>,
    },
    Unreadable {
        error: String,
        image: &'a Path,
    },
}

#[derive(Debug, Serialize)]
struct TopClass<'a> {
    class: &'a str,
    probability: f32,
}

pub fn run(args: PredictRunArgs) -> anyhow::Result<()> {
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.threshold) {
        bail!("--threshold must be between 0 and 1");
    }
    let model = HeadModel::load(&args.run)
        .with_context(|| format!("loading the model of run {}", args.run.display()))?;
    let mut encoder = graft_run::encoder::open_run_encoder(
        &graft_run::RunDir::new(&args.run),
        &model,
        args.backend,
    )?;
    let pre = model.meta.preprocess;
    let classes = &model.meta.classes;
    let json_only = args.json.as_deref() == Some(std::path::Path::new("-"));
    let mut results = Vec::new();
    let mut failures = 0;
    for path in &args.images {
        let img = match graft_data::decode::read_and_decode(path) {
            Ok((_, img)) => img,
            Err(e) => {
                failures += 1;
                note!("{}: cannot read this image ({e}); skipped", path.display());
                results.push(Prediction::Unreadable {
                    error: e.to_string(),
                    image: path,
                });
                continue;
            }
        };
        let x = graft_run::encoder::head_input(encoder.as_mut(), &model, &pre.apply(&img), 1)?;
        let probs = model.predict_proba(&x, 1);
        let top = graft_model::imagenet::top_k_probs(&probs, args.top);
        let confident = top.first().is_some_and(|&(_, p)| p >= args.threshold);
        if !json_only {
            println!("{}", path.display());
            for &(k, p) in &top {
                println!("  {:>6.2}%  {}", p * 100.0, classes[k]);
            }
            if !confident {
                println!(
                    "  {}",
                    graft_serve::uncertain_warning(
                        top.first().map_or(0.0, |t| t.1),
                        args.threshold
                    )
                );
            }
        }
        results.push(Prediction::Classified {
            confident,
            image: path,
            top: top
                .iter()
                .map(|&(k, probability)| TopClass {
                    class: &classes[k],
                    probability,
                })
                .collect(),
        });
    }
    if let Some(out) = &args.json {
        let report = PredictReport {
            predictions: results,
            run: &args.run,
            threshold: args.threshold,
        };
        let text = serde_json::to_string_pretty(&report)? + "\n";
        if json_only {
            print!("{text}");
        } else {
            crate::output::write_file(out, text)?;
        }
    }
    if failures > 0 {
        bail!(
            "{failures} of {} images could not be read",
            args.images.len()
        );
    }
    Ok(())
}
