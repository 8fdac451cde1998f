//! `graft bench explain`: milliseconds per image of graft explain's Grad-CAM (last map, an
//! earlier block, with the quality tests) against pytorch-grad-cam in the same run, and of
//! integrated gradients at the block against captum's (when the reference has it).

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use graft_data::scan::Split;
use graft_eval::percentile;
use graft_model::arch::EncoderKind;
use graft_run::explain::{
    folder_images, split_items, ExplainConfig, Explainer, Item, Method, Save, Target,
};
use graft_run::RunDir;
use graft_train::HeadModel;
use serde_json::{json, Value};

use crate::cli::BenchExplainArgs;

/// The reference script, embedded so an installed binary needs no checkout.
const TORCH_SCRIPT: &str = include_str!("../../../../../scripts/bench/torch_explain.py");

/// What both sides time, in the reference's JSON keys, with a label.
const CASES: [(&str, &str); 4] = [
    ("grad_cam_last", "Grad-CAM, last map"),
    ("grad_cam_block", "Grad-CAM, block"),
    ("grad_cam_quality", "Grad-CAM + quality tests"),
    ("ig_block", "Integrated grads, block"),
];

pub fn explain(args: BenchExplainArgs) -> anyhow::Result<()> {
    if args.limit == 0 || args.steps == 0 {
        bail!("--limit and --steps must be at least 1");
    }
    let dir = RunDir::new(&args.run);
    let model = HeadModel::load(&args.run)
        .with_context(|| format!("loading the model of run {}", args.run.display()))?;
    let mut items = match &args.images {
        Some(d) => folder_images(d, &model.meta.classes)?,
        None => split_items(&dir, &model, Split::Test, args.limit)?,
    };
    items.truncate(args.limit);
    if items.is_empty() {
        bail!("no images to explain (give --images DIR)");
    }
    let threads = rayon::current_num_threads();
    let config = ExplainConfig {
        save: Save::None,
        steps: args.steps,
        batch: 1,
        ..ExplainConfig::default()
    };
    println!(
        "bench explain: {} images of {}, one at a time, {threads} threads, block {}, {} steps",
        items.len(),
        args.run.display(),
        args.layer,
        args.steps
    );

    let mut last = Explainer::open(&dir, None, false)?;
    let mut block = Explainer::open(&dir, Some(args.layer), false)?;
    let mut graft = Vec::new();
    graft.push(median_ms(&items, |item| {
        last.maps(&[item], &config).map(drop)
    })?);
    graft.push(median_ms(&items, |item| {
        block.maps(&[item], &config).map(drop)
    })?);
    graft.push(median_ms(&items, |item| {
        let mut unreadable = Vec::new();
        last.explain(&[item], &config, &Target::Predicted, &mut unreadable)
            .map(drop)
    })?);
    let integrated = ExplainConfig {
        method: Method::IntegratedGradients,
        ..config.clone()
    };
    graft.push(median_ms(&items, |item| {
        block.maps(&[item], &integrated).map(drop)
    })?);

    let reference = if args.reference.no_reference {
        None
    } else if model.meta.encoder != EncoderKind::MobileNetV2 {
        note!(
            "the PyTorch reference runs MobileNetV2; this run's encoder is {}: skipped",
            model.meta.encoder
        );
        None
    } else {
        match run_torch(&args, &items, model.meta.classes.len(), threads) {
            Ok(r) => Some(r),
            Err(e) => {
                note!("PyTorch reference skipped: {e:#}");
                None
            }
        }
    };
    let mut out = json!({
        "run": args.run.display().to_string(),
        "images": items.len(),
        "threads": threads,
        "block": args.layer,
        "steps": args.steps,
    });
    println!(
        "  {:<28} {:>10} {:>12} {:>8}",
        "ms per image", "graft", "pytorch", "ratio"
    );
    for ((key, label), g) in CASES.iter().zip(&graft) {
        let label = if key.ends_with("_block") {
            format!("{label} {}", args.layer)
        } else {
            label.to_string()
        };
        let torch = reference.as_ref().and_then(|r| r[*key].as_f64());
        let ratio = torch.map(|t| t / g.max(1e-9));
        println!(
            "  {label:<28} {g:>10.1} {:>12} {:>8}",
            torch.map_or("—".to_string(), |t| format!("{t:.1}")),
            ratio.map_or("—".to_string(), |r| format!("{r:.2}×")),
        );
        out[*key] = json!({"graft_ms": g, "pytorch_ms": torch, "speedup": ratio});
    }
    if let Some(r) = &reference {
        println!(
            "  (torch {}; speed-up = PyTorch's time / graft's)",
            r["torch"].as_str().unwrap_or("?")
        );
        out["torch"] = r["torch"].clone();
    }
    if let Some(path) = &args.reference.json {
        crate::output::write_file(path, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    Ok(())
}

/// The median milliseconds of `f` over `items`, after one untimed call on the first.
fn median_ms<E>(items: &[Item], mut f: impl FnMut(&Item) -> Result<(), E>) -> anyhow::Result<f64>
where
    E: std::error::Error + Send + Sync + 'static,
{
    f(&items[0])?;
    let mut ms = Vec::with_capacity(items.len());
    for item in items {
        let t = Instant::now();
        f(item)?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(percentile(&mut ms, 0.5))
}

/// The embedded PyTorch script on the same images; its JSON line.
fn run_torch(
    args: &BenchExplainArgs,
    items: &[Item],
    classes: usize,
    threads: usize,
) -> anyhow::Result<Value> {
    super::require_python(
        &args.reference.python,
        &["torch", "torchvision", "pytorch_grad_cam"],
    )?;
    let weights = super::reference_weights(EncoderKind::MobileNetV2)?;
    let work = tempfile::tempdir().context("a temporary folder")?;
    let list = work.path().join("images.txt");
    let text: String = items
        .iter()
        .map(|i| format!("{}\n", i.path.display()))
        .collect();
    crate::output::write_file(&list, text)?;
    let script = work.path().join("torch_explain.py");
    crate::output::write_file(&script, TORCH_SCRIPT)?;
    note!("running the PyTorch reference on {} images …", items.len());
    let out = Command::new(&args.reference.python)
        .arg(&script)
        .arg("--list")
        .arg(&list)
        .arg("--weights")
        .arg(&weights)
        .args(["--classes", &classes.to_string()])
        .args(["--block", &args.layer.to_string()])
        .args(["--steps", &args.steps.to_string()])
        .args(["--threads", &threads.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting the PyTorch reference")?;
    if !out.status.success() {
        bail!("the PyTorch reference failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("reading the reference's JSON")
}
