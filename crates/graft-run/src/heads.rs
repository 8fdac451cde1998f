//! Stage 3 of a run: the head sweep on a feature cache, the winner calibrated (temperature on
//! val) and written to the run folder with its metrics, sweep table and training history.

use std::path::{Path, PathBuf};
use std::time::Instant;

use graft_features::FeatureCache;
use graft_train::{
    best, evaluate, run_sweep, Balance, Dataset, HeadModel, HeadSpec, ModelMeta, SweepConfig,
    SweepData, SweepEntry, TrainConfig,
};

use crate::error::Context;
use crate::files::{write_file, write_json, BestHead, Metrics, Rows, Temperature};
use crate::report::{Event, Reporter};
use crate::{RunDir, RunError, RunInfo};

/// What to sweep, on which cache, into which run folder.
#[derive(Debug, Clone)]
pub struct HeadsRequest {
    pub features: PathBuf,
    /// The run folder `runs/NAME`; the first free `runs/train`, `runs/train2`, … when `None`.
    pub name: Option<String>,
    pub runs: PathBuf,
    pub heads: Vec<HeadSpec>,
    pub lrs: Vec<f32>,
    pub epochs: usize,
    pub batch: usize,
    pub weight_decay: f32,
    pub label_smoothing: f32,
    pub balance: Balance,
    pub clip: f32,
    pub patience: usize,
    /// Share of train held out as val when the data has no val split.
    pub val_fraction: f64,
    pub seed: u64,
    /// Retrain the best configuration with this many seeds (for a confidence interval).
    pub seeds: usize,
    /// Replace `lrs` by each head's rate from the learning-rate range test, read by this rule.
    pub auto_lr: Option<graft_train::lr_find::Rule>,
}

/// Told before the sweep starts.
#[derive(Debug)]
pub struct SweepStarted {
    /// Configurations: heads × learning rates.
    pub runs: usize,
    pub heads: usize,
    pub lrs: usize,
    /// Rates come from the range test, one per head.
    pub auto_lr: bool,
    pub train_rows: usize,
    pub val_rows: usize,
    pub dim: usize,
    pub classes: usize,
    /// The val share held out of train, when the data had no val split.
    pub val_held_out: Option<f64>,
    pub threads: usize,
}

/// The sweep's result, as written.
#[derive(Debug)]
pub struct Swept {
    pub entries: Vec<SweepEntry>,
    /// Index of the winner in `entries`.
    pub best: usize,
    /// What metrics.json now holds.
    pub metrics: Metrics,
    pub dir: PathBuf,
}

