//! `explain.jsonl`: one line per explained image — what was predicted, which class the map
//! explains, by which method, every quality metric, the verdict and where the map peaks;
//! never the pixels. Lines are appended and synced as images are done; a line cut short by a
//! kill is dropped on the next run, which explains that image again.

use std::io::Write;
use std::path::{Path, PathBuf};

use graft_eval::explain::quality::Quality;
use serde::{Deserialize, Serialize};

use super::{ExplainConfig, Method};
use crate::RunError;

/// The file's name in `RUN/explain/<name>/`.
pub const FILE: &str = "explain.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Peak {
    /// On the original image, in pixels.
    pub x: f32,
    pub y: f32,
    /// On the model's input crop.
    pub crop_x: u32,
    pub crop_y: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopClass {
    pub class: String,
    pub probability: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainRecord {
    pub path: String,
    /// The image's true class, when known.
    #[serde(rename = "true", default, skip_serializing_if = "Option::is_none")]
    pub truth: Option<String>,
    pub predicted: String,
    /// Probability of the predicted class.
    pub probability: f32,
    /// The class the heatmap explains, and its probability.
    pub target: String,
    pub target_probability: f32,
    pub top: Vec<TopClass>,
    pub method: String,
    /// The feature map the heatmap is over ("last": the encoder's output map).
    pub layer: String,
    #[serde(flatten)]
    pub quality: Quality,
    pub suspicious: bool,
    pub reasons: Vec<String>,
    pub peak: Peak,
    /// Spearman's rank correlation between this map and the same method's map from a model
    /// whose head is random (`--sanity`): near 1 means the map ignores what the model learned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanity_rank_correlation: Option<f64>,
    /// The same with the encoder's top blocks drawn at random too, one more each step
    /// (Adebayo et al.'s cascade; `--sanity`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sanity_cascade: Vec<SanityStep>,
    /// The figure, relative to the explain folder, when one was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figure: Option<String>,
}

/// One step of the sanity cascade: what was drawn at random, and how much the map still looks
/// like the real one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SanityStep {
    /// "head, block 18", "head, blocks 17–18", …
    pub randomised: String,
    pub rank_correlation: f64,
}

impl ExplainRecord {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        path: String,
        truth: Option<String>,
        classes: &[String],
        probs: &[f32],
        target: usize,
        top: &[(usize, f32)],
        method: Method,
        quality: Quality,
        peak: Peak,
        config: &ExplainConfig,
    ) -> ExplainRecord {
        let reasons = verdict(&quality, config);
        let (predicted, probability) = top.first().copied().unwrap_or((target, probs[target]));
        ExplainRecord {
            path,
            truth,
            predicted: classes[predicted].clone(),
            probability,
            target: classes[target].clone(),
            target_probability: probs[target],
            top: top
                .iter()
                .map(|&(c, p)| TopClass {
                    class: classes[c].clone(),
                    probability: p,
                })
                .collect(),
            method: method.name().to_string(),
            layer: "last".into(),
            quality,
            suspicious: !reasons.is_empty(),
            reasons,
            peak,
            sanity_rank_correlation: None,
            sanity_cascade: Vec::new(),
            figure: None,
        }
    }

    /// Whether the prediction was right (unknown truth counts as not wrong).
    pub fn is_wrong(&self) -> bool {
        self.truth.as_ref().is_some_and(|t| *t != self.predicted)
    }
}

/// Why a map is suspicious, by the configured thresholds (empty: it is not).
pub fn verdict(q: &Quality, c: &ExplainConfig) -> Vec<String> {
    graft_eval::explain::quality::verdict(q, &c.thresholds())
}

/// How an image is named in the file (and matched on resume).
pub fn path_key(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// A figure's file name: the image's stem and a short hash of its whole path, so images of the
/// same name in different folders keep their own figure.
pub fn figure_name(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let hash = blake3::hash(path_key(path).as_bytes()).to_hex();
    PathBuf::from(format!("{stem}-{}.png", &hash[..8]))
}

/// The records of an existing file. A last line cut short (a killed run) is cut off the file;
/// a damaged line elsewhere is an error naming the file and line.
pub fn resume(path: &Path) -> Result<Vec<ExplainRecord>, RunError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RunError::read(path, e)),
    };
    let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if complete < text.len() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| RunError::write(path, e))?;
        file.set_len(complete as u64)
            .map_err(|e| RunError::write(path, e))?;
    }
    parse(path, &text[..complete])
}

