//! Whether one run's model beats another's on the same test images: both score every image
//! of the test split, and McNemar's exact test weighs the images only one gets right. This is
//! what `graft registry promote` asks of a challenger before it becomes the champion.

use std::collections::BTreeMap;
use std::path::Path;

use graft_data::scan::Split;
use graft_train::metrics::argmax_rows;
use graft_train::HeadModel;
use serde::Serialize;

use crate::error::Context;
use crate::held_out::{features_of, held_out_rows, model_inputs, open_run_cache};
use crate::{RunDir, RunError};

/// Each test image (by content hash) and whether the run's model gets it right.
pub fn test_outcomes(run: &Path) -> Result<BTreeMap<String, bool>, RunError> {
    let dir = RunDir::new(run);
    let model = HeadModel::load(run)
        .with_context(|| format!("loading the model of run {}", run.display()))?;
    if model.meta.encoder_file.is_some() {
        return Err(RunError::Invalid(format!(
            "{} holds a fine-tuned encoder; the paired test scores runs from the frozen \
             encoder's feature cache",
            run.display()
        )));
    }
    let features = features_of(&dir, None)?;
    let cache = open_run_cache(&features, &model)?;
    let (split, rows) = held_out_rows(&cache, Split::Test);
    if split != Split::Test || rows.is_empty() {
        return Err(RunError::NoImages { features, split });
    }
    let (labels, x) = model_inputs(&cache, &model, &rows, &features)?;
    let probs = model.predict_proba(&x, rows.len());
    let predicted = argmax_rows(&probs, model.meta.classes.len());
    let items = &cache.header().items;
    Ok(rows
        .iter()
        .zip(labels.iter().zip(&predicted))
        .map(|(&i, (y, top))| (items[i].hash.clone(), top == y))
        .collect())
}

/// The paired comparison of a candidate with the current holder on the same images.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    /// Test images both were scored on.
    pub images: usize,
    pub candidate_accuracy: f64,
    pub current_accuracy: f64,
    /// Images only the candidate gets right.
    pub candidate_only: usize,
    /// Images only the current model gets right.
    pub current_only: usize,
    /// One-sided exact McNemar p-value: the chance of the candidate winning at least this many
    /// of the split images if both were equally good.
    pub p_value: f64,
    /// The two test sets hold the same images.
    pub same_images: bool,
}

impl Paired {
    /// The candidate wins more split images than it loses, beyond chance at `alpha`, on the
    /// same images.
    pub fn candidate_wins(&self, alpha: f64) -> bool {
        self.same_images && self.candidate_only > self.current_only && self.p_value < alpha
    }

    /// One line: the scores and the test.
    pub fn summary(&self) -> String {
        format!(
            "on {} test images: candidate {:.4}, champion {:.4}; only the candidate right on {}, \
             only the champion on {}; McNemar exact one-sided p = {:.4}{}",
            self.images,
            self.candidate_accuracy,
            self.current_accuracy,
            self.candidate_only,
            self.current_only,
            self.p_value,
            if self.same_images {
                ""
            } else {
                " (the two test sets differ: compared on the images they share)"
            }
        )
    }
}

/// Compare `candidate` with `current` on the test images both hold.
pub fn paired(
    candidate: &BTreeMap<String, bool>,
    current: &BTreeMap<String, bool>,
) -> Result<Paired, RunError> {
    let shared: Vec<(bool, bool)> = candidate
        .iter()
        .filter_map(|(h, &a)| current.get(h).map(|&b| (a, b)))
        .collect();
    if shared.is_empty() {
        return Err(RunError::Invalid(
            "the two runs share no test image: a paired test needs the same test set (train \
             both on the same data and split)"
                .into(),
        ));
    }
    let n = shared.len();
    let right = |f: fn(&(bool, bool)) -> bool| shared.iter().filter(|p| f(p)).count();
    let candidate_only = right(|&(a, b)| a && !b);
    let current_only = right(|&(a, b)| !a && b);
    Ok(Paired {
        images: n,
        candidate_accuracy: right(|p| p.0) as f64 / n as f64,
        current_accuracy: right(|p| p.1) as f64 / n as f64,
        candidate_only,
        current_only,
        p_value: binomial_tail(candidate_only, candidate_only + current_only),
        same_images: candidate.len() == current.len() && n == candidate.len(),
    })
}

/// P(X ≥ k) for X ~ Binomial(n, ½), summed in log space (exact for any n a test set has).
fn binomial_tail(k: usize, n: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let ln_fact = |m: usize| (1..=m).map(|i| (i as f64).ln()).sum::<f64>();
    let ln_n = ln_fact(n);
    let half = n as f64 * 0.5f64.ln();
    (k..=n)
        .map(|i| (ln_n - ln_fact(i) - ln_fact(n - i) + half).exp())
        .sum::<f64>()
        .min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_matches_hand_sums() {
        // n = 10: P(X ≥ 9) = (10 + 1) / 1024.
        assert!((binomial_tail(9, 10) - 11.0 / 1024.0).abs() < 1e-12);
        assert!((binomial_tail(0, 10) - 1.0).abs() < 1e-12);
        assert!((binomial_tail(5, 5) - 1.0 / 32.0).abs() < 1e-12);
        assert!((binomial_tail(0, 0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_clear_winner_beats_and_a_tie_does_not() {
        let set = |right: &[bool]| -> BTreeMap<String, bool> {
            right
                .iter()
                .enumerate()
                .map(|(i, &r)| (format!("h{i}"), r))
                .collect()
        };
        let strong = set(&[true; 20]);
        let mut weak_bits = [true; 20];
        weak_bits[..10].iter_mut().for_each(|b| *b = false);
        let weak = set(&weak_bits);
        let p = paired(&strong, &weak).expect("paired");
        assert_eq!((p.images, p.candidate_only, p.current_only), (20, 10, 0));
        assert!(p.candidate_wins(0.05), "{}", p.summary());
        let tie = paired(&strong, &strong).expect("tie");
        assert!(!tie.candidate_wins(0.05));
        assert!(!paired(&weak, &strong).expect("worse").candidate_wins(0.05));
        let mut other = strong.clone();
        other.insert("extra".into(), true);
        assert!(!paired(&other, &weak).expect("differs").same_images);
        assert!(paired(&strong, &set(&[])).is_err());
    }
}
