//! All metrics of one evaluation, ready for `metrics.json`, `per_class.csv` and the report.

use graft_train::metrics::{argmax_rows, top_k_accuracy};
use graft_train::{ClassMetrics, Confusion};
use serde::{Deserialize, Serialize};

use crate::calibration::Calibration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Images timed, one at a time (decode + preprocess + encoder + head).
    pub images: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// One image's outcome, for galleries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Row in the evaluated set.
    pub row: usize,
    pub truth: usize,
    pub pred: usize,
    pub confidence: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedClass {
    pub class: String,
    #[serde(flatten)]
    pub metrics: ClassMetrics,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub split: String,
    pub images: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// (k, accuracy) for k = 3 and 5 where there are more than k classes.
    pub top_k: Vec<(usize, f64)>,
    pub per_class: Vec<NamedClass>,
    pub classes: Vec<String>,
    pub confusion: Confusion,
    pub calibration: Calibration,
    pub latency: Option<Latency>,
    pub model_bytes: Option<u64>,
}

impl Evaluation {
    /// `per_class.csv`.
    pub fn per_class_csv(&self) -> String {
        let rows = self.per_class.iter().map(|c| {
            let m = &c.metrics;
            [
                c.class.clone(),
                format!("{:.6}", m.precision),
                format!("{:.6}", m.recall),
                format!("{:.6}", m.f1),
                m.support.to_string(),
                m.predicted.to_string(),
            ]
        });
        let header = ["class", "precision", "recall", "f1", "support", "predicted"];
        // Writing strings into memory cannot fail.
        graft_data::table::to_csv(&header, rows).unwrap_or_default()
    }
}

/// Metrics of `probs` (`labels.len() × classes.len()`) against `labels`, plus every
/// prediction (for galleries).
pub fn summarise(
    split: &str,
    probs: &[f32],
    labels: &[usize],
    classes: &[String],
) -> (Evaluation, Vec<Prediction>) {
    let c = classes.len();
    let pred = argmax_rows(probs, c);
    let confusion = Confusion::from_pairs(c, labels, &pred);
    let predictions: Vec<Prediction> = pred
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(row, (&p, &t))| Prediction {
            row,
            truth: t,
            pred: p,
            confidence: probs[row * c + p],
        })
        .collect();
    let conf: Vec<f32> = predictions.iter().map(|p| p.confidence).collect();
    let right: Vec<bool> = predictions.iter().map(|p| p.pred == p.truth).collect();
    let per_class = classes
        .iter()
        .zip(confusion.per_class())
        .map(|(name, metrics)| NamedClass {
            class: name.clone(),
            metrics,
        })
        .collect();
    let top_k = [3, 5]
        .into_iter()
        .filter(|&k| c > k)
        .map(|k| (k, top_k_accuracy(probs, c, labels, k)))
        .collect();
    let eval = Evaluation {
        split: split.to_string(),
        images: labels.len(),
        accuracy: confusion.accuracy(),
        macro_f1: confusion.macro_f1(),
        top_k,
        per_class,
        classes: classes.to_vec(),
        confusion,
        calibration: Calibration::new(&conf, &right, 15),
        latency: None,
        model_bytes: None,
    };
    (eval, predictions)
}

/// The `n` most confident mistakes and the `n` most confident right answers.
pub fn galleries(preds: &[Prediction], n: usize) -> (Vec<Prediction>, Vec<Prediction>) {
    let mut wrong: Vec<Prediction> = preds
        .iter()
        .filter(|p| p.pred != p.truth)
        .cloned()
        .collect();
    let mut right: Vec<Prediction> = preds
        .iter()
        .filter(|p| p.pred == p.truth)
        .cloned()
        .collect();
    let by_conf = |a: &Prediction, b: &Prediction| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(a.row.cmp(&b.row))
    };
    wrong.sort_by(by_conf);
    right.sort_by(by_conf);
    wrong.truncate(n);
    right.truncate(n);
    (wrong, right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_a_small_case() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let probs = [0.8, 0.1, 0.1, 0.2, 0.7, 0.1, 0.6, 0.3, 0.1, 0.1, 0.1, 0.8];
        let labels = [0, 1, 1, 2];
        let (e, preds) = summarise("test", &probs, &labels, &classes);
        assert_eq!(e.images, 4);
        assert!((e.accuracy - 0.75).abs() < 1e-12);
        assert_eq!(preds[2].pred, 0);
        let (wrong, right) = galleries(&preds, 2);
        assert_eq!(wrong.len(), 1);
        assert_eq!(wrong[0].row, 2);
        assert_eq!(right.iter().map(|p| p.row).collect::<Vec<_>>(), vec![0, 3]);
        assert!(e.per_class_csv().starts_with("class,precision"));
        assert!(e.top_k.is_empty(), "3 classes: no top-3 beyond top-1");
    }
}
