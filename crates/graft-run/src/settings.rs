//! Settings of `graft train DIR` (`config.toml` of a run): every key has a default, a TOML file
//! overrides them (the command line's flags override the file). The resolved settings are
//! written into the run, so `graft train --config runs/NAME/config.toml` reproduces it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Backend, RunError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Folder of labelled photos.
    pub data: Option<PathBuf>,
    pub encoder: graft_model::Encoder,
    /// Run folder name; `<data folder>-<encoder>` when unset.
    pub name: Option<String>,
    pub runs: PathBuf,
    pub backend: Backend,
    pub split: SplitConfig,
    pub extract: ExtractConfig,
    pub heads: HeadsConfig,
    pub eval: EvalConfig,
    /// Training-time augmentation (fine-tuning; `graft data augment` previews it).
    pub augment: graft_data::augment::AugmentConfig,
    /// How `graft explain` makes, measures and judges heatmaps.
    pub explain: crate::explain::ExplainConfig,
    /// What `graft tune` searches, and how.
    pub tune: crate::tune::TuneConfig,
    /// What `graft cluster` asks the scheduler for (flags override each key).
    pub cluster: ClusterConfig,
}

/// `[cluster]`: resources of each array task, in the scheduler's own words (`time` as Slurm
/// reads it, e.g. `2:00:00`; `mem` as `8G`; `gres` as `gpu:1`). Unset keys are left to the
/// cluster's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Array tasks (shards) for extraction [default: 4].
    pub tasks: Option<usize>,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub time: Option<String>,
    pub cpus: Option<usize>,
    pub mem: Option<String>,
    pub gres: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    pub ratios: String,
    pub seed: u64,
    pub near_dup_threshold: u32,
    /// For pre-split folders without val: percentage of train held out.
    pub val_from_train: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExtractConfig {
    pub batch: usize,
    pub chunk: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadsConfig {
    pub heads: Vec<String>,
    pub lrs: Vec<f32>,
    /// `"steepest"` or `"valley"`: each head's rate from the learning-rate range test, read by
    /// this rule, instead of `lrs` (`--lr auto`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_lr: Option<graft_train::lr_find::Rule>,
    pub epochs: usize,
    pub batch: usize,
    pub weight_decay: f32,
    pub label_smoothing: f32,
    pub balance: String,
    pub clip: f32,
    pub patience: usize,
    pub val_fraction: f64,
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    pub split: String,
    pub latency: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data: None,
            encoder: graft_model::Encoder::default(),
            name: None,
            runs: "runs".into(),
            backend: Backend::Auto,
            split: SplitConfig::default(),
            extract: ExtractConfig::default(),
            heads: HeadsConfig::default(),
            eval: EvalConfig::default(),
            augment: Default::default(),
            explain: Default::default(),
            tune: Default::default(),
            cluster: Default::default(),
        }
    }
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            ratios: "70/15/15".into(),
            seed: 42,
            near_dup_threshold: graft_data::audit::DEFAULT_NEAR_DUP_THRESHOLD,
            val_from_train: None,
        }
    }
}

impl Default for ExtractConfig {
    fn default() -> Self {
        ExtractConfig {
            batch: graft_features::DEFAULT_BATCH,
            chunk: graft_features::DEFAULT_CHUNK,
        }
    }
}

impl Default for HeadsConfig {
    fn default() -> Self {
        let t = graft_train::TrainConfig::default();
        let s = graft_train::SweepConfig::default();
        HeadsConfig {
            heads: s.heads.iter().map(ToString::to_string).collect(),
            lrs: s.lrs,
            auto_lr: None,
            epochs: t.epochs,
            batch: t.batch,
            weight_decay: t.weight_decay,
            label_smoothing: t.label_smoothing,
            balance: t.balance.to_string(),
            clip: t.clip,
            patience: t.patience,
            val_fraction: 0.1,
            seed: t.seed,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            split: "test".into(),
            latency: 50,
        }
    }
}

