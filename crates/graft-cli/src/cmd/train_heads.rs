//! `graft train heads`: the head sweep on a feature cache, written to a run folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use graft_features::FeatureCache;
use graft_run::files::{write_file, write_json, BestHead, Metrics, Rows, Temperature};
use graft_run::{RunDir, RunInfo};
use graft_train::{
    best, evaluate, run_sweep, Dataset, HeadModel, HeadSpec, ModelMeta, SweepConfig, SweepData,
    SweepEntry, TrainConfig,
};

use crate::cli::TrainHeadsArgs;

pub fn run(args: TrainHeadsArgs) -> anyhow::Result<()> {
    let cache = FeatureCache::open(&args.features).with_context(|| {
        format!(
            "opening the feature cache {} (make one with `graft extract`)",
            args.features.display()
        )
    })?;
    let loaded = cache.load_all();
    let header = cache.header();
    // Attention heads read the feature maps of the same rows (same splits, same val hold-out).
    let maps = if args.heads.iter().any(HeadSpec::spatial) {
        let missing = || {
            anyhow::anyhow!(
                "{}: the attention head needs spatial feature maps and this cache has none; \
                 extract again with `graft extract --spatial` (or run `graft train DIR --heads \
                 …,attention`, which does)",
                args.features.display()
            )
        };
        let dims = header.spatial.ok_or_else(missing)?;
        let x = cache.load_spatial(&loaded.items).ok_or_else(missing)?;
        let ds = Dataset::new_spatial(
            dims.channels,
            dims.height * dims.width,
            x,
            loaded.labels.clone(),
            &loaded.splits,
            header.classes.clone(),
            args.val_fraction,
            args.seed,
        )
        .with_context(|| format!("preparing the maps of {}", args.features.display()))?;
        Some(ds)
    } else {
        None
    };
    let ds = Dataset::new(
        loaded.feature_dim,
        loaded.features,
        loaded.labels,
        &loaded.splits,
        header.classes.clone(),
        args.val_fraction,
        args.seed,
    )
    .with_context(|| format!("preparing {}", args.features.display()))?;
    let data = SweepData {
        pooled: &ds,
        spatial: maps.as_ref(),
    };
    let sweep = SweepConfig {
        heads: args.heads.clone(),
        lrs: args.lrs.clone(),
        base: TrainConfig {
            epochs: args.epochs,
            batch: args.batch,
            weight_decay: args.weight_decay,
            label_smoothing: args.label_smoothing,
            balance: args.balance,
            clip: args.clip,
            patience: args.patience,
            seed: args.seed,
            ..TrainConfig::default()
        },
    };
    let runs = sweep.runs();
    if runs.is_empty() {
        anyhow::bail!("nothing to train: give at least one --heads and one --lrs value");
    }
    let dir = run_dir(&args.runs, args.name.as_deref())?;
    say!(
        "Training {} heads ({} × {} learning rates) on {} train / {} val rows of {} features, \
         {} classes{}, {} threads",
        runs.len(),
        sweep.heads.len(),
        sweep.lrs.len(),
        ds.train.len(),
        ds.val.len(),
        ds.dim,
        ds.classes.len(),
        if ds.val_held_out {
            format!(
                " (val held out of train, {:.0}%)",
                args.val_fraction * 100.0
            )
        } else {
            String::new()
        },
        rayon::current_num_threads()
    );
    let started = Instant::now();
    let pb = crate::progress::bar(runs.len() as u64, "sweep");
    let entries = run_sweep(data, &sweep, &|e: &SweepEntry| {
        pb.inc(1);
        tracing::info!(
            head = %e.config.head,
            lr = e.config.lr,
            f1 = e.outcome.val_macro_f1,
            "finished"
        );
    })?;
    pb.finish_and_clear();
    let sweep_secs = started.elapsed().as_secs_f64();
    let Some(b) = best(&entries) else {
        anyhow::bail!("the sweep produced no result");
    };

    let winner = &entries[b];
    // From here on, the rows the winning head reads.
    let ds = data.for_head(&winner.config.head)?;
    // Temperature scaling on val: honest confidences for the "uncertain" threshold and ECE.
    let (val_x, val_y) = ds.gather(&ds.val);
    let val_logits = winner.outcome.head.logits(&val_x, ds.val.len());
    let c = ds.classes.len();
    let temperature = graft_train::calibrate::fit_temperature(&val_logits, &val_y, c);
    let nll_before = graft_train::calibrate::nll(&val_logits, &val_y, c, 1.0);
    let nll_after = graft_train::calibrate::nll(&val_logits, &val_y, c, f64::from(temperature));
    let model = HeadModel {
        meta: ModelMeta {
            format_version: 1,
            head: winner.config.head,
            classes: ds.classes.clone(),
            feature_dim: ds.dim / ds.locations,
            locations: ds.locations,
            encoder: header.encoder,
            weights: header.weights.clone(),
            preprocess: header.preprocess,
            train: winner.config.clone(),
            temperature,
            encoder_file: None,
        },
        head: winner.outcome.head.clone(),
        standardizer: ds.standardizer.clone(),
    };
    model.save(&dir)?;
    let run = RunDir::new(&dir);
    let features = std::fs::canonicalize(&args.features).unwrap_or_else(|_| args.features.clone());
    write_json(
        &run.info(),
        &RunInfo {
            features,
            finetuned_from: None,
        },
    )?;
    write_file(&run.sweep(), sweep_csv(&entries)?.as_bytes())?;
    write_file(&run.history(), history_csv(winner)?.as_bytes())?;

    let test = (!ds.test.is_empty()).then(|| evaluate(&winner.outcome.head, ds, &ds.test));
    let seeds = (args.seeds > 1).then(|| {
        let list: Vec<u64> = (0..args.seeds as u64).map(|i| args.seed + i).collect();
        note!(
            "Retraining the best configuration with {} seeds …",
            list.len()
        );
        graft_train::repeat_seeds(ds, &winner.config, &list)
    });
    let metrics = Metrics {
        features: args.features.clone(),
        encoder: header.encoder,
        best: BestHead {
            head: winner.config.head.to_string(),
            lr: winner.config.lr,
            best_epoch: winner.outcome.best_epoch,
            balance: winner.outcome.balance.to_string(),
            val_macro_f1: winner.outcome.val_macro_f1,
            val_accuracy: winner.outcome.val_acc,
            test_macro_f1: test.as_ref().map(|t| t.macro_f1()),
            test_accuracy: test.as_ref().map(|t| t.accuracy()),
        },
        rows: Rows {
            train: ds.train.len(),
            val: ds.val.len(),
            test: ds.test.len(),
        },
        val_held_out_of_train: ds.val_held_out,
        sweep_seconds: sweep_secs,
        temperature: Temperature {
            value: temperature,
            val_nll_before: nll_before,
            val_nll_after: nll_after,
        },
        seeds: seeds.clone(),
        sweep: sweep.clone(),
        eval: Default::default(),
    };
    write_json(&run.metrics(), &metrics)?;

    say!("{}", sweep_table(&entries, b));
    say!(
        "Sweep: {} configurations in {:.1} s. Best: {} lr {} (val macro-F1 {:.4}, val acc {:.4}{}).",
        entries.len(),
        sweep_secs,
        winner.config.head,
        winner.config.lr,
        winner.outcome.val_macro_f1,
        winner.outcome.val_acc,
        match &test {
            Some(t) => format!(
                "; test acc {:.4}, macro-F1 {:.4} on {} images",
                t.accuracy(),
                t.macro_f1(),
                ds.test.len()
            ),
            None => String::new(),
        }
    );
    if let Some(r) = &seeds {
        say!(
            "Over {} seeds ({} split): accuracy {:.4} ± {:.4}, macro-F1 {:.4} ± {:.4} (mean ± 95% CI)",
            r.seeds.len(),
            r.split,
            r.accuracy.mean,
            r.accuracy.ci95,
            r.macro_f1.mean,
            r.macro_f1.ci95
        );
    }
    say!("Calibration: temperature {temperature:.3} (val NLL {nll_before:.4} → {nll_after:.4}).");
    say!("Run folder: {}", dir.display());
    Ok(())
}

