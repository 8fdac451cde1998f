//! `graft monitor --compare`: a champion and its canary side by side. On the traffic both
//! scored (the canary's requests, which the champion scored in shadow) each model's mean
//! confidence, low-confidence share and class mix, the chi-squared test of whether the two
//! mixes differ, and how often they agree; beside it, each model's answered requests and their
//! latency.

use std::collections::{BTreeMap, HashMap};

use graft_data::drift::chi_squared_homogeneity;
use serde::Serialize;

use crate::monitor::Check;

/// One model's score of one request, as the audit trail has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub request_id: String,
    pub model: String,
    pub predicted: String,
    pub probability: f64,
    pub confident: bool,
    /// Whether this answer went back to the client (false: a shadow score).
    pub answered: bool,
    pub latency_ms: f64,
}

/// When the comparison alerts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CompareThresholds {
    /// The class mixes differ below this chi-squared p-value.
    pub chi_p: f64,
    /// The canary's mean confidence this much (relative) below the champion's alerts.
    pub confidence_drop: f64,
    /// Fewer shared requests than this: reported, never alerted on.
    pub min_shared: usize,
}

impl Default for CompareThresholds {
    fn default() -> CompareThresholds {
        CompareThresholds {
            chi_p: 0.05,
            confidence_drop: 0.10,
            min_shared: 30,
        }
    }
}

/// One model's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmSummary {
    pub model: String,
    /// Requests it answered in the window.
    pub answered: usize,
    /// P95 of their latency (the canary's includes waiting for the champion's shadow score).
    pub latency_p95_ms: f64,
    /// On the shared traffic:
    pub mean_confidence: f64,
    pub low_confidence_rate: f64,
    /// Predicted class → requests.
    pub class_mix: BTreeMap<String, usize>,
}

/// Everything `graft monitor --compare` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Requests both models scored.
    pub shared: usize,
    pub champion: ArmSummary,
    pub canary: ArmSummary,
    /// Share of the shared requests where both gave the same top class.
    pub agreement: f64,
    pub thresholds: CompareThresholds,
    pub checks: Vec<Check>,
}

impl Comparison {
    pub fn alerts(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.alert)
    }
}

fn summary(all: &[Scored], shared: &[&Scored]) -> ArmSummary {
    let mut latency: Vec<f64> = all
        .iter()
        .filter(|s| s.answered)
        .map(|s| s.latency_ms)
        .collect();
    let n = shared.len().max(1) as f64;
    let mut class_mix = BTreeMap::new();
    for s in shared {
        *class_mix.entry(s.predicted.clone()).or_insert(0) += 1;
    }
    ArmSummary {
        model: all.last().map(|s| s.model.clone()).unwrap_or_default(),
        answered: latency.len(),
        latency_p95_ms: if latency.is_empty() {
            0.0
        } else {
            graft_eval::percentile(&mut latency, 0.95)
        },
        mean_confidence: shared.iter().map(|s| s.probability).sum::<f64>() / n,
        low_confidence_rate: shared.iter().filter(|s| !s.confident).count() as f64 / n,
        class_mix,
    }
}

/// Compare the champion's rows with the canary's; the shared traffic is the request ids both
/// have.
pub fn compare(champion: &[Scored], canary: &[Scored], t: &CompareThresholds) -> Comparison {
    let by_id: HashMap<&str, &Scored> = champion
        .iter()
        .map(|s| (s.request_id.as_str(), s))
        .collect();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for c in canary {
        if let Some(&s) = by_id.get(c.request_id.as_str()) {
            ours.push(s);
            theirs.push(c);
        }
    }
    let shared = ours.len();
    let agreed = ours
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| a.predicted == b.predicted)
        .count();
    let champion_summary = summary(champion, &ours);
    let canary_summary = summary(canary, &theirs);
    let enough = shared >= t.min_shared;
    let classes: Vec<&String> = champion_summary
        .class_mix
        .keys()
        .chain(canary_summary.class_mix.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let counts = |s: &ArmSummary| -> Vec<f64> {
        classes
            .iter()
            .map(|c| s.class_mix.get(*c).copied().unwrap_or(0) as f64)
            .collect()
    };
    let (chi, df, p) =
        chi_squared_homogeneity(&counts(&champion_summary), &counts(&canary_summary));
    let (mc, mk) = (
        champion_summary.mean_confidence,
        canary_summary.mean_confidence,
    );
    let drop = if mc > 0.0 { (mc - mk) / mc } else { 0.0 };
    let agreement = agreed as f64 / shared.max(1) as f64;
    let checks = vec![
        Check {
            name: "canary_class_mix".into(),
            kind: "classes",
            value: p,
            detail: format!(
                "chi-squared {chi:.2} on {df} df: whether the two models' predicted classes \
                 on the same {shared} requests come from one distribution"
            ),
            alert: enough && p < t.chi_p,
        },
        Check {
            name: "canary_confidence".into(),
            kind: "confidence",
            value: mk,
            detail: format!(
                "canary {mk:.3} against the champion's {mc:.3} on the same requests ({:+.1} %)",
                -100.0 * drop
            ),
            alert: enough && drop > t.confidence_drop,
        },
        Check {
            name: "agreement".into(),
            kind: "classes",
            value: agreement,
            detail: format!("the same top class on {agreed} of {shared} shared requests"),
            alert: false,
        },
    ];
    Comparison {
        shared,
        champion: champion_summary,
        canary: canary_summary,
        agreement,
        thresholds: *t,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(id: usize, model: &str, predicted: &str, p: f64, answered: bool) -> Scored {
        Scored {
            request_id: format!("r{id}"),
            model: model.into(),
            predicted: predicted.into(),
            probability: p,
            confident: p >= 0.7,
            answered,
            latency_ms: 10.0 + id as f64,
        }
    }

    #[test]
    fn shared_traffic_agreement_confidence_and_class_mix() {
        // 100 requests: 0–59 answered by the champion, 60–99 by the canary (shadowed).
        let champion: Vec<Scored> = (0..100)
            .map(|i| scored(i, "a", ["x", "y"][i % 2], 0.9, i < 60))
            .collect();
        let same: Vec<Scored> = (60..100)
            .map(|i| scored(i, "b", ["x", "y"][i % 2], 0.85, true))
            .collect();
        let c = compare(&champion, &same, &CompareThresholds::default());
        assert_eq!(
            (c.shared, c.champion.answered, c.canary.answered),
            (40, 60, 40)
        );
        assert_eq!(c.agreement, 1.0);
        assert!((c.champion.mean_confidence - 0.9).abs() < 1e-12);
        assert_eq!(c.canary.class_mix["x"], 20);
        assert_eq!(c.alerts().count(), 0, "{:?}", c.checks);

        // A canary that says "x" to everything, less sure: both checks alert.
        let odd: Vec<Scored> = (60..100).map(|i| scored(i, "b", "x", 0.6, true)).collect();
        let c = compare(&champion, &odd, &CompareThresholds::default());
        assert_eq!(c.agreement, 0.5);
        assert_eq!(c.canary.low_confidence_rate, 1.0);
        let alerts: Vec<&str> = c.alerts().map(|a| a.name.as_str()).collect();
        assert_eq!(alerts, ["canary_class_mix", "canary_confidence"]);

        // Too few shared requests: reported, not alerted.
        let c = compare(&champion, &odd[..10], &CompareThresholds::default());
        assert_eq!((c.shared, c.alerts().count()), (10, 0));
    }
}