/// Sweep `req.heads` × `req.lrs` on the cache and write the winner as the run's model.
pub fn train_heads(req: &HeadsRequest, reporter: &dyn Reporter) -> Result<Swept, RunError> {
    let cache = FeatureCache::open(&req.features).with_context(|| {
        format!(
            "opening the feature cache {} (make one with `graft extract`)",
            req.features.display()
        )
    })?;
    let loaded = cache.load_all();
    let header = cache.header();
    // Attention heads read the feature maps of the same rows (same splits, same val hold-out).
    let maps = if req.heads.iter().any(HeadSpec::spatial) {
        let missing = || {
            RunError::Invalid(format!(
                "{}: the attention head needs spatial feature maps and this cache has none; \
                 extract again with `graft extract --spatial` (or run `graft train DIR --heads \
                 …,attention`, which does)",
                req.features.display()
            ))
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
            req.val_fraction,
            req.seed,
        )
        .with_context(|| format!("preparing the maps of {}", req.features.display()))?;
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
        req.val_fraction,
        req.seed,
    )
    .with_context(|| format!("preparing {}", req.features.display()))?;
    let data = SweepData {
        pooled: &ds,
        spatial: maps.as_ref(),
    };
    let mut sweep = SweepConfig {
        heads: req.heads.clone(),
        lrs: req.lrs.clone(),
        base: TrainConfig {
            epochs: req.epochs,
            batch: req.batch,
            weight_decay: req.weight_decay,
            label_smoothing: req.label_smoothing,
            balance: req.balance,
            clip: req.clip,
            patience: req.patience,
            seed: req.seed,
            ..TrainConfig::default()
        },
        found_lrs: Vec::new(),
    };
    if let Some(rule) = req.auto_lr {
        sweep.find_lrs(data, rule);
        for (head, found) in sweep.heads.iter().zip(&sweep.found_lrs) {
            reporter.event(Event::Note(match found {
                Some(lr) => {
                    format!("  {head}: learning rate {lr:.2e} from the range test ({rule} rule)")
                }
                None if head.spatial() => format!(
                    "  {head}: the range test runs on pooled features; trying the listed rates"
                ),
                None => {
                    format!("  {head}: the range test's loss never fell; trying the listed rates")
                }
            }));
        }
    }
    let runs = sweep.runs();
    if runs.is_empty() {
        return Err(RunError::Invalid(
            "nothing to train: give at least one head and one learning rate".into(),
        ));
    }
    let dir = run_folder(&req.runs, req.name.as_deref())?;
    reporter.event(Event::SweepStarted(&SweepStarted {
        runs: runs.len(),
        heads: sweep.heads.len(),
        lrs: sweep.lrs.len(),
        auto_lr: req.auto_lr.is_some(),
        train_rows: ds.train.len(),
        val_rows: ds.val.len(),
        dim: ds.dim,
        classes: ds.classes.len(),
        val_held_out: ds.val_held_out.then_some(req.val_fraction),
        threads: rayon::current_num_threads(),
    }));
    let started = Instant::now();
    let bar = reporter.bar("sweep", runs.len() as u64);
    let entries = run_sweep(data, &sweep, &|e: &SweepEntry| {
        bar.inc(1);
        tracing::info!(
            head = %e.config.head,
            lr = e.config.lr,
            f1 = e.outcome.val_macro_f1,
            "finished"
        );
    })?;
    drop(bar);
    let sweep_secs = started.elapsed().as_secs_f64();
    let Some(b) = best(&entries) else {
        return Err(RunError::Invalid("the sweep produced no result".into()));
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
            encoder: header.encoder.clone(),
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
    let features = std::fs::canonicalize(&req.features).unwrap_or_else(|_| req.features.clone());
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
    let seeds = (req.seeds > 1).then(|| {
        let list: Vec<u64> = (0..req.seeds as u64).map(|i| req.seed + i).collect();
        reporter.event(Event::RetrainingSeeds(list.len()));
        graft_train::repeat_seeds(ds, &winner.config, &list)
    });
    let metrics = Metrics {
        features: req.features.clone(),
        encoder: header.encoder.clone(),
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
        seeds,
        sweep,
        eval: Default::default(),
    };
    write_json(&run.metrics(), &metrics)?;
    let swept = Swept {
        entries,
        best: b,
        metrics,
        dir,
    };
    reporter.event(Event::Swept(&swept));
    Ok(swept)
}

/// The pooled feature rows of a run's cache as a training set, with the val hold-out of its
/// settings (the same rows its head sweep trained and chose on).
pub fn pooled_dataset(run: &RunDir, settings: &crate::Settings) -> Result<Dataset, RunError> {
    let features = run.features();
    let cache = FeatureCache::open(&features).map_err(|e| {
        RunError::Invalid(format!(
            "{}: {e} (graft train or graft extract writes the run's feature cache)",
            features.display()
        ))
    })?;
    let loaded = cache.load_all();
    let h = &settings.heads;
    Ok(Dataset::new(
        loaded.feature_dim,
        loaded.features,
        loaded.labels,
        &loaded.splits,
        cache.header().classes.clone(),
        h.val_fraction,
        h.seed,
    )?)
}

/// `runs/NAME`, or the first free of `runs/train`, `runs/train2`, …, created.
pub fn run_folder(runs: &Path, name: Option<&str>) -> Result<PathBuf, RunError> {
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
            .ok_or_else(|| RunError::Invalid("no free run name".into()))?,
    };
    std::fs::create_dir_all(&dir).map_err(|e| RunError::write(&dir, e))?;
    Ok(dir)
}

fn sweep_csv(entries: &[SweepEntry]) -> Result<String, RunError> {
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

fn history_csv(e: &SweepEntry) -> Result<String, RunError> {
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