/// `runs/NAME`, or the first free of `runs/train`, `runs/train2`, …
fn run_dir(runs: &Path, name: Option<&str>) -> anyhow::Result<PathBuf> {
    let dir = match name {
        Some(n) => runs.join(n),
        None => (1..)
            .map(|i| {
                runs.join(if i == 1 {
                    "train".into()
                } else {
                    format!("train{i}")
                })
            })
            .find(|d| !d.exists())
            .context("no free run name")?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn sweep_table(entries: &[SweepEntry], best: usize) -> String {
    let mut s =
        String::from("  head            lr       epochs  best  val macro-F1  val acc   time\n");
    for (i, e) in entries.iter().enumerate() {
        let o = &e.outcome;
        let _ = writeln!(
            s,
            "{} {:<15} {:<8} {:>6} {:>5}  {:>11.4}  {:>7.4} {:>5.1} s",
            if i == best { "*" } else { " " },
            e.config.head.to_string(),
            e.config.lr,
            o.history.len(),
            o.best_epoch,
            o.val_macro_f1,
            o.val_acc,
            o.seconds
        );
    }
    s
}

fn sweep_csv(entries: &[SweepEntry]) -> anyhow::Result<String> {
    let header = [
        "head",
        "lr",
        "epochs_run",
        "best_epoch",
        "stopped_early",
        "balance",
        "val_macro_f1",
        "val_accuracy",
        "seconds",
    ];
    let rows = entries.iter().map(|e| {
        let o = &e.outcome;
        [
            e.config.head.to_string(),
            e.config.lr.to_string(),
            o.history.len().to_string(),
            o.best_epoch.to_string(),
            o.stopped_early.to_string(),
            o.balance.to_string(),
            format!("{:.6}", o.val_macro_f1),
            format!("{:.6}", o.val_acc),
            format!("{:.3}", o.seconds),
        ]
    });
    Ok(graft_data::table::to_csv(&header, rows)?)
}

fn history_csv(e: &SweepEntry) -> anyhow::Result<String> {
    let header = [
        "epoch",
        "train_loss",
        "val_macro_f1",
        "val_accuracy",
        "lr",
        "seconds",
    ];
    let rows = e.outcome.history.iter().map(|h| {
        [
            h.epoch.to_string(),
            format!("{:.6}", h.train_loss),
            format!("{:.6}", h.val_macro_f1),
            format!("{:.6}", h.val_acc),
            format!("{:.6e}", h.lr),
            format!("{:.3}", h.seconds),
        ]
    });
    Ok(graft_data::table::to_csv(&header, rows)?)
}
