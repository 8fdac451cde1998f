//! Every file name of a run folder, in one place: what `graft train` writes into `runs/NAME/`,
//! what `graft finetune` writes into `RUN/finetune/` (itself a run), and what later stages add.

use std::path::{Path, PathBuf};

/// A run folder. Cheap to clone; nothing is read or created until asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

/// A figure `graft eval` draws into the run (and embeds in report.html).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    ConfusionMatrix,
    Reliability,
    Misclassified,
    Correct,
}

impl Figure {
    pub fn file_name(self) -> &'static str {
        match self {
            Figure::ConfusionMatrix => "confusion_matrix.png",
            Figure::Reliability => "reliability.png",
            Figure::Misclassified => "misclassified.png",
            Figure::Correct => "correct.png",
        }
    }
}

/// A model file `graft export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Precision {
    Fp32,
    Int8,
}

impl Precision {
    /// The model file of this precision inside a run folder.
    pub fn file_name(self) -> &'static str {
        match self {
            Precision::Fp32 => "model.onnx",
            Precision::Int8 => "model.int8.onnx",
        }
    }

    /// Its key in `export.json`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder's name (`runs/leaves` → "leaves"), for titles.
    pub fn name(&self) -> String {
        self.root
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into())
    }

    /// For a fine-tune (`RUN/finetune`), the run it fine-tunes; otherwise this run.
    pub fn base(&self) -> RunDir {
        let parent = self.root.parent().filter(|p| !p.as_os_str().is_empty());
        match parent {
            Some(p)
                if self.root.file_name().is_some_and(|n| n == "finetune")
                    && RunDir::new(p).model_meta().is_file() =>
            {
                RunDir::new(p)
            }
            _ => self.clone(),
        }
    }

    /// The folder that holds this run (`runs/`), where the tracking store lives.
    pub fn runs_folder(&self) -> PathBuf {
        self.base()
            .root
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `config.toml`: every setting of `graft train DIR`, resolved.
    pub fn config(&self) -> PathBuf {
        self.file("config.toml")
    }
    /// `stages.json`: the fingerprint of each finished stage's inputs.
    pub fn stages(&self) -> PathBuf {
        self.file("stages.json")
    }
    /// `audit.json`: the data audit.
    pub fn audit(&self) -> PathBuf {
        self.file("audit.json")
    }
    /// `classes.png`: images per class.
    pub fn class_chart(&self) -> PathBuf {
        self.file("classes.png")
    }
    /// `manifest.csv`: the split.
    pub fn manifest(&self) -> PathBuf {
        self.file("manifest.csv")
    }
    /// `features/`: the run's feature cache.
    pub fn features(&self) -> PathBuf {
        self.file("features")
    }
    /// `cluster/`: the scheduler scripts `graft cluster` wrote, their logs and job ids.
    pub fn cluster(&self) -> PathBuf {
        self.file("cluster")
    }
    /// `run.json`: what the run was trained from ([`crate::RunInfo`]).
    pub fn info(&self) -> PathBuf {
        self.file("run.json")
    }
    /// `model.json`: the head's description (`graft_train::HeadModel`).
    pub fn model_meta(&self) -> PathBuf {
        self.file(graft_train::model::META_FILE)
    }
    /// `model.safetensors`: the head's weights.
    pub fn model_weights(&self) -> PathBuf {
        self.file(graft_train::model::MODEL_FILE)
    }
    /// `sweep.csv`: every head × learning rate of the sweep.
    pub fn sweep(&self) -> PathBuf {
        self.file("sweep.csv")
    }
    /// `history.csv`: the best head's (or the fine-tune's) epochs.
    pub fn history(&self) -> PathBuf {
        self.file("history.csv")
    }
    /// `metrics.json` ([`crate::Metrics`], or `crate::FinetuneMetrics` in a fine-tune).
    pub fn metrics(&self) -> PathBuf {
        self.file("metrics.json")
    }
    /// `per_class.csv`: precision, recall and F1 per class.
    pub fn per_class(&self) -> PathBuf {
        self.file("per_class.csv")
    }
    pub fn figure(&self, figure: Figure) -> PathBuf {
        self.file(figure.file_name())
    }
    /// `report.html`: the self-contained evaluation page.
    pub fn report(&self) -> PathBuf {
        self.file("report.html")
    }
    /// `export.json`: what each exported file is and how it was checked.
    pub fn export_records(&self) -> PathBuf {
        self.file("export.json")
    }
    /// `model_card.md`.
    pub fn model_card(&self) -> PathBuf {
        self.file("model_card.md")
    }
    /// `reference.json`: what the training images look like, for `graft monitor`.
    pub fn reference(&self) -> PathBuf {
        self.file("reference.json")
    }
    /// `model.onnx` or `model.int8.onnx`.
    pub fn onnx(&self, precision: Precision) -> PathBuf {
        self.file(precision.file_name())
    }
    /// `classes.toml`: what the API says about each class (optional, written by users).
    pub fn class_info(&self) -> PathBuf {
        self.file("classes.toml")
    }

    /// `finetune/`: the fine-tuned run, a run of its own.
    pub fn finetune(&self) -> RunDir {
        RunDir::new(self.file("finetune"))
    }
    /// `settings.json` of a fine-tune: the settings it started with.
    pub fn finetune_settings(&self) -> PathBuf {
        self.file("settings.json")
    }
    /// `encoder.safetensors` of a fine-tune: the whole encoder in the pretrained layout.
    pub fn encoder_weights(&self) -> PathBuf {
        self.file(ENCODER_FILE)
    }
    /// `checkpoint.bin` of a fine-tune in progress.
    pub fn checkpoint(&self) -> PathBuf {
        self.file("checkpoint.bin")
    }
    /// `augmented_batch.png` of a fine-tune's stage 3.
    pub fn augmented_batch(&self) -> PathBuf {
        self.file("augmented_batch.png")
    }
    /// `acts-bN/`: a fine-tune's activation cache at the cut before block `block`.
    pub fn activations(&self, block: usize) -> PathBuf {
        self.file(&format!("acts-b{block}"))
    }

    /// Whether `file` (one of this run's) exists and is at least as new as the trained model:
    /// files older than model.json belong to a model that has since been retrained.
    /// When the run's model was written (model.json's modification time, ms since the Unix
    /// epoch): which of two copies of a model is the newer.
    pub fn trained_ms(&self) -> Option<i64> {
        let t = std::fs::metadata(self.model_meta()).ok()?.modified().ok()?;
        let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
        i64::try_from(d.as_millis()).ok()
    }

    pub fn is_current(&self, file: &Path) -> bool {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match (modified(file), modified(&self.model_meta())) {
            (Some(f), Some(meta)) => f >= meta,
            _ => false,
        }
    }
}

