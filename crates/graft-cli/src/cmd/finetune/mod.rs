//! `graft finetune --run RUN`: stages 1–2 of progressive fine-tuning on cached activations,
//! resumable, with the result scored against the frozen head on the same test images.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use graft_data::augment::AugmentConfig;
use graft_data::scan::Split;
use graft_features::Origin;
use graft_model::arch::NetSpec;
use graft_run::files::{
    write_file, write_json, EpochSpeed, FinetuneMetrics, FinetuneSeconds, FinetuneTest,
    FrozenVsTuned, Scores,
};
use graft_run::{RunDir, RunInfo};
use graft_train::finetune::{
    self, acts, memory::parse_bytes, memory::Estimate, prefix_spec, Acts, CachedSource, Event,
    FinetuneConfig, ImageSource, Source, StageData, TopNet,
};
use graft_train::lr_find::Rule;
use graft_train::HeadModel;

use crate::cli::{FinetuneArgs, LrArg};
use crate::progress;

mod lr_find;
mod output;
mod rows;

use graft_run::roles::{plain, ImageRoles};
use lr_find::range_test;
use output::save_outputs;
use rows::fingerprint;

pub fn run(args: FinetuneArgs) -> anyhow::Result<()> {
    match args.run.clone().or_else(|| args.resume.clone()) {
        Some(run) if !args.dry_run && !args.lr_find => {
            let mut params = graft_run::tracking::params_of(&args);
            match args.lr_arg {
                Some(LrArg::Rate(r)) => params.insert("lr".into(), r.to_string()),
                Some(LrArg::Auto(rule)) => params.insert("lr".into(), format!("auto:{rule}")),
                None => None,
            };
            crate::tracked::tracked(graft_run::Job::Finetune, &RunDir::new(run), params, || {
                fine_tune(args)
            })
        }
        _ => fine_tune(args),
    }
}

