//! The learning-rate range test (Smith 2017, "Cyclical learning rates"; the "LR finder"): a
//! fresh head trains for a few hundred minibatches while its rate grows exponentially from
//! `start` to `end`; the loss falls, flattens, then blows up. A good rate lies where the loss
//! still falls fastest, well before the blow-up.

use graft_data::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::trainer::{Learner, TrainConfig};

/// The ramp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RangeTest {
    pub start: f32,
    pub end: f32,
    pub steps: usize,
    /// Weight of the past in the loss's exponential moving average (0.9: the last ~10 steps).
    pub smoothing: f32,
    /// Stop once the smoothed loss exceeds this many times its minimum.
    pub stop_factor: f32,
}

impl Default for RangeTest {
    fn default() -> Self {
        RangeTest {
            start: 1e-6,
            end: 1.0,
            steps: 200,
            smoothing: 0.9,
            stop_factor: 4.0,
        }
    }
}

/// How a rate is read off the curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Where the smoothed loss falls fastest per decade of rate.
    Steepest,
    /// Two thirds of the way down the longest stretch over which the smoothed loss only falls:
    /// inside the valley, short of its floor (where the next steps start to diverge).
    Valley,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rule::Steepest => "steepest",
            Rule::Valley => "valley",
        })
    }
}

/// The recorded curve and what it suggests.
#[derive(Debug, Clone, Serialize)]
pub struct LrCurve {
    pub lrs: Vec<f32>,
    /// Minibatch loss at each rate.
    pub losses: Vec<f32>,
    /// Exponential moving average of `losses`, bias-corrected.
    pub smoothed: Vec<f32>,
    /// The rate at the lowest smoothed loss (past the first tenth of the steps).
    pub minimum: f32,
    pub steepest: Option<f32>,
    pub valley: Option<f32>,
    /// A tenth of the rate at which the smoothed loss first rises 5% above its lowest so far:
    /// the reading for a curve with no descent, as from a model that starts trained (a
    /// fine-tune), where the test can only say which rates begin to do harm.
    #[serde(default)]
    pub edge: Option<f32>,
    /// Whether the loss blew up before the last rate (the test stopped there).
    pub diverged: bool,
}

impl LrCurve {
    pub fn suggestion(&self, rule: Rule) -> Option<f32> {
        match rule {
            Rule::Steepest => self.steepest,
            Rule::Valley => self.valley,
        }
    }

    /// The rule's rate, or the edge when the curve has no descent to read.
    pub fn suggestion_or_edge(&self, rule: Rule) -> Option<f32> {
        self.suggestion(rule).or(self.edge)
    }
}

/// Run the range test for `cfg`'s head (its batch size, weight decay, label smoothing, class
/// balance, clipping and seed; its rate, epochs and schedule are what the test replaces) on
/// the training rows of `ds`, cycling through them as often as the steps need.
pub fn range_test(ds: &Dataset, cfg: &TrainConfig, test: &RangeTest) -> LrCurve {
    let mut rng = SplitMix64::new(cfg.seed);
    let mut learner = Learner::new(ds, cfg, ds.resolve(cfg.balance), &mut rng);
    let n = ds.train.len();
    let batch = cfg.batch.clamp(1, n.max(1));
    let mut order = ds.train.clone();
    rng.shuffle(&mut order);
    let (mut xb, mut yb) = (
        Vec::with_capacity(batch * ds.dim),
        Vec::with_capacity(batch),
    );
    let mut at = 0;
    let ramped: Result<LrCurve, std::convert::Infallible> = ramp(test, |lr| {
        xb.clear();
        yb.clear();
        for _ in 0..batch {
            if at == order.len() {
                rng.shuffle(&mut order);
                at = 0;
            }
            let i = order[at];
            at += 1;
            xb.extend_from_slice(&ds.x[i * ds.dim..(i + 1) * ds.dim]);
            yb.push(ds.y[i]);
        }
        Ok(learner.step(&xb, &yb, lr, &mut rng))
    });
    match ramped {
        Ok(curve) => curve,
        Err(never) => match never {},
    }
}

/// The ramp itself, for any learner: `step(lr)` makes one update at rate `lr` and returns its
/// minibatch loss. Stops early once the smoothed loss blows up; reads the suggestions off the
/// curve.
pub fn ramp<E>(
    test: &RangeTest,
    mut step: impl FnMut(f32) -> Result<f32, E>,
) -> Result<LrCurve, E> {
    let steps = test.steps.max(2);
    let ratio = (test.end / test.start).max(1.0 + f32::EPSILON);
    let mut curve = LrCurve {
        lrs: Vec::with_capacity(steps),
        losses: Vec::with_capacity(steps),
        smoothed: Vec::with_capacity(steps),
        minimum: test.start,
        steepest: None,
        valley: None,
        edge: None,
        diverged: false,
    };
    let (mut avg, mut best) = (0f64, f64::INFINITY);
    for k in 0..steps {
        let lr = test.start * ratio.powf(k as f32 / (steps - 1) as f32);
        let loss = step(lr)?;
        let beta = f64::from(test.smoothing);
        avg = beta * avg + (1.0 - beta) * f64::from(loss);
        let smooth = avg / (1.0 - beta.powi(k as i32 + 1));
        curve.lrs.push(lr);
        curve.losses.push(loss);
        curve.smoothed.push(smooth as f32);
        if smooth < best {
            best = smooth;
            curve.minimum = lr;
        }
        if !smooth.is_finite() || smooth > f64::from(test.stop_factor) * best {
            curve.diverged = true;
            break;
        }
    }
    let skip = skipped(curve.smoothed.len());
    if let Some(i) = (skip..curve.smoothed.len())
        .min_by(|&a, &b| curve.smoothed[a].total_cmp(&curve.smoothed[b]))
    {
        curve.minimum = curve.lrs[i];
    }
    if descends(&curve.smoothed[skip..]) {
        curve.steepest = steepest(&curve.lrs[skip..], &curve.smoothed[skip..]);
        curve.valley = valley(&curve.lrs[skip..], &curve.smoothed[skip..]);
    }
    curve.edge = edge(&curve.lrs[skip..], &curve.smoothed[skip..]);
    Ok(curve)
}

