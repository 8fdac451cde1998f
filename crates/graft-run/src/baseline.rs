//! `graft baseline`: a net trained from scratch on the run's own images, with the run's split,
//! scored on the same test images as the run's frozen-encoder head and set beside it
//! (`RUN/baseline/<arch>/`).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use graft_data::augment::AugmentConfig;
use graft_data::preprocess::{Filter, Preprocess};
use graft_train::baseline::{self, Arch, BaselineConfig, Event as TrainEvent, Net};
use graft_train::finetune::{ImageSource, Source};
use graft_train::{Confusion, HeadModel};
use serde::{Deserialize, Serialize};

use crate::files::{read_json_if_exists, write_file, write_json, Metrics};
use crate::report::{Event, Reporter};
use crate::roles::ImageRoles;
use crate::{RunDir, RunError};

/// A baseline's folder, `RUN/baseline/<arch>/`.
#[derive(Debug, Clone)]
pub struct BaselineDir(pub PathBuf);

impl BaselineDir {
    pub fn of(run: &RunDir, arch: Arch) -> BaselineDir {
        BaselineDir(run.root().join("baseline").join(arch.name()))
    }
    pub fn root(&self) -> &Path {
        &self.0
    }
    /// `settings.json`: what was asked for; a rerun with other settings is refused.
    pub fn settings(&self) -> PathBuf {
        self.0.join("settings.json")
    }
    /// `checkpoint.bin`: the resume point.
    pub fn checkpoint(&self) -> PathBuf {
        self.0.join("checkpoint.bin")
    }
    /// `history.csv`: one row per epoch.
    pub fn history(&self) -> PathBuf {
        self.0.join("history.csv")
    }
    /// `metrics.json` ([`BaselineMetrics`]).
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.json")
    }
    /// `model.safetensors`: the best epoch's weights and BatchNorm statistics.
    pub fn weights(&self) -> PathBuf {
        self.0.join("model.safetensors")
    }
    /// `curve.png`: val macro-F1 per epoch against the transfer run's.
    pub fn curve(&self) -> PathBuf {
        self.0.join("curve.png")
    }
    /// `augmented_batch.png`: the first training batch as the net sees it.
    pub fn augmented_batch(&self) -> PathBuf {
        self.0.join("augmented_batch.png")
    }
}

/// What to train.
#[derive(Debug, Clone)]
pub struct BaselineRequest<'a> {
    pub run: &'a RunDir,
    pub config: BaselineConfig,
    /// Random crops and horizontal flips while training.
    pub augment: bool,
    /// Train on at most this many training images (evenly spread).
    pub limit: Option<usize>,
    /// Forget an earlier or interrupted baseline of this architecture.
    pub restart: bool,
    /// Where burn trains (an autodiff device).
    pub device: Device,
}

/// What was asked for (`settings.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineSettings {
    pub config: BaselineConfig,
    pub augment: bool,
    pub limit: Option<usize>,
}

/// Accuracy and macro-F1 on one split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    pub macro_f1: f64,
}

/// The run's frozen-encoder result on the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub encoder: String,
    pub head: String,
    pub val: Scores,
    pub test: Option<Scores>,
}

/// `RUN/baseline/<arch>/metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineMetrics {
    pub arch: Arch,
    pub settings: BaselineSettings,
    pub parameters: usize,
    /// Multiply-adds of one forward pass at the input size.
    pub multiply_adds: u64,
    /// The input normalisation (the dataset's channel statistics, from the audit).
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub train_images: usize,
    pub val_images: usize,
    pub test_images: usize,
    /// Val was held out of train (no val split), as head training held it out.
    pub val_held_out_of_train: bool,
    /// "test", or "val" when the run has no test split.
    pub test_split: String,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub stopped_early: bool,
    pub train_seconds: f64,
    pub val: Scores,
    pub test: Scores,
    pub transfer: Option<Transfer>,
}

impl BaselineMetrics {
    /// Test macro-F1 of the baseline minus the transfer run's, when both exist.
    pub fn gap(&self) -> Option<f64> {
        let t = self.transfer.as_ref()?.test?;
        Some(self.test.macro_f1 - t.macro_f1)
    }
}

