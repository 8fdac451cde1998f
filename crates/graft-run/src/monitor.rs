//! Whether production traffic still looks like what the model learnt from: each input
//! statistic against the reference profile (population stability index and Kolmogorov–Smirnov),
//! the predicted-class mix against the training prior (chi-squared), the mean confidence
//! against validation's and the share of low-confidence answers. `graft monitor` prints this
//! and exits 1 when a check alerts.

use graft_data::image_stats::ImageStats;
use graft_eval::drift::{chi_squared, ks_two_sample, psi};
use serde::Serialize;

use crate::reference::Reference;

/// One answered request, as the audit trail has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub stats: ImageStats,
    pub predicted: String,
    pub probability: f64,
    pub confident: bool,
    pub latency_ms: f64,
}

/// When a check alerts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// An input statistic drifts when its PSI is above this …
    pub psi: f64,
    /// … and the KS test's p-value below this (a shift both large and not chance).
    pub ks_p: f64,
    /// The class mix differs from the prior below this chi-squared p-value.
    pub chi_p: f64,
    /// Relative drop of mean confidence from validation's that alerts.
    pub confidence_drop: f64,
    /// Share of low-confidence answers that alerts.
    pub low_confidence: f64,
    /// Fewer requests than this: reported, never alerted on.
    pub min_requests: usize,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            psi: 0.25,
            ks_p: 0.001,
            chi_p: 0.05,
            confidence_drop: 0.10,
            low_confidence: 0.30,
            min_requests: 30,
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    /// `input`, `classes`, `confidence` or `service`.
    pub kind: &'static str,
    /// The check's main number (PSI, p-value, share, milliseconds).
    pub value: f64,
    /// What it was held against, in words.
    pub detail: String,
    pub alert: bool,
}

/// Everything `graft monitor` judged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub requests: usize,
    pub reference_images: usize,
    pub thresholds: Thresholds,
    pub checks: Vec<Check>,
}

impl Report {
    /// The checks that alert.
    pub fn alerts(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.alert)
    }
}