impl Settings {
    /// The settings in `path`. A relative `data` in a file is relative to the file.
    pub fn read(path: &Path) -> Result<Settings, RunError> {
        let text = std::fs::read_to_string(path).map_err(|e| RunError::read(path, e))?;
        let mut c: Settings = toml::from_str(&text).map_err(|e| RunError::Settings {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if let Some(d) = &c.data {
            if d.is_relative() {
                c.data = Some(base.join(d));
            }
        }
        if let graft_model::Encoder::Onnx(o) = &mut c.encoder {
            if o.onnx.is_relative() {
                o.onnx = base.join(&o.onnx);
            }
        }
        Ok(c)
    }

    /// The settings a run was trained with (its `config.toml`), the defaults when it has none.
    pub fn of_run(run: &crate::RunDir) -> Result<Settings, RunError> {
        let config = run.config();
        if config.is_file() {
            Settings::read(&config)
        } else {
            Ok(Settings::default())
        }
    }

    /// These settings with the encoder's open details filled in (an ONNX file's absolute path,
    /// output and sizes; see [`graft_model::OnnxEncoder::resolve`]).
    pub fn resolved(&self) -> Result<Settings, RunError> {
        Ok(Settings {
            encoder: self.encoder.resolve()?,
            ..self.clone()
        })
    }

    /// Fail on bad values now, not after an hour of extraction.
    pub fn check(&self) -> Result<(), RunError> {
        self.head_specs()?;
        self.balance()?;
        graft_data::split::parse_ratios(&self.split.ratios)?;
        if let Some(p) = self.split.val_from_train {
            if !(p > 0.0 && p < 100.0) {
                return Err(RunError::Invalid(format!(
                    "val_from_train must be a percentage between 0 and 100, got {p} \
                     (--val-from-train, or [split] val_from_train)"
                )));
            }
        }
        Ok(())
    }

    /// The heads to sweep.
    pub fn head_specs(&self) -> Result<Vec<graft_train::HeadSpec>, RunError> {
        self.heads
            .heads
            .iter()
            .map(|s| s.parse().map_err(RunError::Train))
            .collect()
    }

    /// The class balance of head training.
    pub fn balance(&self) -> Result<graft_train::Balance, RunError> {
        self.heads
            .balance
            .parse::<graft_train::Balance>()
            .map_err(|e| RunError::Invalid(format!("balance {e}")))
    }

    /// TOML with `data` made absolute, so the file works from any folder; `saved_as` is where
    /// it will be written (named in the comment on how to reproduce the run).
    pub fn to_toml(&self, saved_as: &Path) -> Result<String, RunError> {
        let mut c = self.clone();
        if let Some(d) = &c.data {
            c.data = Some(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
        }
        let body = toml::to_string_pretty(&c).map_err(|e| RunError::Invalid(e.to_string()))?;
        Ok(format!(
            "# graft settings of this run, resolved. Reproduce with:\n#   graft train --config {}\n\n{body}",
            saved_as.display(),
        ))
    }
}

/// The `[augment]` table of a TOML file (a run's config.toml or a file of its own); the
/// defaults when it has none. Other tables are ignored.
pub fn read_augment(path: &Path) -> Result<graft_data::augment::AugmentConfig, RunError> {
    read_table(path, "augment", "graft data augment")
}

/// The `[table]` of a TOML file, the defaults when it has none (other tables are ignored); a
/// bad table's error names `command`'s `--help` for its keys.
pub fn read_table<T: serde::de::DeserializeOwned + Default>(
    path: &Path,
    table: &str,
    command: &str,
) -> Result<T, RunError> {
    let text = std::fs::read_to_string(path).map_err(|e| RunError::read(path, e))?;
    let invalid =
        |what: String, e: &dyn std::fmt::Display| RunError::Invalid(format!("{what}: {e}"));
    let value: toml::Value =
        toml::from_str(&text).map_err(|e| invalid(format!("parsing {}", path.display()), &e))?;
    match value.get(table) {
        Some(t) => t.clone().try_into().map_err(|e| {
            invalid(
                format!(
                    "the [{table}] table of {} (see `{command} --help` for its keys)",
                    path.display()
                ),
                &e,
            )
        }),
        None => Ok(T::default()),
    }
}
