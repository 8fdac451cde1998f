//! `graft finetune --run RUN`: stages 1–2 of progressive fine-tuning on cached activations,
//! resumable, with the result scored against the frozen head on the same test images.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use graft_data::scan::Split;
use graft_features::{FeatureCache, Origin};
use graft_model::arch::NetSpec;
use graft_model::prefix::PrefixEncoder;
use graft_model::weights::{save_safetensors, StateDict, Tensor as WTensor};
use graft_train::finetune::{
    self, acts, memory::parse_bytes, memory::Estimate, prefix_spec, Acts, Event, FinetuneConfig,
    Outcome, TopNet,
};
use graft_train::head::Head;
use graft_train::model::write_atomic;
use graft_train::{HeadModel, Standardizer};
use serde_json::json;

use crate::cli::FinetuneArgs;
use crate::progress;

const DIR: &str = "finetune";
const CHECKPOINT: &str = "checkpoint.bin";
const METRICS: &str = "metrics.json";

pub fn run(args: FinetuneArgs) -> anyhow::Result<()> {
    let (run, resume) = match (&args.run, &args.resume) {
        (Some(r), None) => (r.clone(), false),
        (None, Some(r)) => (r.clone(), true),
        _ => bail!("give either --run RUN (start) or --resume RUN (continue)"),
    };
    let model = HeadModel::load(&run)
        .with_context(|| format!("loading the model of run {}", run.display()))?;
    let kind = super::export::encoder_kind(&model)?;
    let (spec, weights) = super::encoder::load_weights(kind)?;
    let blocks = spec.blocks.len();
    if args.unfreeze_blocks == 0 || args.unfreeze_blocks >= blocks {
        bail!(
            "--unfreeze-blocks {} is out of range: {kind} has {} blocks above its stem (use 1..={})",
            args.unfreeze_blocks,
            blocks - 1,
            blocks - 1
        );
    }
    let cut = blocks - args.unfreeze_blocks;
    let (net, start) = TopNet::new(&spec, &weights, &model, cut)?;
    let cfg = config(&args)?;
    if args.dry_run {
        return dry_run(&spec, &net, &cfg, &args.memory);
    }
    let dir = run.join(DIR);
    let ckpt = dir.join(CHECKPOINT);
    if args.restart {
        for f in [CHECKPOINT, METRICS] {
            let p = dir.join(f);
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    let finished = dir.join(METRICS).exists();
    match (resume, ckpt.exists(), finished) {
        (_, _, true) => bail!(
            "{} is already fine-tuned (see {}); pass --restart to fine-tune it again",
            run.display(),
            dir.join(METRICS).display()
        ),
        (false, true, _) => bail!(
            "{} holds an interrupted fine-tune; continue it with `graft finetune --resume {}` \
             or start over with --restart",
            ckpt.display(),
            run.display()
        ),
        (true, false, _) => bail!(
            "{} has no fine-tune to resume; start one with `graft finetune --run {}`",
            run.display(),
            run.display()
        ),
        _ => {}
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // Cached activations at the cut, for every split (built once, resumable).
    let cache_started = Instant::now();
    let features = super::eval::features_of(&run, None)?;
    let cache = super::eval::open_run_cache(&features, &model)?;
    let origin = Origin::read(&features)
        .with_context(|| format!("{} does not say where its images are", features.display()))?;
    let mut encoder = PrefixEncoder::new(&prefix_spec(&spec, cut), &weights)?;
    let acts_dir = dir.join(format!("acts-b{cut}"));
    let mut load = |split: Split, limit: Option<usize>| -> anyhow::Result<Acts> {
        let items = split_items(&cache, &origin, &model, split, limit);
        let name = split_name(split);
        let fp = fingerprint(&model, cut, &items);
        let pb = progress::bar(items.len() as u64, name);
        let a = acts::load_or_build(
            &acts_dir.join(name),
            name,
            &fp,
            net.input,
            &items.iter().map(|(it, _)| it.clone()).collect::<Vec<_>>(),
            &model.meta.preprocess,
            &mut |x, n| encoder.encode(x, n).map_err(|e| e.to_string()),
            &mut |done, _| pb.set_position(done as u64),
        )?;
        pb.finish_and_clear();
        Ok(a)
    };
    let train = load(Split::Train, args.limit)?;
    let val = load(Split::Val, None)?;
    let test = load(Split::Test, None)?;
    let cache_secs = cache_started.elapsed().as_secs_f64();
    println!(
        "Activations at block {cut} ({}×{}×{}): {} train, {} val, {} test images ({:.0} MB in f16, {:.1} s)",
        net.input[0],
        net.input[1],
        net.input[2],
        train.len(),
        val.len(),
        test.len(),
        (train.bytes() + val.bytes() + test.bytes()) as f64 / 1e6,
        cache_secs
    );

    let device = graft_model::burn_backend::default_device();
    let started = Instant::now();
    let mut bar: Option<indicatif::ProgressBar> = None;
    let mut on = |e: &Event<'_>| {
        match e {
            Event::Start { val_f1 } => println!("Frozen head: val macro-F1 {val_f1:.4}"),
            Event::StageStart {
                stage,
                updates,
                done,
            } => {
                let pb = progress::bar(*updates as u64, finetune_stage_label(*stage));
                pb.set_position(*done as u64);
                bar = Some(pb);
            }
            Event::Update { loss, lr, .. } => {
                if let Some(pb) = &bar {
                    pb.inc(1);
                    pb.set_message(format!("loss {loss:.3} lr {lr:.1e}"));
                }
            }
            Event::Epoch(r) => {
                let line = format!(
                    "stage {} epoch {}: train loss {:.4}, val accuracy {:.4}, val macro-F1 {:.4}",
                    r.stage + 1,
                    r.epoch + 1,
                    r.train_loss,
                    r.val_accuracy,
                    r.val_macro_f1
                );
                match &bar {
                    Some(pb) => pb.suspend(|| println!("{line}")),
                    None => println!("{line}"),
                }
            }
            Event::StageEnd(r) => {
                if let Some(pb) = bar.take() {
                    pb.finish_and_clear();
                }
                if r.rolled_back {
                    println!(
                        "Stage {} ({}) reached val macro-F1 {:.4}, below {:.4} before it: rolled back.",
                        r.stage + 1,
                        r.name,
                        r.best_f1,
                        r.before_f1
                    );
                } else {
                    println!(
                        "Stage {} ({}): val macro-F1 {:.4} → {:.4}{}.",
                        r.stage + 1,
                        r.name,
                        r.before_f1,
                        r.best_f1,
                        if r.stopped_early {
                            " (stopped early)"
                        } else {
                            ""
                        }
                    );
                }
            }
            Event::Checkpoint { .. } => {}
        }
        true
    };
    if resume {
        println!("Resuming from {}", ckpt.display());
    }
    let out = finetune::run(
        &net,
        start.clone(),
        &cfg,
        &train,
        &val,
        &ckpt,
        &device,
        &mut on,
    )?;
    let train_secs = started.elapsed().as_secs_f64();

    let frozen = finetune::evaluate(&net, &start, &test, &device);
    let tuned = finetune::evaluate(&net, &out.values, &test, &device);
    println!(
        "Test ({} images): frozen head accuracy {:.4} macro-F1 {:.4} → fine-tuned accuracy {:.4} macro-F1 {:.4}",
        test.len(),
        frozen.accuracy(),
        frozen.macro_f1(),
        tuned.accuracy(),
        tuned.macro_f1()
    );
    save_outputs(&dir, &spec, &weights, &model, &net, &out)?;
    let metrics = json!({
        "encoder": model.meta.encoder,
        "weights": model.meta.weights,
        "trained_from_block": cut,
        "trained_blocks": args.unfreeze_blocks,
        "activation_shape": net.input,
        "trained_parameters": net.param_count(),
        "config": out.config,
        "stages": out.stages,
        "val_macro_f1": { "frozen": out.start_f1, "finetuned": out.best_f1 },
        "test": {
            "split": split_name(Split::Test),
            "images": test.len(),
            "frozen": { "accuracy": frozen.accuracy(), "macro_f1": frozen.macro_f1() },
            "finetuned": { "accuracy": tuned.accuracy(), "macro_f1": tuned.macro_f1() },
        },
        "train_images": train.len(),
        "seconds": { "activation_cache": cache_secs, "training": train_secs },
        "resumed": out.resumed,
    });
    let bytes = serde_json::to_vec_pretty(&metrics)?;
    write_atomic(&dir.join(METRICS), &bytes)?;
    println!("Wrote {}", dir.display());
    Ok(())
}

fn finetune_stage_label(stage: usize) -> &'static str {
    if stage == 0 {
        "stage 1"
    } else {
        "stage 2"
    }
}

fn config(a: &FinetuneArgs) -> anyhow::Result<FinetuneConfig> {
    let e: Vec<usize> = a
        .epochs
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .ok()
        .filter(|v: &Vec<usize>| v.len() == 2)
        .with_context(|| {
            format!(
                "--epochs {:?}: give two numbers, stage 1 and stage 2 (e.g. 1,3)",
                a.epochs
            )
        })?;
    let cfg = FinetuneConfig {
        epochs: [e[0], e[1]],
        batch: a.batch,
        micro_batch: a.micro_batch.unwrap_or(a.batch),
        lr: a.lr,
        layer_decay: a.layer_decay,
        weight_decay: a.weight_decay,
        warmup: FinetuneConfig::default().warmup,
        label_smoothing: a.label_smoothing,
        clip: a.clip,
        patience: a.patience,
        checkpoint_every: a.checkpoint_every,
        seed: a.seed,
    };
    cfg.check()?;
    Ok(cfg)
}

fn dry_run(spec: &NetSpec, net: &TopNet, cfg: &FinetuneConfig, budget: &str) -> anyhow::Result<()> {
    let budget_bytes = parse_bytes(budget)
        .with_context(|| format!("--memory {budget:?}: write a size like 4GB or 512MB"))?;
    let head = net
        .slots
        .iter()
        .filter(|s| s.group == finetune::Group::Head)
        .map(|s| s.len())
        .sum();
    let mb = |b: usize| b as f64 / (1024.0 * 1024.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Fine-tuning {} from block {} ({} trained parameters), micro batch {} of batch {}:",
        spec.kind,
        net.cut,
        net.param_count(),
        cfg.micro_batch,
        cfg.batch
    );
    for (what, cut) in [
        ("stage 2 (top blocks, on cached activations)", net.cut),
        ("all layers (from images)", 0),
    ] {
        let e = Estimate::new(spec, cut, head);
        let fits = e.fits(budget_bytes);
        let _ = writeln!(
            s,
            "  {what}: {:.0} MB fixed + {:.1} MB per image = {:.0} MB at micro batch {}; \
             largest micro batch within {budget}: {}",
            mb(e.fixed_bytes),
            mb(e.per_image_bytes),
            mb(e.bytes(cfg.micro_batch)),
            cfg.micro_batch,
            if fits == 0 {
                "none fits".to_string()
            } else {
                fits.to_string()
            }
        );
    }
    let _ = writeln!(
        s,
        "An estimate from layer shapes (weights, gradients, AdamW moments, kept activations); \
         allocator overhead comes on top. Set --micro-batch to fit and keep --batch."
    );
    print!("{s}");
    Ok(())
}

fn split_name(s: Split) -> &'static str {
    match s {
        Split::Train => "train",
        Split::Val => "val",
        Split::Test => "test",
    }
}