/// The default augmentation of a baseline: random crops keeping 64–100% of the area (about
/// what 4-pixel padding and a 32-pixel crop keep) and horizontal flips; nothing that changes
/// colours, which on small grey images would say more than the pixels.
pub fn default_augment() -> AugmentConfig {
    AugmentConfig {
        crop_scale: (0.64, 1.0),
        crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
        hflip: 0.5,
        ..AugmentConfig::off()
    }
}

/// Train (or continue, or reuse) the baseline `req` asks for and write its folder.
pub fn baseline(
    req: &BaselineRequest<'_>,
    reporter: &dyn Reporter,
) -> Result<BaselineMetrics, RunError> {
    let run = req.run;
    let cfg = &req.config;
    let model = HeadModel::load(run.root()).map_err(|e| {
        RunError::Invalid(format!(
            "{}: no trained head ({e}); a baseline uses the run's split and sets its result \
             beside the run's, so train the run first (graft train DIR)",
            run.root().display()
        ))
    })?;
    let settings = crate::Settings::of_run(run)?;
    let features = crate::held_out::features_of(run, None)?;
    let cache = crate::held_out::open_run_cache(&features, &model)?;
    let origin = crate::held_out::origin_of(&features)?;
    let roles = ImageRoles::of(
        &cache,
        &origin,
        &model,
        settings.heads.val_fraction,
        req.limit,
    )?;
    let classes = model.meta.classes.len();
    let net = Net::new(cfg.arch, cfg.size, classes)?;
    let dir = BaselineDir::of(run, cfg.arch);
    let asked = BaselineSettings {
        config: cfg.clone(),
        augment: req.augment,
        limit: req.limit,
    };
    prepare_folder(&dir, &asked, req.restart)?;
    let (mean, std) = channel_stats(&run.audit());
    let pre = Preprocess {
        size: cfg.size as u32,
        resize_shorter: cfg.size as u32,
        mean,
        std,
        filter: Filter::Bilinear,
    };
    let items = |rows: &[usize]| crate::roles::plain(&roles.items_of(rows));
    let augment = if req.augment {
        default_augment()
    } else {
        AugmentConfig::off()
    };
    let train = ImageSource::new(items(&roles.train), pre, augment, classes, cfg.seed);
    let plain = |rows: &[usize]| {
        ImageSource::new(items(rows), pre, AugmentConfig::off(), classes, cfg.seed)
    };
    let (val, test) = (plain(&roles.val), plain(&roles.test));
    if req.augment && !dir.augmented_batch().is_file() && !train.is_empty() {
        let rows: Vec<usize> = (0..train.len().min(32)).collect();
        let grid = train.preview(&rows, 0)?;
        grid.save(dir.augmented_batch())
            .map_err(|e| RunError::write(&dir.augmented_batch(), std::io::Error::other(e)))?;
    }
    reporter.event(Event::Note(format!(
        "{} from scratch: {} parameters, {:.1}M multiply-adds per {}×{} image; {} train, {} val, \
         {} test images",
        cfg.arch,
        net.parameters(),
        net.macs() as f64 / 1e6,
        cfg.size,
        cfg.size,
        train.len(),
        val.len(),
        test.len()
    )));
    let bar = reporter.bar("baseline", 0);
    let mut on = |e: &TrainEvent<'_>| {
        match e {
            TrainEvent::Start { total, done } => {
                bar.set_length(*total as u64);
                bar.set_position(*done as u64);
            }
            TrainEvent::Update { done, .. } => bar.set_position(*done as u64),
            TrainEvent::Epoch(row) => reporter.event(Event::Note(format!(
                "  epoch {:>3}: train loss {:.4}, val accuracy {:.4}, val macro-F1 {:.4} \
                 ({:.0} images/s)",
                row.epoch,
                row.train_loss,
                row.val_accuracy,
                row.val_macro_f1,
                row.images_per_second
            ))),
        }
        true
    };
    let out = baseline::run(
        &net,
        cfg,
        &train,
        &val,
        &dir.checkpoint(),
        &req.device,
        &mut on,
    )?;
    drop(bar);
    let pred = baseline::predictions(&net, &out.values, &out.stats, &test, &req.device)?;
    let conf = Confusion::from_pairs(classes, test.labels(), &pred);
    let best = out
        .history
        .iter()
        .find(|r| r.epoch == out.best_epoch)
        .ok_or_else(|| RunError::Invalid("the baseline recorded no epoch".into()))?;
    let metrics = BaselineMetrics {
        arch: cfg.arch,
        settings: asked,
        parameters: net.parameters(),
        multiply_adds: net.macs(),
        mean,
        std,
        train_images: train.len(),
        val_images: val.len(),
        test_images: test.len(),
        val_held_out_of_train: roles.val_held_out,
        test_split: if roles.test == roles.val {
            "val"
        } else {
            "test"
        }
        .into(),
        epochs_run: out.history.len(),
        best_epoch: out.best_epoch,
        stopped_early: out.stopped_early,
        train_seconds: out.seconds,
        val: Scores {
            accuracy: best.val_accuracy,
            macro_f1: best.val_macro_f1,
        },
        test: Scores {
            accuracy: conf.accuracy(),
            macro_f1: conf.macro_f1(),
        },
        transfer: transfer_of(run)?,
    };
    baseline::save_weights(&net, &out.values, &out.stats, &dir.weights())?;
    write_history(&dir.history(), &out.history)?;
    write_json(&dir.metrics(), &metrics)?;
    let curve: Vec<f64> = out.history.iter().map(|r| r.val_macro_f1).collect();
    let reference = metrics.transfer.as_ref().map(|t| {
        (
            format!("{} + {} head (val)", t.encoder, t.head),
            t.val.macro_f1,
        )
    });
    if let Err(e) = graft_eval::baseline_plot::curve(
        &[(cfg.arch.name().to_string(), curve)],
        reference.as_ref().map(|(l, v)| (l.as_str(), *v)),
        &dir.curve(),
    ) {
        reporter.event(Event::Note(format!("  note: curve not drawn ({e})")));
    }
    Ok(metrics)
}