/// One input statistic: its name and how to read it.
type Statistic = (&'static str, fn(&ImageStats) -> f64);

/// The input statistics compared.
fn statistics() -> [Statistic; 10] {
    [
        ("width", |s| f64::from(s.width)),
        ("height", |s| f64::from(s.height)),
        ("mean_r", |s| f64::from(s.mean[0])),
        ("mean_g", |s| f64::from(s.mean[1])),
        ("mean_b", |s| f64::from(s.mean[2])),
        ("std_r", |s| f64::from(s.std[0])),
        ("std_g", |s| f64::from(s.std[1])),
        ("std_b", |s| f64::from(s.std[2])),
        ("brightness", |s| f64::from(s.brightness)),
        ("blur", |s| f64::from(s.blur)),
    ]
}

/// Judge `traffic` against `reference`.
pub fn judge(reference: &Reference, traffic: &[Observation], t: &Thresholds) -> Report {
    let enough = traffic.len() >= t.min_requests;
    let mut checks = Vec::new();
    for (name, get) in statistics() {
        let r: Vec<f64> = reference.images.iter().map(get).collect();
        let p: Vec<f64> = traffic.iter().map(|o| get(&o.stats)).collect();
        let index = psi(&r, &p, 10);
        let (d, ks) = ks_two_sample(&r, &p);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        checks.push(Check {
            name: name.to_string(),
            kind: "input",
            value: index,
            detail: format!(
                "PSI {index:.3}, KS D {d:.3} p {ks:.2e}; mean {:.4} (training {:.4})",
                mean(&p),
                mean(&r)
            ),
            alert: enough && index > t.psi && ks < t.ks_p,
        });
    }
    // Predicted classes against the training prior.
    let classes: Vec<(&String, f64)> = reference.class_prior.iter().map(|(c, &p)| (c, p)).collect();
    let observed: Vec<f64> = classes
        .iter()
        .map(|(c, _)| traffic.iter().filter(|o| &o.predicted == *c).count() as f64)
        .collect();
    let expected: Vec<f64> = classes.iter().map(|(_, p)| *p).collect();
    let (chi, df, p) = chi_squared(&observed, &expected);
    let most = classes
        .iter()
        .zip(&observed)
        .max_by(|a, b| {
            let over =
                |((_, e), o): &(&(&String, f64), &f64)| **o / traffic.len().max(1) as f64 - e;
            over(a).total_cmp(&over(b))
        })
        .map(|((c, e), o)| {
            format!(
                "; most over-represented: {c} {:.1} % (training {:.1} %)",
                100.0 * o / traffic.len().max(1) as f64,
                100.0 * e
            )
        })
        .unwrap_or_default();
    checks.push(Check {
        name: "class_mix".into(),
        kind: "classes",
        value: p,
        detail: format!("chi-squared {chi:.1} on {df} df, p {p:.2e}{most}"),
        alert: enough && p < t.chi_p,
    });
    // Confidence.
    let n = traffic.len().max(1) as f64;
    let mean_conf = traffic.iter().map(|o| o.probability).sum::<f64>() / n;
    if let Some(val) = reference.val_mean_confidence {
        let drop = (val - mean_conf) / val;
        checks.push(Check {
            name: "mean_confidence".into(),
            kind: "confidence",
            value: mean_conf,
            detail: format!(
                "{mean_conf:.3} vs {val:.3} on validation ({:+.1} %; alert below −{:.0} %)",
                -100.0 * drop,
                100.0 * t.confidence_drop
            ),
            alert: enough && drop > t.confidence_drop,
        });
    }
    let low = traffic.iter().filter(|o| !o.confident).count() as f64 / n;
    checks.push(Check {
        name: "low_confidence_rate".into(),
        kind: "confidence",
        value: low,
        detail: format!(
            "{:.1} % of answers below the threshold (alert above {:.0} %)",
            100.0 * low,
            100.0 * t.low_confidence
        ),
        alert: enough && low > t.low_confidence,
    });
    let mut lat: Vec<f64> = traffic.iter().map(|o| o.latency_ms).collect();
    let p95 = if lat.is_empty() {
        0.0
    } else {
        graft_eval::percentile(&mut lat, 0.95)
    };
    checks.push(Check {
        name: "latency_p95_ms".into(),
        kind: "service",
        value: p95,
        detail: format!("P95 {p95:.1} ms over {} answered requests", traffic.len()),
        alert: false,
    });
    Report {
        requests: traffic.len(),
        reference_images: reference.images.len(),
        thresholds: *t,
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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

    fn reference() -> Reference {
        Reference {
            images: (0..500)
                .map(|i| stats(0.3 + 0.4 * i as f32 / 500.0))
                .collect(),
            class_prior: BTreeMap::from([("a".to_string(), 0.5), ("b".to_string(), 0.5)]),
            val_mean_confidence: Some(0.9),
            val_images: 100,
        }
    }

    fn traffic(scale: f32, only_a: bool) -> Vec<Observation> {
        (0..200)
            .map(|i| Observation {
                stats: stats(scale * (0.3 + 0.4 * i as f32 / 200.0)),
                predicted: if only_a || i % 2 == 0 { "a" } else { "b" }.into(),
                probability: 0.9,
                confident: true,
                latency_ms: 5.0,
            })
            .collect()
    }

    #[test]
    fn like_training_is_healthy_darker_and_one_sided_are_not() {
        let t = Thresholds::default();
        let r = reference();
        let healthy = judge(&r, &traffic(1.0, false), &t);
        assert_eq!(healthy.alerts().count(), 0, "{healthy:#?}");
        let dark = judge(&r, &traffic(0.6, false), &t);
        let names: Vec<&str> = dark.alerts().map(|c| c.name.as_str()).collect();
        assert!(
            names.contains(&"brightness") && !names.contains(&"class_mix"),
            "{names:?}"
        );
        let mix = judge(&r, &traffic(1.0, true), &t);
        let names: Vec<&str> = mix.alerts().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["class_mix"]);
        // Too few requests: reported, not alerted.
        let few = judge(&r, &traffic(0.6, false)[..10], &t);
        assert_eq!(few.alerts().count(), 0);
    }
}
