//! The JSON files of a run folder as serde structs, and the one way they are read and written.
//!
//! Files are written with their keys in sorted order (through [`serde_json::Value`], whose maps
//! are sorted), so a file's bytes depend on its content, never on the order of struct fields,
//! and a file read and written back is byte-identical.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::RunError;

/// Write `value` as pretty JSON with sorted keys and a final newline, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RunError> {
    let v = serde_json::to_value(value).map_err(|e| RunError::json(path, e))?;
    let mut text = serde_json::to_string_pretty(&v).map_err(|e| RunError::json(path, e))?;
    text.push('\n');
    write_file(path, text.as_bytes())
}

/// Read a JSON file of a run: a missing file is [`RunError::Missing`], a damaged one
/// [`RunError::Json`], both naming the file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, RunError> {
    let bytes = std::fs::read(path).map_err(|e| RunError::read(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| RunError::json(path, e))
}

/// [`read_json`], with `None` for a file that does not exist yet.
pub fn read_json_if_exists<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, RunError> {
    if !path.exists() {
        return Ok(None);
    }
    read_json(path).map(Some)
}

/// Write any run file atomically ([`graft_data::atomic`]).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RunError> {
    graft_data::atomic::write_atomic(path, bytes).map_err(|e| RunError::write(path, e))
}

/// The files `PREFIX*.csv` in `dir`, sorted by name (none when `dir` does not exist): the
/// one-unit files cluster tasks write (`trial-NNNNN.csv`, `cell-NNNNN.csv`).
pub fn unit_files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".csv"))
        })
        .collect();
    files.sort();
    files
}

/// `name` is a plain folder name (a tune's, an ablation's), else an error naming it as `what`.
pub fn check_plain_name(name: &str, what: &str) -> Result<(), RunError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(RunError::Invalid(format!(
            "{what} name {name:?}: use a plain folder name: no slash, no leading dot"
        )));
    }
    Ok(())
}

/// Create `dir`, emptied first when `fresh` (`--fresh`: forget earlier results).
pub fn output_folder(dir: &Path, fresh: bool) -> Result<(), RunError> {
    if fresh && dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| RunError::write(dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| RunError::write(dir, e))
}

/// `run.json`: what a run was trained from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The feature cache the head was trained on (its item list also names the images).
    pub features: PathBuf,
    /// For a fine-tuned run: the run it started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetuned_from: Option<PathBuf>,
}

/// `metrics.json` of a trained run: the sweep's winner, then each evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The feature cache, as given.
    pub features: PathBuf,
    pub encoder: graft_model::Encoder,
    pub best: BestHead,
    pub rows: Rows,
    pub val_held_out_of_train: bool,
    pub sweep_seconds: f64,
    pub temperature: Temperature,
    /// With `--seeds N` above 1: the best configuration retrained per seed.
    pub seeds: Option<graft_train::seeds::SeedReport>,
    pub sweep: graft_train::SweepConfig,
    /// `graft eval`'s results by split name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub eval: BTreeMap<String, graft_eval::Evaluation>,
}

impl Metrics {
    /// The evaluation the report and model card quote: the first by split name ("test" before
    /// "val").
    pub fn headline_eval(&self) -> Option<&graft_eval::Evaluation> {
        self.eval.values().next()
    }
}

/// The winning head of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestHead {
    pub head: String,
    pub lr: f32,
    pub best_epoch: usize,
    pub balance: String,
    pub val_macro_f1: f64,
    pub val_accuracy: f64,
    pub test_macro_f1: Option<f64>,
    pub test_accuracy: Option<f64>,
}

/// Rows of the feature cache in each split, as head training used them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rows {
    pub train: usize,
    pub val: usize,
    pub test: usize,
}

/// The temperature fitted on val, and the val negative log-likelihood before and after.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    pub value: f32,
    pub val_nll_before: f64,
    pub val_nll_after: f64,
}

/// `metrics.json` of a fine-tuned run (`RUN/finetune/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneMetrics {
    pub encoder: graft_model::Encoder,
    pub weights: String,
    /// The first trained block, and how many were trained.
    pub trained_from_block: usize,
    pub trained_blocks: usize,
    /// `[channels, height, width]` of the cached activation at the cut.
    pub activation_shape: [usize; 3],
    pub trained_parameters: usize,
    pub config: graft_train::finetune::FinetuneConfig,
    pub stages: Vec<graft_train::finetune::StageReport>,
    pub val_macro_f1: FrozenVsTuned<f64>,
    pub test: FinetuneTest,
    pub train_images: usize,
    pub val_images: usize,
    pub images_per_second: Vec<EpochSpeed>,
    pub seconds: FinetuneSeconds,
    pub resumed: bool,
}

/// One score of the frozen head and of the fine-tuned model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrozenVsTuned<T> {
    pub frozen: T,
    pub finetuned: T,
}

/// Accuracy and macro-F1 on one split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    pub macro_f1: f64,
}

/// The test split, scored by the frozen head and by the fine-tuned model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneTest {
    pub split: String,
    pub images: usize,
    #[serde(flatten)]
    pub scores: FrozenVsTuned<Scores>,
}

/// Training speed of one epoch (1-based stage and epoch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochSpeed {
    pub stage: usize,
    pub epoch: usize,
    pub images_per_second: f64,
}

/// Where a fine-tune's time went.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FinetuneSeconds {
    pub activation_cache: f64,
    pub training: f64,
}

/// `stages.json`: the fingerprint of each finished stage's inputs, by stage name.
pub type StageFingerprints = BTreeMap<String, String>;

/// `export.json` (graft-export's types: it makes the records).
pub use graft_export::records::{ExportRecord, ExportRecords};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_a_round_trip_is_byte_identical() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("run.json");
        let info = RunInfo {
            features: "/data/features".into(),
            finetuned_from: Some("runs/a".into()),
        };
        write_json(&path, &info).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "{\n  \"features\": \"/data/features\",\n  \"finetuned_from\": \"runs/a\"\n}\n"
        );
        let back: RunInfo = read_json(&path).expect("parse");
        assert_eq!(back, info);
        write_json(&path, &back).expect("rewrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }

    #[test]
    fn missing_and_damaged_files_name_the_file() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("metrics.json");
        let err = read_json::<Metrics>(&path).expect_err("missing");
        assert!(matches!(err, RunError::Missing { .. }), "{err}");
        assert!(read_json_if_exists::<Metrics>(&path)
            .expect("none")
            .is_none());
        std::fs::write(&path, b"{\"features\": 3").expect("write");
        let err = read_json::<Metrics>(&path).expect_err("damaged");
        assert!(err.to_string().contains("metrics.json"), "{err}");
    }
}
