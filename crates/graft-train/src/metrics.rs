//! Classification metrics from a confusion matrix: accuracy, macro-F1, per-class
//! precision/recall/F1/support.
//!
//! Conventions (those of scikit-learn with `zero_division=0`): a class never predicted has
//! precision 0; a class absent from the labels has recall 0 and is left out of macro averages,
//! which are over the classes that occur in the labels.

use serde::{Deserialize, Serialize};

/// `counts[t * classes + p]`: images of true class `t` predicted as `p`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub classes: usize,
    pub counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Images of this class in the labels.
    pub support: u64,
    /// Images predicted as this class.
    pub predicted: u64,
}

impl Confusion {
    pub fn new(classes: usize) -> Confusion {
        Confusion {
            classes,
            counts: vec![0; classes * classes],
        }
    }

    pub fn from_pairs(classes: usize, truth: &[usize], pred: &[usize]) -> Confusion {
        let mut c = Confusion::new(classes);
        for (&t, &p) in truth.iter().zip(pred) {
            c.add(t, p);
        }
        c
    }

    pub fn add(&mut self, truth: usize, pred: usize) {
        self.counts[truth * self.classes + pred] += 1;
    }

    pub fn get(&self, truth: usize, pred: usize) -> u64 {
        self.counts[truth * self.classes + pred]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn accuracy(&self) -> f64 {
        let right: u64 = (0..self.classes).map(|k| self.get(k, k)).sum();
        right as f64 / self.total().max(1) as f64
    }

    pub fn per_class(&self) -> Vec<ClassMetrics> {
        (0..self.classes)
            .map(|k| {
                let tp = self.get(k, k) as f64;
                let support: u64 = (0..self.classes).map(|p| self.get(k, p)).sum();
                let predicted: u64 = (0..self.classes).map(|t| self.get(t, k)).sum();
                let precision = if predicted > 0 {
                    tp / predicted as f64
                } else {
                    0.0
                };
                let recall = if support > 0 {
                    tp / support as f64
                } else {
                    0.0
                };
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassMetrics {
                    precision,
                    recall,
                    f1,
                    support,
                    predicted,
                }
            })
            .collect()
    }

    /// Mean F1 over the classes present in the labels.
    pub fn macro_f1(&self) -> f64 {
        let per = self.per_class();
        let present: Vec<&ClassMetrics> = per.iter().filter(|m| m.support > 0).collect();
        if present.is_empty() {
            return 0.0;
        }
        present.iter().map(|m| m.f1).sum::<f64>() / present.len() as f64
    }

    /// Each row divided by its support (rows of absent classes stay zero).
    pub fn row_normalised(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.counts.len()];
        for t in 0..self.classes {
            let row = &self.counts[t * self.classes..(t + 1) * self.classes];
            let s: u64 = row.iter().sum();
            if s > 0 {
                for (o, &v) in out[t * self.classes..].iter_mut().zip(row) {
                    *o = v as f64 / s as f64;
                }
            }
        }
        out
    }
}

/// Index of the largest value of each row of length `c`.
pub fn argmax_rows(probs: &[f32], c: usize) -> Vec<usize> {
    probs
        .chunks_exact(c)
        .map(|row| {
            let mut best = 0;
            for (k, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = k;
                }
            }
            best
        })
        .collect()
}

/// Share of rows whose label is among the `k` largest values.
pub fn top_k_accuracy(probs: &[f32], c: usize, labels: &[usize], k: usize) -> f64 {
    let hits = probs
        .chunks_exact(c)
        .zip(labels)
        .filter(|(row, &y)| row.iter().filter(|&&v| v > row[y]).count() < k)
        .count();
    hits as f64 / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Worked by hand. Labels: class 0 ×4, class 1 ×3, class 2 ×0 (absent), class 3 ×3.
    /// Class 3 is never predicted; class 2 is predicted once though absent.
    ///
    /// ```text
    ///            pred 0  1  2  3
    /// true 0          3  1  0  0
    /// true 1          1  2  0  0
    /// true 2          0  0  0  0
    /// true 3          1  1  1  0
    /// ```
    #[test]
    fn hand_computed_confusion_matrix() {
        let truth = [0, 0, 0, 0, 1, 1, 1, 3, 3, 3];
        let pred = [0, 0, 0, 1, 0, 1, 1, 0, 1, 2];
        let c = Confusion::from_pairs(4, &truth, &pred);
        assert_eq!(
            c.counts,
            vec![3, 1, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0]
        );
        assert!((c.accuracy() - 0.5).abs() < 1e-12);
        let m = c.per_class();
        // class 0: tp 3, predicted 5, support 4 → P 0.6, R 0.75, F1 2/3
        assert!((m[0].precision - 0.6).abs() < 1e-12);
        assert!((m[0].recall - 0.75).abs() < 1e-12);
        assert!((m[0].f1 - 2.0 / 3.0).abs() < 1e-12);
        // class 1: tp 2, predicted 4, support 3 → P 0.5, R 2/3, F1 4/7
        assert!((m[1].f1 - 4.0 / 7.0).abs() < 1e-12);
        // class 2: absent from labels, predicted once → P 0, R 0, support 0
        assert_eq!((m[2].support, m[2].predicted), (0, 1));
        assert_eq!(m[2].f1, 0.0);
        // class 3: never predicted → P 0 (zero division), R 0, F1 0
        assert_eq!((m[3].predicted, m[3].precision, m[3].f1), (0, 0.0, 0.0));
        // macro over present classes 0, 1, 3: (2/3 + 4/7 + 0) / 3
        assert!((c.macro_f1() - (2.0 / 3.0 + 4.0 / 7.0) / 3.0).abs() < 1e-12);
        let r = c.row_normalised();
        assert!((r[0] - 0.75).abs() < 1e-12 && r[8..12].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn argmax_and_top_k() {
        let p = [0.1, 0.7, 0.2, 0.5, 0.3, 0.2];
        assert_eq!(argmax_rows(&p, 3), vec![1, 0]);
        assert_eq!(top_k_accuracy(&p, 3, &[2, 2], 1), 0.0);
        assert_eq!(top_k_accuracy(&p, 3, &[2, 2], 2), 0.5);
        assert_eq!(top_k_accuracy(&p, 3, &[2, 2], 3), 1.0);
    }
}