/// Readable images of `split` with a class the head knows, evenly thinned to `limit`.
fn split_items(
    cache: &FeatureCache,
    origin: &Origin,
    model: &HeadModel,
    split: Split,
    limit: Option<usize>,
) -> Vec<(acts::Item, String)> {
    let items = &cache.header().items;
    let rows: Vec<usize> = (0..cache.len())
        .filter(|&i| !cache.is_failed(i) && items[i].split == Some(split))
        .collect();
    let take = limit.unwrap_or(rows.len()).min(rows.len());
    (0..take)
        .map(|k| rows[k * rows.len() / take.max(1)])
        .filter_map(|i| {
            let label = model
                .meta
                .classes
                .iter()
                .position(|c| c == &items[i].label)?;
            Some((
                acts::Item {
                    path: origin.root.join(&items[i].path),
                    label,
                },
                items[i].hash.clone(),
            ))
        })
        .collect()
}

fn fingerprint(model: &HeadModel, cut: usize, items: &[(acts::Item, String)]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(
        format!(
            "{}|{}|{cut}|{:?}",
            model.meta.encoder, model.meta.weights, model.meta.preprocess
        )
        .as_bytes(),
    );
    for (it, hash) in items {
        h.update(hash.as_bytes());
        h.update(&it.label.to_le_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// `encoder.safetensors` (the pretrained layout, trained blocks written back with neutral
/// BatchNorm so folding reproduces them), the head as `model.json` + `model.safetensors`, and
/// `history.csv`.
fn save_outputs(
    dir: &Path,
    spec: &NetSpec,
    weights: &StateDict,
    model: &HeadModel,
    net: &TopNet,
    out: &Outcome,
) -> anyhow::Result<()> {
    let mut sd = weights.clone();
    let mut i = 0;
    let f32t = |shape: Vec<usize>, data: Vec<f32>| WTensor {
        shape,
        data,
        dtype: graft_model::weights::DType::F32,
    };
    for b in &spec.blocks[net.cut..] {
        for l in &b.layers {
            let c = l.out_ch;
            sd.insert(
                l.conv.clone(),
                f32t(net.slots[i].shape.clone(), out.values[i].clone()),
            );
            sd.insert(
                format!("{}.bias", l.bn),
                f32t(vec![c], out.values[i + 1].clone()),
            );
            sd.insert(format!("{}.weight", l.bn), f32t(vec![c], vec![1.0; c]));
            sd.insert(
                format!("{}.running_mean", l.bn),
                f32t(vec![c], vec![0.0; c]),
            );
            // var + eps = 1: the fold divides by exactly one.
            sd.insert(
                format!("{}.running_var", l.bn),
                f32t(vec![c], vec![1.0 - spec.bn_eps; c]),
            );
            i += 2;
        }
    }
    save_safetensors(&sd, &dir.join("encoder.safetensors"))?;
    let mut layers = model.head.layers.clone();
    for l in &mut layers {
        l.w.clone_from(&out.values[i]);
        l.b.clone_from(&out.values[i + 1]);
        i += 2;
    }
    let d = model.meta.feature_dim;
    let mut meta = model.meta.clone();
    meta.temperature = 1.0;
    meta.weights = format!("{}+finetune", model.meta.weights);
    let head = HeadModel {
        meta,
        head: Head {
            spec: model.head.spec,
            layers,
        },
        standardizer: Standardizer {
            mean: vec![0.0; d],
            std: vec![1.0; d],
        },
    };
    head.save(dir)?;
    let mut csv = String::from("stage,epoch,train_loss,val_accuracy,val_macro_f1\n");
    for r in &out.history {
        let _ = writeln!(
            csv,
            "{},{},{:.6},{:.6},{:.6}",
            r.stage + 1,
            r.epoch + 1,
            r.train_loss,
            r.val_accuracy,
            r.val_macro_f1
        );
    }
    write_atomic(&dir.join("history.csv"), csv.as_bytes())?;
    Ok(())
}
