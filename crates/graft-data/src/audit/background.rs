//! Background-bias probe: can the class be guessed from the image border alone?
//!
//! Models trained on lab photos often learn the backdrop instead of the subject (PlantVillage
//! classifiers score far above chance from a few background pixels). We describe each image
//! by the mean and spread of its border colour, and measure how well a nearest-centroid
//! classifier on those six numbers alone predicts the class, with stratified 5-fold
//! cross-validation. A class is flagged when its F1 under that classifier lies at least halfway
//! between chance and perfect: F1 rather than recall, so that a class does not get flagged
//! merely because the classifier dumps confusable images on it.

// Index loops over the six feature dimensions read clearer than zipped iterators here.
#![allow(clippy::needless_range_loop)]

use serde::Serialize;

pub const FOLDS: usize = 5;
/// Classes smaller than this are left out: their recall would be noise.
pub const MIN_IMAGES: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct ClassProbe {
    pub class: String,
    pub images: usize,
    /// Share of this class's images that the border-only classifier gets right.
    pub recall: f64,
    /// Share of the classifier's guesses of this class that are right.
    pub precision: f64,
    pub f1: f64,
    /// Mean border colour (RGB, 0–255).
    pub border_rgb: [f32; 3],
    pub flagged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackgroundProbe {
    /// Cross-validated accuracy of the border-only classifier.
    pub accuracy: f64,
    /// Accuracy of guessing uniformly among the probed classes.
    pub chance: f64,
    /// F1 at or above this flags a class: halfway between chance and perfect.
    pub flag_threshold: f64,
    pub per_class: Vec<ClassProbe>,
    pub flagged: Vec<String>,
}

/// `features[i]` = border stats of image `i`; `labels[i]` = its class index into `classes`.
pub fn probe(
    features: &[[f32; 6]],
    labels: &[usize],
    classes: &[String],
) -> Option<BackgroundProbe> {
    let k_all = classes.len();
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k_all];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let probed: Vec<usize> = (0..k_all)
        .filter(|&c| by_class[c].len() >= MIN_IMAGES)
        .collect();
    if probed.len() < 2 {
        return None;
    }
    // Standardise so that colour means and spreads weigh alike.
    let used: Vec<usize> = probed.iter().flat_map(|&c| by_class[c].clone()).collect();
    let mut mean = [0f64; 6];
    let mut var = [0f64; 6];
    for &i in &used {
        for d in 0..6 {
            mean[d] += features[i][d] as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= used.len() as f64);
    for &i in &used {
        for d in 0..6 {
            var[d] += (features[i][d] as f64 - mean[d]).powi(2);
        }
    }
    let sd: Vec<f64> = var
        .iter()
        .map(|v| (v / used.len() as f64).sqrt().max(1e-6))
        .collect();
    let z = |i: usize| -> [f64; 6] {
        let mut out = [0f64; 6];
        for d in 0..6 {
            out[d] = (features[i][d] as f64 - mean[d]) / sd[d];
        }
        out
    };
    // Fold of an image = its position within its class, modulo FOLDS (stratified, deterministic).
    let mut fold = vec![0usize; labels.len()];
    for &c in &probed {
        for (pos, &i) in by_class[c].iter().enumerate() {
            fold[i] = pos % FOLDS;
        }
    }
    let mut correct = vec![0usize; k_all];
    let mut predicted = vec![0usize; k_all];
    for f in 0..FOLDS {
        let mut centroid = vec![[0f64; 6]; k_all];
        let mut count = vec![0usize; k_all];
        for &c in &probed {
            for &i in &by_class[c] {
                if fold[i] != f {
                    let v = z(i);
                    for d in 0..6 {
                        centroid[c][d] += v[d];
                    }
                    count[c] += 1;
                }
            }
        }
        for &c in &probed {
            for d in 0..6 {
                centroid[c][d] /= count[c].max(1) as f64;
            }
        }
        for &c in &probed {
            for &i in by_class[c].iter().filter(|&&i| fold[i] == f) {
                let v = z(i);
                let best = probed
                    .iter()
                    .map(|&k| {
                        let d2: f64 = (0..6).map(|d| (v[d] - centroid[k][d]).powi(2)).sum();
                        (k, d2)
                    })
                    .min_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(k, _)| k);
                if let Some(b) = best {
                    predicted[b] += 1;
                }
                if best == Some(c) {
                    correct[c] += 1;
                }
            }
        }
    }
    let chance = 1.0 / probed.len() as f64;
    let flag_threshold = chance + 0.5 * (1.0 - chance);
    let total: usize = probed.iter().map(|&c| by_class[c].len()).sum();
    let accuracy = probed.iter().map(|&c| correct[c]).sum::<usize>() as f64 / total as f64;
    let per_class: Vec<ClassProbe> = probed
        .iter()
        .map(|&c| {
            let n = by_class[c].len();
            let recall = correct[c] as f64 / n as f64;
            let precision = correct[c] as f64 / predicted[c].max(1) as f64;
            let f1 = if recall + precision > 0.0 {
                2.0 * recall * precision / (recall + precision)
            } else {
                0.0
            };
            let mut rgb = [0f32; 3];
            for &i in &by_class[c] {
                for d in 0..3 {
                    rgb[d] += features[i][d];
                }
            }
            rgb.iter_mut().for_each(|v| *v /= n as f32);
            ClassProbe {
                class: classes[c].clone(),
                images: n,
                recall,
                precision,
                f1,
                border_rgb: rgb,
                flagged: f1 >= flag_threshold,
            }
        })
        .collect();
    let flagged = per_class
        .iter()
        .filter(|p| p.flagged)
        .map(|p| p.class.clone())
        .collect();
    Some(BackgroundProbe {
        accuracy,
        chance,
        flag_threshold,
        per_class,
        flagged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn flags_only_the_class_with_a_distinct_backdrop() {
        let mut r = SplitMix64::new(3);
        let mut noise = move || (r.below(60) as f32) - 30.0;
        let mut feats = Vec::new();
        let mut labels = Vec::new();
        for i in 0..150 {
            let class = i % 3;
            // Classes 0 and 1 share a grey backdrop; class 2 sits on green.
            let base = if class == 2 {
                [40.0, 200.0, 40.0]
            } else {
                [128.0, 128.0, 128.0]
            };
            feats.push([
                base[0] + noise(),
                base[1] + noise(),
                base[2] + noise(),
                10.0 + noise().abs() / 3.0,
                10.0 + noise().abs() / 3.0,
                10.0 + noise().abs() / 3.0,
            ]);
            labels.push(class);
        }
        let classes: Vec<String> = ["a", "b", "green"].iter().map(|s| s.to_string()).collect();
        let p = probe(&feats, &labels, &classes).expect("probe");
        assert_eq!(p.flagged, vec!["green".to_string()]);
        assert!(p.per_class[2].recall > 0.95);
        assert!(p.per_class[0].recall < p.flag_threshold);
    }

    #[test]
    fn too_few_classes_gives_none() {
        let classes = vec!["a".to_string()];
        assert!(probe(&[[0.0; 6]; 20], &[0; 20], &classes).is_none());
    }
}
