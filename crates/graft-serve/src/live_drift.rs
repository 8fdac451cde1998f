//! Drift scores over the most recent requests, for `/metrics`: the population stability index
//! of each input statistic against the training images, and of the predicted-class mix against
//! the training prior — so Prometheus alerting works without running `graft monitor`.

use std::collections::VecDeque;
use std::sync::Mutex;

use graft_data::drift::psi;
use graft_data::image_stats::ImageStats;

/// Requests the scores are computed over (the most recent ones).
pub const WINDOW: usize = 500;

/// What the training data looked like, as the gauges need it (from the run's reference.json).
#[derive(Debug, Clone, Default)]
pub struct DriftReference {
    /// Statistics of the training images.
    pub images: Vec<ImageStats>,
    /// Share of each class among the training images, by the served model's class index.
    pub class_prior: Vec<f64>,
}

/// The rolling window and its reference.
#[derive(Debug)]
pub struct LiveDrift {
    reference: DriftReference,
    /// Per statistic, the reference values (taken once).
    columns: Vec<(&'static str, Vec<f64>)>,
    recent: Mutex<VecDeque<(ImageStats, usize)>>,
}

/// The scores of one scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub requests: usize,
    /// (statistic, PSI).
    pub psi: Vec<(&'static str, f64)>,
    pub class_mix_psi: f64,
}

impl LiveDrift {
    pub fn new(reference: DriftReference) -> LiveDrift {
        let columns = ImageStats::default()
            .named()
            .iter()
            .enumerate()
            .map(|(k, (name, _))| {
                let values = reference.images.iter().map(|s| s.named()[k].1).collect();
                (*name, values)
            })
            .collect();
        LiveDrift {
            reference,
            columns,
            recent: Mutex::new(VecDeque::with_capacity(WINDOW)),
        }
    }

    /// One answered image: its statistics and top-1 class.
    pub fn observe(&self, stats: ImageStats, class: usize) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back((stats, class));
    }

    /// The scores over the window (computed now: a scrape is rare next to predictions).
    pub fn scores(&self) -> Scores {
        let recent: Vec<(ImageStats, usize)> = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect();
        let psi_of = |k: usize, reference: &[f64]| {
            let seen: Vec<f64> = recent.iter().map(|(s, _)| s.named()[k].1).collect();
            psi(reference, &seen, 10)
        };
        let scores = self
            .columns
            .iter()
            .enumerate()
            .map(|(k, (name, reference))| (*name, psi_of(k, reference)))
            .collect();
        Scores {
            requests: recent.len(),
            psi: scores,
            class_mix_psi: class_psi(&self.reference.class_prior, &recent),
        }
    }
}

/// PSI of the predicted-class shares against the prior: Σ (p − r)·ln(p / r), with an empty
/// class counted as half an observation (as graft-data's `psi` does for an empty bin).
fn class_psi(prior: &[f64], recent: &[(ImageStats, usize)]) -> f64 {
    if recent.is_empty() || prior.is_empty() {
        return 0.0;
    }
    let n = recent.len() as f64;
    let mut counts = vec![0f64; prior.len()];
    for &(_, c) in recent {
        if let Some(x) = counts.get_mut(c) {
            *x += 1.0;
        }
    }
    prior
        .iter()
        .zip(&counts)
        .filter(|(r, _)| **r > 0.0)
        .map(|(&r, &c)| {
            let p = c.max(0.5) / n;
            (p - r) * (p / r).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(brightness: f32) -> ImageStats {
        ImageStats {
            width: 28,
            height: 28,
            mean: [brightness; 3],
            std: [0.2; 3],
            brightness,
            blur: 0.01,
        }
    }

    #[test]
    fn the_window_follows_the_latest_requests() {
        let live = LiveDrift::new(DriftReference {
            images: (0..400).map(|i| stats(0.3 + i as f32 / 1000.0)).collect(),
            class_prior: vec![0.5, 0.5],
        });
        for i in 0..200 {
            live.observe(stats(0.3 + (2 * i) as f32 / 1000.0), i % 2);
        }
        let s = live.scores();
        let brightness = |s: &Scores| s.psi.iter().find(|(n, _)| *n == "brightness").map(|x| x.1);
        assert_eq!(s.requests, 200);
        assert!(brightness(&s).expect("brightness") < 0.1, "{s:?}");
        assert!(s.class_mix_psi < 0.01, "{s:?}");
        // A full window of dark images of one class replaces the healthy ones.
        for _ in 0..WINDOW {
            live.observe(stats(0.1), 0);
        }
        let s = live.scores();
        assert_eq!(s.requests, WINDOW);
        assert!(brightness(&s).expect("brightness") > 1.0, "{s:?}");
        assert!(s.class_mix_psi > 1.0, "{s:?}");
    }
}
