//! Expected calibration error over equal-width confidence bins (Guo et al., 2017): the
//! support-weighted gap between mean confidence and accuracy of the top-1 prediction.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    /// Mean top-1 confidence of the predictions in the bin.
    pub confidence: f64,
    /// Share of them that were right.
    pub accuracy: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub ece: f64,
    pub bins: Vec<CalibrationBin>,
}

impl Calibration {
    /// From each prediction's top-1 confidence and whether it was right.
    pub fn new(confidence: &[f32], correct: &[bool], bins: usize) -> Calibration {
        let bins = bins.max(1);
        let mut count = vec![0usize; bins];
        let mut conf = vec![0f64; bins];
        let mut hits = vec![0usize; bins];
        for (&c, &ok) in confidence.iter().zip(correct) {
            // (lo, hi] bins, confidence 0 into the first.
            let b = ((f64::from(c) * bins as f64).ceil() as usize).clamp(1, bins) - 1;
            count[b] += 1;
            conf[b] += f64::from(c);
            hits[b] += usize::from(ok);
        }
        let n = confidence.len().max(1) as f64;
        let mut ece = 0.0;
        let bins = (0..bins)
            .map(|b| {
                let (cf, acc) = if count[b] > 0 {
                    (conf[b] / count[b] as f64, hits[b] as f64 / count[b] as f64)
                } else {
                    (0.0, 0.0)
                };
                ece += count[b] as f64 / n * (cf - acc).abs();
                CalibrationBin {
                    lo: b as f64 / bins as f64,
                    hi: (b + 1) as f64 / bins as f64,
                    count: count[b],
                    confidence: cf,
                    accuracy: acc,
                }
            })
            .collect();
        Calibration { ece, bins }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_by_hand() {
        // Two bins. Bin 1 (0, 0.5]: conf 0.3, 0.4, right once → gap |0.35 - 0.5| = 0.15.
        // Bin 2 (0.5, 1]: conf 0.9 ×2, right twice → gap 0.1. ECE = 0.5·0.15 + 0.5·0.1.
        let c = Calibration::new(&[0.3, 0.4, 0.9, 0.9], &[true, false, true, true], 2);
        assert!((c.ece - 0.125).abs() < 1e-6, "{}", c.ece);
        assert_eq!(c.bins[0].count, 2);
        assert!((c.bins[1].accuracy - 1.0).abs() < 1e-12);
        // Perfectly calibrated: confidence 1, always right.
        assert!(Calibration::new(&[1.0; 5], &[true; 5], 10).ece < 1e-7);
    }
}