/// Every record of a file (`graft explain query`).
pub fn read(path: &Path) -> Result<Vec<ExplainRecord>, RunError> {
    let text = std::fs::read(path).map_err(|e| RunError::read(path, e))?;
    // A line still being written by a running `graft explain` is not read.
    let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    parse(path, &text[..complete])
}

fn parse(path: &Path, text: &[u8]) -> Result<Vec<ExplainRecord>, RunError> {
    text.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
        .map(|(i, line)| {
            serde_json::from_slice(line).map_err(|e| {
                RunError::Invalid(format!(
                    "{} line {}: {e}; delete the line (or the file) and run graft explain again",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// Appends records, one synced line each.
pub struct Appender {
    file: std::fs::File,
    path: PathBuf,
}

impl Appender {
    pub fn open(path: &Path) -> Result<Appender, RunError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| RunError::write(path, e))?;
        Ok(Appender {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn append(&mut self, rec: &ExplainRecord) -> Result<(), RunError> {
        let mut line = serde_json::to_vec(rec).map_err(|e| RunError::json(&self.path, e))?;
        line.push(b'\n');
        // One write of the whole line, then to disk: a kill leaves whole lines and at most one
        // torn last line, which `resume` drops.
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| RunError::write(&self.path, e))
    }
}

/// Filters of `graft explain query`; all given ones must hold.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub suspicious: bool,
    /// Predictions below this probability.
    pub low_confidence: Option<f32>,
    /// Predicted, true or explained class equal to this.
    pub class: Option<String>,
    pub misclassified: bool,
}

impl Query {
    pub fn matches(&self, r: &ExplainRecord) -> bool {
        (!self.suspicious || r.suspicious)
            && self.low_confidence.is_none_or(|t| r.probability < t)
            && self
                .class
                .as_ref()
                .is_none_or(|c| r.predicted == *c || r.target == *c || r.truth.as_ref() == Some(c))
            && (!self.misclassified || r.is_wrong())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str, suspicious: bool, probability: f32) -> ExplainRecord {
        let q = Quality {
            confidence_drop: if suspicious { 0.0 } else { 0.5 },
            confidence_increase: 0.1,
            concentration: 0.6,
            coverage: 0.1,
            deletion_auc: 0.2,
            insertion_auc: 0.7,
        };
        let classes = ["a".to_string(), "b".to_string()];
        let probs = [probability, 1.0 - probability];
        let peak = Peak {
            x: 1.0,
            y: 2.0,
            crop_x: 1,
            crop_y: 2,
        };
        ExplainRecord::new(
            path.into(),
            Some("b".into()),
            &classes,
            &probs,
            0,
            &[(0, probability), (1, 1.0 - probability)],
            Method::GradCam,
            q,
            peak,
            &ExplainConfig::default(),
        )
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_rest_resumed() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(FILE);
        let mut out = Appender::open(&path).expect("open");
        out.append(&record("x.png", false, 0.9)).expect("append");
        out.append(&record("y.png", true, 0.6)).expect("append");
        drop(out);
        let whole = std::fs::read(&path).expect("read");
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"path\":\"z.png\",\"pre");
        std::fs::write(&path, &torn).expect("write");
        let back = resume(&path).expect("resume");
        assert_eq!(back.len(), 2);
        assert_eq!(back[1], record("y.png", true, 0.6));
        assert_eq!(
            std::fs::read(&path).expect("read"),
            whole,
            "torn line cut off"
        );
        // A damaged line in the middle names the file and line.
        std::fs::write(&path, b"{}\n").expect("write");
        let err = resume(&path).expect_err("damaged");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn the_verdict_names_its_reasons_and_queries_filter() {
        let (good, bad) = (record("x.png", false, 0.9), record("y.png", true, 0.6));
        assert!(!good.suspicious && good.reasons.is_empty());
        assert!(bad.suspicious && bad.reasons[0].contains("hiding the hot region"));
        let q = Query {
            suspicious: true,
            ..Query::default()
        };
        assert!(!q.matches(&good) && q.matches(&bad));
        let q = Query {
            low_confidence: Some(0.7),
            class: Some("b".into()),
            misclassified: true,
            ..Query::default()
        };
        assert!(q.matches(&bad) && !q.matches(&good));
        // The file's keys: "true" for the truth, metrics flattened.
        let v = serde_json::to_value(&good).expect("json");
        assert_eq!(v["true"], "b");
        assert!(v["deletion_auc"].is_number() && v.get("quality").is_none());
    }
}
