//! `graft bench finetune`: images/s of one fine-tuning step on burn (all layers; stage 2 from
//! images; stage 2 on cached activations) against PyTorch's all-layers step, in one invocation.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use graft_data::augment::one_hot;
use graft_data::rng::SplitMix64;
use graft_model::arch::NetSpec;
use graft_model::burn_backend::Device;
use graft_train::finetune::adamw::{clip_global_norm, AdamState};
use graft_train::finetune::{batch_gradients, FinetuneConfig, Group, TopNet, Values};
use graft_train::head::{Head, HeadSpec};
use graft_train::{HeadModel, ModelMeta, Standardizer, TrainConfig};
use serde_json::{json, Value};

use crate::cli::BenchFinetuneArgs;

const TORCH_SCRIPT: &str = include_str!("../../../../../scripts/bench/torch_finetune.py");
const CLASSES: usize = 10;

pub fn finetune(args: BenchFinetuneArgs) -> anyhow::Result<()> {
    let kind = args.encoder;
    let (spec, weights) = graft_run::encoder::load_weights(kind)?;
    let blocks = spec.blocks.len();
    if args.unfreeze_blocks == 0 || args.unfreeze_blocks >= blocks {
        bail!("--unfreeze-blocks must be in 1..{}", blocks - 1);
    }
    let top = blocks - args.unfreeze_blocks;
    let model = fresh_head(&spec);
    let (mut net, values) = TopNet::new(&spec, &weights, &model, 0, top)?;
    net.precision = args.precision;
    net.libtorch = graft_model::burn_backend::is_libtorch(&args.backend);
    let threads = rayon::current_num_threads();
    let size = spec.preprocess.size as usize;
    println!(
        "bench finetune: {kind}, batch {} at {size}×{size}, {} timed steps each (median), {threads} threads, burn {}, {}",
        args.batch,
        args.steps,
        args.backend,
        args.precision
    );
    let all = vec![true; net.slots.len()];
    let top_only: Vec<bool> = net
        .slots
        .iter()
        .map(|s| match s.group {
            Group::Head => true,
            Group::Block(b) => b >= top,
        })
        .collect();
    let device =
        graft_model::burn_backend::device_named(&args.backend).map_err(anyhow::Error::msg)?;
    let image = [3, size, size];
    let rate_all = time_steps(&net, &values, &all, 0, image, &args, &device)?;
    println!("  all layers, from images            {rate_all:>8.2} images/s");
    let rate_top_images = time_steps(&net, &values, &top_only, 0, image, &args, &device)?;
    println!(
        "  stage 2 (top {} blocks), from images {rate_top_images:>8.2} images/s",
        args.unfreeze_blocks
    );
    let rate_top_cached = time_steps(&net, &values, &top_only, top, net.input(), &args, &device)?;
    println!(
        "  stage 2, on cached activations     {rate_top_cached:>8.2} images/s   ({:.1}× the same stage from images)",
        rate_top_cached / rate_top_images.max(1e-9)
    );
    let mut out = json!({
        "encoder": kind.name(),
        "batch": args.batch,
        "threads": threads,
        "graft": {
            "backend": args.backend,
            "precision": args.precision,
            "all_layers_images_per_second": rate_all,
            "stage2_from_images_per_second": rate_top_images,
            "stage2_cached_per_second": rate_top_cached,
            "stage2_cache_speedup": rate_top_cached / rate_top_images.max(1e-9),
        },
    });
    if args.reference.no_reference {
        println!("  pytorch reference skipped (--no-reference)");
    } else {
        match reference(&args, threads, size) {
            Ok(r) => {
                let t = r["images_per_second"].as_f64().unwrap_or(0.0);
                println!(
                    "  pytorch {:<8} all layers      {t:>8.2} images/s   (graft / pytorch: {:.2}×)",
                    r["torch"]
                        .as_str()
                        .unwrap_or("?")
                        .split('+')
                        .next()
                        .unwrap_or("?"),
                    rate_all / t.max(1e-9)
                );
                out["ratio_all_layers"] = json!(rate_all / t.max(1e-9));
                out["pytorch"] = r;
            }
            Err(e) => println!("  pytorch reference skipped: {e:#}"),
        }
    }
    if let Some(path) = &args.reference.json {
        crate::output::write_file(path, serde_json::to_vec_pretty(&out)?)?;
    }
    Ok(())
}