/// Steps left out at the start when reading the curve: there the smoothed loss averages a
/// handful of minibatches, noise rather than a trend.
fn skipped(steps: usize) -> usize {
    steps / 10
}

/// Whether the smoothed loss falls at least 3% below where it starts: a curve to read.
fn descends(loss: &[f32]) -> bool {
    let Some(&first) = loss.first() else {
        return false;
    };
    let low = loss.iter().copied().fold(f32::INFINITY, f32::min);
    low < 0.97 * first
}

/// A tenth of the first rate at which the loss is 5% above its lowest so far.
fn edge(lrs: &[f32], loss: &[f32]) -> Option<f32> {
    let mut low = f32::INFINITY;
    for (lr, &l) in lrs.iter().zip(loss) {
        if l > 1.05 * low || !l.is_finite() {
            return Some(lr / 10.0);
        }
        low = low.min(l);
    }
    None
}

/// The rate where the loss falls fastest per decade, before the curve's minimum (after it the
/// loss is rising and its slope says nothing about a good rate).
fn steepest(lrs: &[f32], loss: &[f32]) -> Option<f32> {
    let end = loss.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1))?.0;
    (1..end)
        .map(|i| {
            let slope = (loss[i + 1] - loss[i - 1]) / (lrs[i + 1] / lrs[i - 1]).log10();
            (i, slope)
        })
        .filter(|(_, s)| s.is_finite())
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|(_, s)| *s < 0.0)
        .map(|(i, _)| lrs[i])
}

/// Two thirds into the longest run of steps over which the loss never rises.
fn valley(lrs: &[f32], loss: &[f32]) -> Option<f32> {
    let (mut best, mut start) = ((0, 0), 0);
    for i in 1..loss.len() {
        if loss[i] > loss[i - 1] {
            start = i;
        } else if i - start > best.1 - best.0 {
            best = (start, i);
        }
    }
    let (a, b) = best;
    (b > a).then(|| lrs[a + (2 * (b - a)) / 3])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::HeadSpec;

    /// Two well-separated Gaussian classes in 8 dimensions.
    fn blobs(n: usize) -> Dataset {
        let mut rng = SplitMix64::new(3);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..n {
            let k = i % 2;
            for d in 0..8 {
                let centre = if d < 4 { 2.0 * k as f64 - 1.0 } else { 0.0 };
                x.push((centre + rng.next_f64() - 0.5) as f32);
            }
            y.push(k);
        }
        let splits = vec![None; n];
        Dataset::new(8, x, y, &splits, vec!["a".into(), "b".into()], 0.2, 1).expect("dataset")
    }

    #[test]
    fn the_loss_falls_then_blows_up_and_the_suggestions_lie_in_the_fall() {
        let ds = blobs(400);
        let cfg = TrainConfig {
            head: HeadSpec::Linear,
            batch: 32,
            clip: 0.0,
            label_smoothing: 0.0,
            ..TrainConfig::default()
        };
        let test = RangeTest {
            start: 1e-5,
            end: 100.0,
            steps: 150,
            ..RangeTest::default()
        };
        let curve = range_test(&ds, &cfg, &test);
        let first = curve.smoothed[0];
        let low = curve.smoothed.iter().copied().fold(f32::INFINITY, f32::min);
        assert!(low < 0.5 * first, "the loss falls: {first} → {low}");
        // Rates grow by the same factor every step.
        let r = curve.lrs[1] / curve.lrs[0];
        assert!(curve
            .lrs
            .windows(2)
            .all(|w| (w[1] / w[0] - r).abs() < 1e-3 * r));
        for rule in [Rule::Steepest, Rule::Valley] {
            let s = curve.suggestion(rule).expect("a suggestion");
            assert!(
                s > test.start && s <= curve.minimum,
                "{rule:?}: {s} should lie before the minimum {}",
                curve.minimum
            );
        }
        // The same seed draws the same curve.
        assert_eq!(range_test(&ds, &cfg, &test).losses, curve.losses);
    }

    #[test]
    fn the_rules_read_a_known_curve() {
        // Flat, a fall over decades 2–4 (steepest at 1e-3), a floor, then a rise.
        let lrs: Vec<f32> = (0..9).map(|i| 10f32.powi(i - 6)).collect();
        let loss = [2.0, 2.0, 1.9, 1.2, 0.5, 0.4, 0.4, 0.9, 3.0];
        assert_eq!(steepest(&lrs, &loss), Some(1e-3));
        // The run 0..=6 never rises; two thirds in is step 4.
        assert_eq!(valley(&lrs, &loss), Some(lrs[4]));
        assert!(descends(&loss));
        // First 5% above the lowest so far at step 7 (0.9 > 1.05 × 0.4).
        assert_eq!(edge(&lrs, &loss), Some(lrs[7] / 10.0));
        // A trained start: flat, then a rise; no descent to read, only an edge.
        let flat = [0.63, 0.64, 0.63, 0.64, 0.63, 0.66, 0.75, 1.2, 2.5];
        assert!(!descends(&flat));
        assert_eq!(edge(&lrs, &flat), Some(lrs[6] / 10.0));
    }
}