/// Create the folder, or check that what it holds was asked for with these settings.
fn prepare_folder(
    dir: &BaselineDir,
    asked: &BaselineSettings,
    restart: bool,
) -> Result<(), RunError> {
    if restart && dir.root().is_dir() {
        std::fs::remove_dir_all(dir.root()).map_err(|e| RunError::write(dir.root(), e))?;
    }
    if let Some(before) = read_json_if_exists::<BaselineSettings>(&dir.settings())? {
        if &before != asked {
            return Err(RunError::Invalid(format!(
                "{} holds a baseline trained with other settings ({}); give the same settings \
                 to continue it, or restart it",
                dir.root().display(),
                serde_json::to_string(&before.config).unwrap_or_default()
            )));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir.root()).map_err(|e| RunError::write(dir.root(), e))?;
    write_json(&dir.settings(), asked)
}

/// The dataset's per-channel mean and standard deviation from the run's audit (what a net
/// trained from scratch normalises by); mid-grey values when the audit has none.
fn channel_stats(audit: &Path) -> ([f32; 3], [f32; 3]) {
    let fallback = ([0.5; 3], [0.25; 3]);
    let Ok(Some(v)) = read_json_if_exists::<serde_json::Value>(audit) else {
        return fallback;
    };
    let three = |key: &str| -> Option<[f32; 3]> {
        let a = v.get("channels")?.get(key)?.as_array()?;
        let mut out = [0f32; 3];
        for (o, x) in out.iter_mut().zip(a) {
            *o = x.as_f64()? as f32;
        }
        (a.len() == 3).then_some(out)
    };
    match (three("mean"), three("std")) {
        (Some(m), Some(s)) if s.iter().all(|s| *s > 1e-3) => (m, s),
        _ => fallback,
    }
}

/// The run's own result, from its metrics.json.
fn transfer_of(run: &RunDir) -> Result<Option<Transfer>, RunError> {
    let Some(m) = read_json_if_exists::<Metrics>(&run.metrics())? else {
        return Ok(None);
    };
    let b = &m.best;
    Ok(Some(Transfer {
        encoder: m.encoder.to_string(),
        head: b.head.clone(),
        val: Scores {
            accuracy: b.val_accuracy,
            macro_f1: b.val_macro_f1,
        },
        test: b.test_macro_f1.zip(b.test_accuracy).map(|(f, a)| Scores {
            accuracy: a,
            macro_f1: f,
        }),
    }))
}

fn write_history(path: &Path, rows: &[baseline::EpochRow]) -> Result<(), RunError> {
    let csv = graft_data::table::to_csv(
        &[
            "epoch",
            "train_loss",
            "val_accuracy",
            "val_macro_f1",
            "images_per_second",
        ],
        rows.iter().map(|r| {
            [
                r.epoch.to_string(),
                format!("{:.6}", r.train_loss),
                format!("{:.6}", r.val_accuracy),
                format!("{:.6}", r.val_macro_f1),
                format!("{:.1}", r.images_per_second),
            ]
        }),
    )?;
    write_file(path, csv.as_bytes())
}

/// Every baseline of the run, by architecture name.
pub fn all(run: &RunDir) -> Vec<BaselineMetrics> {
    let Ok(rd) = std::fs::read_dir(run.root().join("baseline")) else {
        return Vec::new();
    };
    let mut found: Vec<BaselineMetrics> = rd
        .flatten()
        .filter_map(|e| crate::files::read_json(&e.path().join("metrics.json")).ok())
        .collect();
    found.sort_by_key(|m| m.arch.name());
    found
}

/// The report's "Baselines" section: the run's transfer result, then each baseline with its
/// size and the difference; `None` when the run has none.
pub fn report_section(run: &RunDir) -> Option<graft_eval::report::Section> {
    let found = all(run);
    let first = found.first()?;
    let f = |s: Option<Scores>, pick: fn(Scores) -> f64| {
        s.map_or("–".into(), |s| format!("{:.4}", pick(s)))
    };
    let mut section = graft_eval::report::Section {
        header: [
            "model",
            "parameters",
            "trained",
            &format!("{} accuracy", first.test_split),
            &format!("{} macro-F1", first.test_split),
            "vs transfer",
        ]
        .map(str::to_string)
        .to_vec(),
        ..Default::default()
    };
    if let Some(t) = &first.transfer {
        section.rows.push(vec![
            format!("{} (frozen) + {} head", t.encoder, t.head),
            "–".into(),
            "head only, on cached features".into(),
            f(t.test, |s| s.accuracy),
            f(t.test, |s| s.macro_f1),
            "reference".into(),
        ]);
    }
    for m in &found {
        section.rows.push(vec![
            format!(
                "{} from scratch, {}×{}",
                m.arch, m.settings.config.size, m.settings.config.size
            ),
            m.parameters.to_string(),
            format!(
                "{} epochs{}, {:.0} s",
                m.epochs_run,
                if m.settings.augment {
                    ", augmented"
                } else {
                    ""
                },
                m.train_seconds
            ),
            format!("{:.4}", m.test.accuracy),
            format!("{:.4}", m.test.macro_f1),
            m.gap().map_or("–".into(), |g| format!("{g:+.4}")),
        ]);
        if let Ok(png) = std::fs::read(BaselineDir::of(run, m.arch).curve()) {
            section
                .figures
                .push((format!("{} val macro-F1 per epoch", m.arch), png));
        }
    }
    Some(section)
}

/// What the baseline written last (at or after `since_ms`) leaves to the tracking store: its
/// folder, architecture and size, val macro-F1 per epoch (the step is the epoch), and its
/// final scores beside the transfer run's.
pub fn tracked(run: &RunDir, since_ms: i64) -> Option<crate::tracking::Recorded> {
    let folder =
        crate::tracking::newest_written(&run.root().join("baseline"), "metrics.json", since_ms)?;
    let m: BaselineMetrics = crate::files::read_json(&folder.join("metrics.json")).ok()?;
    let mut params = std::collections::BTreeMap::new();
    params.insert("arch".to_string(), m.arch.to_string());
    params.insert("parameters".to_string(), m.parameters.to_string());
    params.insert("test_split".to_string(), m.test_split.clone());
    let mut metrics = Vec::new();
    if let Ok(mut rows) = csv::Reader::from_path(folder.join("history.csv")) {
        for row in rows.deserialize::<baseline::EpochRow>().flatten() {
            let step = row.epoch as i64;
            metrics.push(("val_macro_f1".to_string(), row.val_macro_f1, step));
            metrics.push(("train_loss".to_string(), row.train_loss, step));
        }
    }
    metrics.push(("test_accuracy".into(), m.test.accuracy, 0));
    metrics.push(("test_macro_f1".into(), m.test.macro_f1, 0));
    metrics.push(("best_val_macro_f1".into(), m.val.macro_f1, 0));
    metrics.push(("train_seconds".into(), m.train_seconds, 0));
    if let Some(g) = m.gap() {
        metrics.push(("test_macro_f1_vs_transfer".into(), g, 0));
    }
    Some(crate::tracking::Recorded {
        folder,
        params,
        metrics,
    })
}