/// A linear head of [`CLASSES`] on the encoder's features, as a fine-tune would start from.
fn fresh_head(spec: &NetSpec) -> HeadModel {
    let d = spec.feature_dim;
    let mut rng = SplitMix64::new(0);
    HeadModel {
        meta: ModelMeta {
            format_version: 1,
            head: HeadSpec::Linear,
            classes: (0..CLASSES).map(|c| format!("class{c}")).collect(),
            feature_dim: d,
            locations: 1,
            encoder: spec.kind.into(),
            weights: "bench".into(),
            preprocess: spec.preprocess,
            train: TrainConfig::default(),
            temperature: 1.0,
            encoder_file: None,
        },
        head: Head::new(HeadSpec::Linear, d, CLASSES, &mut rng),
        standardizer: Standardizer {
            mean: vec![0.0; d],
            std: vec![1.0; d],
        },
    }
}

/// Median images/s of a full step (forward, backward, clip, AdamW) over `args.steps` steps
/// after one warm-up step, with inputs of block `start` shaped `shape`.
fn time_steps(
    net: &TopNet,
    start_values: &Values,
    mask: &[bool],
    start: usize,
    shape: [usize; 3],
    args: &BenchFinetuneArgs,
    device: &Device,
) -> anyhow::Result<f64> {
    let b = args.batch;
    let mut rng = SplitMix64::new(1);
    let x: Vec<f32> = (0..b * shape.iter().product::<usize>())
        .map(|_| rng.next_f64() as f32)
        .collect();
    let labels: Vec<usize> = (0..b).map(|i| i % CLASSES).collect();
    let targets = one_hot(&labels, CLASSES);
    let cfg = FinetuneConfig {
        batch: b,
        micro_batch: b,
        ..FinetuneConfig::default()
    };
    let mut values = start_values.clone();
    let mut grads: Vec<Vec<f32>> = values.iter().map(|v| vec![0.0; v.len()]).collect();
    let mut adam = AdamState::new(values.iter().map(Vec::len));
    let lr: Vec<f32> = mask.iter().map(|&m| if m { 1e-4 } else { 0.0 }).collect();
    let decay: Vec<bool> = net.slots.iter().map(|s| s.decay).collect();
    let train_dev = device.clone().autodiff();
    let mut rates = Vec::new();
    for step in 0..=args.steps {
        let t = Instant::now();
        batch_gradients(
            net,
            &values,
            mask,
            start,
            &x,
            &targets,
            &cfg,
            &|_| 0,
            &train_dev,
            &mut grads,
        )?;
        clip_global_norm(&mut grads, 1.0);
        adam.update(&mut values, &grads, &lr, &decay, 0.01);
        if step > 0 {
            rates.push(b as f64 / t.elapsed().as_secs_f64());
        }
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[rates.len() / 2])
}

fn reference(args: &BenchFinetuneArgs, threads: usize, size: usize) -> anyhow::Result<Value> {
    super::require_python(&args.reference.python, &["torch", "torchvision"])?;
    let script =
        std::env::temp_dir().join(format!("graft-bench-finetune-{}.py", std::process::id()));
    crate::output::write_file(&script, TORCH_SCRIPT)?;
    note!("running the PyTorch reference …");
    let out = Command::new(&args.reference.python)
        .arg(&script)
        .args(["--threads", &threads.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .args(["--size", &size.to_string()])
        .args(["--steps", &args.steps.to_string()])
        .args(["--precision", args.precision.name()])
        .args([
            "--device",
            if args.backend == "tch-cuda" {
                "cuda"
            } else {
                "cpu"
            },
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting the PyTorch reference");
    let _ = std::fs::remove_file(&script);
    let out = out?;
    if !out.status.success() {
        bail!("the PyTorch reference failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("reading the reference's JSON")
}
