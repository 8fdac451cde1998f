//! Settings of `graft train DIR`: defaults, overridden by a TOML file, overridden by flags.
//! The resolved settings are written into the run as `config.toml`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::cli::PipelineArgs;
use graft_run::Backend;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folder of labelled photos.
    pub data: Option<PathBuf>,
    pub encoder: graft_model::arch::EncoderKind,
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

impl Default for Config {
    fn default() -> Self {
        Config {
            data: None,
            encoder: graft_model::arch::EncoderKind::MobileNetV2,
            name: None,
            runs: "runs".into(),
            backend: Backend::Auto,
            split: SplitConfig::default(),
            extract: ExtractConfig::default(),
            heads: HeadsConfig::default(),
            eval: EvalConfig::default(),
            augment: Default::default(),
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

impl Config {
    /// Defaults ← `--config` file ← flags. A relative `data` in a file is relative to the file.
    pub fn resolve(args: &PipelineArgs) -> anyhow::Result<Config> {
        let mut c = match &args.config {
            Some(path) => Config::read(path)?,
            None => Config::default(),
        };
        if let Some(d) = &args.dir {
            c.data = Some(d.clone());
        }
        if let Some(v) = &args.encoder {
            c.encoder = *v;
        }
        if let Some(v) = &args.name {
            c.name = Some(v.clone());
        }
        if let Some(v) = &args.runs {
            c.runs = v.clone();
        }
        if let Some(v) = &args.ratios {
            c.split.ratios = v.clone();
        }
        if let Some(v) = args.seed {
            c.split.seed = v;
            c.heads.seed = v;
        }
        if let Some(v) = &args.heads {
            c.heads.heads = v.clone();
        }
        if let Some(v) = &args.lrs {
            c.heads.lrs = v.clone();
        }
        if let Some(v) = args.epochs {
            c.heads.epochs = v;
        }
        if let Some(v) = &args.balance {
            c.heads.balance = v.clone();
        }
        if let Some(v) = args.backend {
            c.backend = v;
        }
        // Fail on bad values now, not after an hour of extraction.
        for h in &c.heads.heads {
            h.parse::<graft_train::HeadSpec>()?;
        }
        c.heads
            .balance
            .parse::<graft_train::Balance>()
            .map_err(|e| anyhow::anyhow!("balance {e}"))?;
        graft_data::split::parse_ratios(&c.split.ratios)?;
        Ok(c)
    }

    pub fn read(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        let mut c: Config = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid graft config", path.display()))?;
        if let Some(d) = &c.data {
            if d.is_relative() {
                let base = path.parent().unwrap_or_else(|| Path::new("."));
                c.data = Some(base.join(d));
            }
        }
        Ok(c)
    }

    /// TOML with `data` made absolute, so the file works from any folder; `saved_as` is where
    /// it will be written (named in the comment on how to reproduce the run).
    pub fn to_toml(&self, saved_as: &Path) -> anyhow::Result<String> {
        let mut c = self.clone();
        if let Some(d) = &c.data {
            c.data = Some(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()));
        }
        Ok(format!(
            "# graft settings of this run, resolved. Reproduce with:\n#   graft train --config {}\n\n{}",
            saved_as.display(),
            toml::to_string_pretty(&c)?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_then_flags() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("graft.toml");
        std::fs::write(
            &file,
            "data = \"photos\"\nencoder = \"efficientnet-lite0\"\n[heads]\nepochs = 3\nlrs = [0.01]\n",
        )
        .expect("write");
        let args = PipelineArgs {
            config: Some(file.clone()),
            epochs: Some(7),
            ..PipelineArgs::default()
        };
        let c = Config::resolve(&args).expect("resolves");
        assert_eq!(c.encoder, "efficientnet-lite0");
        assert_eq!(c.heads.epochs, 7, "flag beats file");
        assert_eq!(c.heads.lrs, vec![0.01], "file beats default");
        assert_eq!(c.heads.patience, 4, "default kept");
        assert_eq!(c.data, Some(tmp.path().join("photos")));
        // Round trip through the saved form.
        let saved = c.to_toml(&tmp.path().join("config.toml")).expect("toml");
        let back: Config = toml::from_str(&saved).expect("parses");
        assert_eq!(back.heads, c.heads);
        // Typos are errors, not silently ignored.
        std::fs::write(&file, "[heads]\nepoch = 3\n").expect("write");
        let err = Config::read(&file).expect_err("unknown key");
        assert!(format!("{err:#}").contains("epoch"), "{err:#}");
    }
}