fn fine_tune(args: FinetuneArgs) -> anyhow::Result<()> {
    let (run, resume) = match (&args.run, &args.resume) {
        (Some(r), None) => (r.clone(), false),
        (None, Some(r)) => (r.clone(), true),
        _ => bail!("give either --run RUN (start) or --resume RUN (continue)"),
    };
    let tuned = RunDir::new(&run).finetune();
    let settings_path = tuned.finetune_settings();
    // A resumed fine-tune continues with the settings it was started with (only the backend
    // may change).
    let mut args = if resume && settings_path.exists() {
        let bytes = std::fs::read(&settings_path)
            .with_context(|| format!("reading {}", settings_path.display()))?;
        let saved: FinetuneArgs = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged; start over with `graft finetune --run {} --restart`",
                settings_path.display(),
                run.display()
            )
        })?;
        FinetuneArgs {
            run: None,
            resume: args.resume.clone(),
            restart: false,
            dry_run: args.dry_run,
            backend: args.backend.clone(),
            ..saved
        }
    } else {
        let mut args = args;
        if let Some(LrArg::Rate(r)) = args.lr_arg {
            args.lr = r;
        }
        args
    };
    let auto_lr = match args.lr_arg {
        Some(LrArg::Auto(rule)) if !resume => Some(rule),
        _ => None,
    };
    let model = HeadModel::load(&run)
        .with_context(|| format!("loading the model of run {}", run.display()))?;
    // A run fine-tuned before continues from its own encoder, not the pretrained one.
    let (spec, weights) = graft_run::encoder::load_run_weights(
        &RunDir::new(&run),
        &model,
        "Fine-tuning (it trains the encoder's top blocks)",
    )?;
    let kind = spec.kind;
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
    let mut cfg = config(&args)?;
    // Stage 3 trains from the stem up; otherwise only the top blocks are held.
    let first = if cfg.epochs[2] > 0 { 0 } else { cut };
    let (mut net, start) = TopNet::new(&spec, &weights, &model, first, cut)?;
    net.precision = args.precision;
    net.libtorch = graft_model::burn_backend::is_libtorch(&args.backend);
    if args.dry_run {
        return dry_run(&spec, &net, &cfg, &args.memory);
    }
    let dir = tuned.root().to_path_buf();
    let ckpt = tuned.checkpoint();
    if args.restart {
        // Everything but the activation cache (still valid for the same images and cut).
        let outputs = [
            tuned.checkpoint(),
            tuned.metrics(),
            tuned.finetune_settings(),
            tuned.encoder_weights(),
            tuned.model_weights(),
            tuned.model_meta(),
            tuned.history(),
            tuned.augmented_batch(),
            tuned.info(),
            tuned.onnx(graft_run::Precision::Fp32),
            tuned.onnx(graft_run::Precision::Int8),
            tuned.export_records(),
            tuned.model_card(),
        ];
        for p in outputs {
            if p.exists() {
                std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
            }
        }
    }
    let finished = tuned.metrics().exists();
    match (resume, ckpt.exists(), finished) {
        _ if args.lr_find => {}
        (_, _, true) => bail!(
            "{} is already fine-tuned (see {}); pass --restart to fine-tune it again",
            run.display(),
            tuned.metrics().display()
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
    let features = graft_run::held_out::features_of(&RunDir::new(&run), None)?;
    let cache = graft_run::held_out::open_run_cache(&features, &model)?;
    let origin = Origin::read(&features)
        .with_context(|| format!("{} does not say where its images are", features.display()))?;
    let mut encoder = graft_run::encoder::prefix_encoder(
        &prefix_spec(&spec, cut),
        &weights,
        graft_run::Backend::Auto,
    )?;
    let acts_dir = tuned.activations(cut);
    let mut load = |items: &[(acts::Item, String)], split: Split| -> anyhow::Result<Acts> {
        let name = split_name(split);
        let fp = fingerprint(&model, cut, items);
        let pb = progress::bar(items.len() as u64, name);
        let a = acts::load_or_build(
            &acts_dir.join(name),
            name,
            &fp,
            net.input(),
            &plain(items),
            &model.meta.preprocess,
            &mut |x, n| encoder.encode(x, n).map_err(|e| e.to_string()),
            &mut |done, _| pb.set_position(done as u64),
        )?;
        pb.finish_and_clear();
        Ok(a)
    };
    let rows = ImageRoles::of(&cache, &origin, &model, args.val_fraction, args.limit)?;
    // One activation cache per manifest split; the roles (train, val, test) select from them.
    let mut loaded: BTreeMap<Split, (Vec<usize>, Acts)> = BTreeMap::new();
    for (split, positions) in rows.by_manifest_split() {
        let items: Vec<(acts::Item, String)> =
            positions.iter().map(|&p| rows.items[p].clone()).collect();
        let a = load(&items, split)?;
        loaded.insert(split, (positions, a));
    }
    let role = |positions: &[usize]| -> Acts {
        let Some(&p0) = positions.first() else {
            return Acts::default();
        };
        let (held, acts) = &loaded[&rows.manifest_split(p0)];
        let idx: Vec<usize> = positions
            .iter()
            .filter_map(|p| held.binary_search(p).ok())
            .collect();
        acts.select(&idx)
    };
    let (train, val, test) = (role(&rows.train), role(&rows.val), role(&rows.test));
    let (train_items, val_items, test_items) = (
        rows.items_of(&rows.train),
        rows.items_of(&rows.val),
        rows.items_of(&rows.test),
    );
    if rows.val_held_out {
        say!(
            "The data has no val split: {} training images held out as val, as head training did \
             (--val-fraction {}, seed {}).",
            val.len(),
            args.val_fraction,
            model.meta.train.seed
        );
    }
    let cache_secs = cache_started.elapsed().as_secs_f64();
    say!(
        "Activations at block {cut} ({}×{}×{}): {} train, {} val, {} test images ({:.0} MB in f16, {:.1} s)",
        net.input()[0],
        net.input()[1],
        net.input()[2],
        train.len(),
        val.len(),
        test.len(),
        (train.bytes() + val.bytes() + test.bytes()) as f64 / 1e6,
        cache_secs
    );

    let device =
        graft_model::burn_backend::device_named(&args.backend).map_err(anyhow::Error::msg)?;
    if args.lr_find || auto_lr.is_some() {
        let rule = auto_lr.unwrap_or(Rule::Steepest);
        let found = range_test(&net, &start, &train, &cfg, rule, &tuned, &device)?;
        if args.lr_find {
            return Ok(());
        }
        match found {
            Some(lr) => {
                args.lr = lr;
                cfg.lr = lr;
                cfg.check()?;
            }
            None => say!(
                "  the curve suggests no rate by the {rule} rule; keeping --lr {}",
                cfg.lr
            ),
        }
    }
    if !resume {
        write_file(&settings_path, &serde_json::to_vec_pretty(&args)?)?;
    }
    let started = Instant::now();
    let mut on = printer();
    if resume {
        say!("Resuming from {}", ckpt.display());
    }
    let classes = model.meta.classes.len();
    let cached = |acts: Acts| -> Arc<dyn Source> {
        Arc::new(CachedSource {
            acts,
            start: cut,
            classes,
        })
    };
    let (train_n, val_n, test_len) = (train.len(), val.len(), test.len());
    let (train_c, val_c, test_c) = (cached(train), cached(val), cached(test));
    let top = StageData {
        train: Arc::clone(&train_c),
        val: Arc::clone(&val_c),
    };
    let augment = match &args.config {
        Some(p) => graft_run::settings::read_augment(p)?,
        None => AugmentConfig::default(),
    };
    let images = |items: &[(acts::Item, String)], augment: AugmentConfig| {
        ImageSource::new(
            plain(items),
            model.meta.preprocess,
            augment,
            classes,
            cfg.seed,
        )
    };
    let train_images = images(&train_items, augment);
    if cfg.epochs[2] > 0 {
        let rows: Vec<usize> = (0..train_items.len().min(32)).collect();
        let png = tuned.augmented_batch();
        train_images
            .preview(&rows, 0)?
            .save(&png)
            .with_context(|| format!("writing {}", png.display()))?;
    }
    let all = StageData {
        train: Arc::new(train_images),
        val: Arc::new(images(&val_items, AugmentConfig::off())),
    };
    let data = [top.clone(), top, all];
    let out = finetune::run(&net, start.clone(), &cfg, &data, &ckpt, &device, &mut on)?;
    let train_secs = started.elapsed().as_secs_f64();

    // Test images: the cache describes the frozen lower encoder, so a kept stage 3 is scored
    // from the images themselves.
    let frozen = finetune::evaluate(&net, &start, test_c.as_ref(), &device)?;
    let tuned_scores = if out.changed_lower_blocks() {
        let src = images(&test_items, AugmentConfig::off());
        finetune::evaluate(&net, &out.values, &src, &device)?
    } else {
        finetune::evaluate(&net, &out.values, test_c.as_ref(), &device)?
    };
    say!(
        "Test ({} images): frozen head accuracy {:.4} macro-F1 {:.4} → fine-tuned accuracy {:.4} macro-F1 {:.4}",
        test_len,
        frozen.accuracy(),
        frozen.macro_f1(),
        tuned_scores.accuracy(),
        tuned_scores.macro_f1()
    );
    save_outputs(&tuned, &spec, &weights, &model, &net, &out)?;
    // The fine-tuned run reads its images from the same cache's list (export validation).
    write_json(
        &tuned.info(),
        &RunInfo {
            features,
            finetuned_from: Some(run.clone()),
        },
    )?;
    let scores = |e: &graft_train::Confusion| Scores {
        accuracy: e.accuracy(),
        macro_f1: e.macro_f1(),
    };
    let metrics = FinetuneMetrics {
        encoder: model.meta.encoder,
        weights: model.meta.weights.clone(),
        trained_from_block: cut,
        trained_blocks: args.unfreeze_blocks,
        activation_shape: net.input(),
        trained_parameters: net.param_count(),
        config: out.config.clone(),
        stages: out.stages.clone(),
        val_macro_f1: FrozenVsTuned {
            frozen: out.start_f1,
            finetuned: out.best_f1,
        },
        test: FinetuneTest {
            split: split_name(Split::Test).to_string(),
            images: test_len,
            scores: FrozenVsTuned {
                frozen: scores(&frozen),
                finetuned: scores(&tuned_scores),
            },
        },
        train_images: train_n,
        val_images: val_n,
        images_per_second: out
            .history
            .iter()
            .map(|r| EpochSpeed {
                stage: r.stage + 1,
                epoch: r.epoch + 1,
                images_per_second: r.images_per_second,
            })
            .collect(),
        seconds: FinetuneSeconds {
            activation_cache: cache_secs,
            training: train_secs,
        },
        resumed: out.resumed,
    };
    write_json(&tuned.metrics(), &metrics)?;
    say!("Wrote {}", dir.display());
    Ok(())
}

/// Progress bars per stage and one line per epoch and stage outcome.
fn printer() -> impl FnMut(&Event<'_>) -> bool {
    let mut bar: Option<indicatif::ProgressBar> = None;
    move |e: &Event<'_>| {
        match e {
            Event::Start { val_f1 } => say!("Frozen head: val macro-F1 {val_f1:.4}"),
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
                    Some(pb) => pb.suspend(|| say!("{line}")),
                    None => say!("{line}"),
                }
            }
            Event::StageEnd(r) => {
                if let Some(pb) = bar.take() {
                    pb.finish_and_clear();
                }
                if r.rolled_back {
                    say!(
                        "Stage {} ({}) reached val macro-F1 {:.4}, below {:.4} before it: rolled back.",
                        r.stage + 1,
                        r.name,
                        r.best_f1,
                        r.before_f1
                    );
                } else {
                    say!(
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
    }
}

fn finetune_stage_label(stage: usize) -> &'static str {
    ["stage 1", "stage 2", "stage 3"][stage.min(2)]
}

fn config(a: &FinetuneArgs) -> anyhow::Result<FinetuneConfig> {
    let e: Vec<usize> = a
        .epochs
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()
        .ok()
        .filter(|v: &Vec<usize>| v.len() == 2 || v.len() == 3)
        .with_context(|| {
            format!(
                "--epochs {:?}: give epochs of stages 1, 2 and optionally 3 (e.g. 1,3 or 1,3,1)",
                a.epochs
            )
        })?;
    let cfg = FinetuneConfig {
        epochs: [e[0], e[1], e.get(2).copied().unwrap_or(0)],
        stage_lr: FinetuneConfig::default().stage_lr,
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
        "Fine-tuning {} from block {} ({} trained parameters), micro batch {} of batch {}, {}:",
        spec.kind,
        net.top,
        net.param_count(),
        cfg.micro_batch,
        cfg.batch,
        net.precision
    );
    for (what, cut) in [
        ("stage 2 (top blocks, on cached activations)", net.top),
        ("all layers (from images)", 0),
    ] {
        let e = Estimate::new(spec, cut, head).in_precision(net.precision);
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

pub(crate) fn split_name(s: Split) -> &'static str {
    match s {
        Split::Train => "train",
        Split::Val => "val",
        Split::Test => "test",
    }
}