/// The fine-tuned encoder's file name, as `model.json`'s `encoder_file` records it.
pub const ENCODER_FILE: &str = "encoder.safetensors";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_relative_to_the_root() {
        let run = RunDir::new("runs/leaves");
        assert_eq!(run.name(), "leaves");
        assert_eq!(run.metrics(), Path::new("runs/leaves/metrics.json"));
        assert_eq!(
            run.onnx(Precision::Int8),
            Path::new("runs/leaves/model.int8.onnx")
        );
        assert_eq!(
            run.finetune().encoder_weights(),
            Path::new("runs/leaves/finetune/encoder.safetensors")
        );
        assert_eq!(
            run.finetune().activations(14),
            Path::new("runs/leaves/finetune/acts-b14")
        );
    }

    #[test]
    fn a_file_older_than_the_model_is_not_current() {
        let tmp = tempfile::tempdir().expect("tmp");
        let run = RunDir::new(tmp.path());
        let onnx = run.onnx(Precision::Fp32);
        std::fs::write(&onnx, b"old").expect("write");
        assert!(!run.is_current(&onnx), "no model yet");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(run.model_meta(), b"{}").expect("write");
        assert!(!run.is_current(&onnx));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&onnx, b"new").expect("write");
        assert!(run.is_current(&onnx));
        assert!(!run.is_current(&run.model_card()), "missing");
    }
}
