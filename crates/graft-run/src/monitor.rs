//! Whether production traffic still looks like what the model learnt from: each input
//! statistic against the reference profile (population stability index and Kolmogorov–Smirnov),
//! the encoder's view of the images (MMD between embedding summaries, permutation p-value),
//! the predicted-class mix against the training prior (chi-squared), the mean confidence
//! against validation's, the share of low-confidence answers, and the service's latency and
//! error rate. `graft monitor` prints this and exits 1 when a check alerts.

use graft_data::drift::{chi_squared, ks_two_sample, psi};
use graft_data::embedding::mmd_test;
use graft_data::image_stats::ImageStats;
use serde::Serialize;

use crate::reference::Reference;

/// One answered request, as the audit trail has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    pub stats: ImageStats,
    pub predicted: String,
    pub probability: f64,
    pub confident: bool,
    pub latency_ms: f64,
    /// The embedding summary, when the served model gave its features.
    pub embedding: Option<Vec<f32>>,
}

/// What the class and confidence checks read of an answer, served or made in the field.
pub(crate) struct Answer<'a> {
    pub predicted: &'a str,
    pub probability: f64,
    pub confident: bool,
}

impl<'a> From<&'a Observation> for Answer<'a> {
    fn from(o: &'a Observation) -> Answer<'a> {
        Answer {
            predicted: &o.predicted,
            probability: o.probability,
            confident: o.confident,
        }
    }
}

/// When a check alerts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Thresholds {
    /// An input statistic drifts when its PSI is above this …
    pub psi: f64,
    /// … and the KS test's p-value below this (a shift both large and not chance).
    pub ks_p: f64,
    /// The embeddings drift below this MMD permutation p-value.
    pub mmd_p: f64,
    /// The class mix differs from the prior below this chi-squared p-value.
    pub chi_p: f64,
    /// Relative drop of mean confidence from validation's that alerts.
    pub confidence_drop: f64,
    /// Share of low-confidence answers that alerts.
    pub low_confidence: f64,
    /// Share of prediction requests failing on the server's side (5xx) that alerts.
    pub error_rate: f64,
    /// Fewer requests than this: reported, never alerted on.
    pub min_requests: usize,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            psi: 0.25,
            ks_p: 0.001,
            mmd_p: 0.01,
            chi_p: 0.05,
            confidence_drop: 0.10,
            low_confidence: 0.30,
            error_rate: 0.05,
            min_requests: 30,
        }
    }
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    /// `input`, `embedding`, `classes`, `confidence`, `service` or `field`.
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
    /// Predictions the exported web page made offline and sent back
    /// ([`crate::monitor_field::judge_field`]).
    pub field_predictions: usize,
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

/// Embedding summaries compared per side, at most (the MMD test is quadratic in them).
const MMD_SAMPLE: usize = 400;
/// Relabellings for the MMD p-value (its smallest value is 1 / 301).
const MMD_PERMUTATIONS: usize = 300;

/// A prediction request that got an error instead of an answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Failed {
    pub time_ms: i64,
    /// Its HTTP status.
    pub status: u16,
}

/// The prediction requests that got no answer.
pub type Failures<'a> = &'a [Failed];

/// Judge `traffic` (and the `failures` beside it) against `reference`.
pub fn judge(
    reference: &Reference,
    traffic: &[Observation],
    failures: Failures<'_>,
    t: &Thresholds,
) -> Report {
    let enough = traffic.len() >= t.min_requests;
    let answers: Vec<Answer<'_>> = traffic.iter().map(Answer::from).collect();
    let mut checks = input_checks(reference, traffic, t, enough);
    checks.extend(embedding_check(reference, traffic, t, enough));
    checks.push(class_check(reference, &answers, t, enough, Served));
    checks.extend(confidence_checks(reference, &answers, t, enough, Served));
    checks.extend(service_checks(traffic, failures, t));
    Report {
        requests: traffic.len(),
        field_predictions: 0,
        reference_images: reference.images.len(),
        thresholds: *t,
        checks,
    }
}

/// Where answers come from: the check names and kinds differ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Source {
    Served,
    Field,
}
use Source::Served;

impl Source {
    fn name(self, check: &str) -> String {
        match self {
            Served => check.to_string(),
            Source::Field => format!("field_{check}"),
        }
    }

    fn kind(self, served: &'static str) -> &'static str {
        match self {
            Served => served,
            Source::Field => "field",
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Each input statistic: PSI and KS against the training images.
fn input_checks(
    r: &Reference,
    traffic: &[Observation],
    t: &Thresholds,
    enough: bool,
) -> Vec<Check> {
    let names = ImageStats::default().named().map(|(name, _)| name);
    names
        .into_iter()
        .enumerate()
        .map(|(k, name)| {
            let reference: Vec<f64> = r.images.iter().map(|s| s.named()[k].1).collect();
            let p: Vec<f64> = traffic.iter().map(|o| o.stats.named()[k].1).collect();
            let index = psi(&reference, &p, 10);
            let (d, ks) = ks_two_sample(&reference, &p);
            Check {
                name: name.to_string(),
                kind: "input",
                value: index,
                detail: format!(
                    "PSI {index:.3}, KS D {d:.3} p {ks:.2e}; mean {:.4} (training {:.4})",
                    mean(&p),
                    mean(&reference)
                ),
                alert: enough && index > t.psi && ks < t.ks_p,
            }
        })
        .collect()
}

/// What the encoder made of the images: MMD between the embedding summaries of the traffic
/// and of the training rows. None when either side has no summaries.
fn embedding_check(
    r: &Reference,
    traffic: &[Observation],
    t: &Thresholds,
    enough: bool,
) -> Option<Check> {
    let reference = r.embeddings.as_ref().filter(|e| !e.is_empty())?;
    let seen: Vec<&Vec<f32>> = traffic
        .iter()
        .filter_map(|o| o.embedding.as_ref())
        .collect();
    if seen.is_empty() {
        return None;
    }
    // The most recent requests: drift shows at the end of a window first.
    let recent: Vec<Vec<f32>> = seen[seen.len().saturating_sub(MMD_SAMPLE)..]
        .iter()
        .map(|e| (*e).clone())
        .collect();
    let sample: Vec<Vec<f32>> =
        crate::held_out::spread(&(0..reference.len()).collect::<Vec<_>>(), MMD_SAMPLE)
            .into_iter()
            .map(|i| reference[i].clone())
            .collect();
    let m = mmd_test(&sample, &recent, MMD_PERMUTATIONS, 0x6d6d64);
    Some(Check {
        name: "embedding_mmd".into(),
        kind: "embedding",
        value: m.p_value,
        detail: format!(
            "MMD² {:.4}, permutation p {:.3} ({} requests vs {} training rows)",
            m.mmd2,
            m.p_value,
            recent.len(),
            sample.len()
        ),
        alert: enough && recent.len() >= t.min_requests && m.p_value < t.mmd_p,
    })
}

/// Predicted classes against the training prior.
pub(crate) fn class_check(
    r: &Reference,
    traffic: &[Answer<'_>],
    t: &Thresholds,
    enough: bool,
    source: Source,
) -> Check {
    let n = traffic.len().max(1) as f64;
    let classes: Vec<(&String, f64)> = r.class_prior.iter().map(|(c, &p)| (c, p)).collect();
    let observed: Vec<f64> = classes
        .iter()
        .map(|(c, _)| traffic.iter().filter(|o| o.predicted == c.as_str()).count() as f64)
        .collect();
    let expected: Vec<f64> = classes.iter().map(|(_, p)| *p).collect();
    let (chi, df, p) = chi_squared(&observed, &expected);
    let most = classes
        .iter()
        .zip(&observed)
        .max_by(|((_, ea), oa), ((_, eb), ob)| (*oa / n - ea).total_cmp(&(*ob / n - eb)))
        .map(|((c, e), o)| {
            format!(
                "; most over-represented: {c} {:.1} % (training {:.1} %)",
                100.0 * o / n,
                100.0 * e
            )
        })
        .unwrap_or_default();
    Check {
        name: source.name("class_mix"),
        kind: source.kind("classes"),
        value: p,
        detail: format!("chi-squared {chi:.1} on {df} df, p {p:.2e}{most}"),
        alert: enough && p < t.chi_p,
    }
}

/// Mean confidence against validation's, and the share of low-confidence answers.
pub(crate) fn confidence_checks(
    r: &Reference,
    traffic: &[Answer<'_>],
    t: &Thresholds,
    enough: bool,
    source: Source,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let n = traffic.len().max(1) as f64;
    let mean_conf = traffic.iter().map(|o| o.probability).sum::<f64>() / n;
    if let Some(val) = r.val_mean_confidence {
        let drop = (val - mean_conf) / val;
        checks.push(Check {
            name: source.name("mean_confidence"),
            kind: source.kind("confidence"),
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
        name: source.name("low_confidence_rate"),
        kind: source.kind("confidence"),
        value: low,
        detail: format!(
            "{:.1} % of answers below the threshold (alert above {:.0} %)",
            100.0 * low,
            100.0 * t.low_confidence
        ),
        alert: enough && low > t.low_confidence,
    });
    checks
}

/// Latency P95 (reported) and the share of requests the server failed (alerted on).
fn service_checks(traffic: &[Observation], failures: Failures<'_>, t: &Thresholds) -> [Check; 2] {
    let mut lat: Vec<f64> = traffic.iter().map(|o| o.latency_ms).collect();
    let p95 = if lat.is_empty() {
        0.0
    } else {
        graft_eval::percentile(&mut lat, 0.95)
    };
    let server = failures.iter().filter(|f| f.status >= 500).count();
    let client = failures.len() - server;
    let asked = traffic.len() + failures.len();
    let rate = server as f64 / asked.max(1) as f64;
    [
        Check {
            name: "latency_p95_ms".into(),
            kind: "service",
            value: p95,
            detail: format!("P95 {p95:.1} ms over {} answered requests", traffic.len()),
            alert: false,
        },
        Check {
            name: "error_rate".into(),
            kind: "service",
            value: rate,
            detail: format!(
                "{server} of {asked} prediction requests failed on the server (5xx), {:.1} %; \
                 {client} refused as bad input (4xx, not counted); alert above {:.0} %",
                100.0 * rate,
                100.0 * t.error_rate
            ),
            alert: asked >= t.min_requests && rate > t.error_rate,
        },
    ]
}

#[cfg(test)]
pub(crate) mod tests {
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

    pub(crate) fn reference() -> Reference {
        Reference {
            images: (0..500)
                .map(|i| stats(0.3 + 0.4 * i as f32 / 500.0))
                .collect(),
            class_prior: BTreeMap::from([("a".to_string(), 0.5), ("b".to_string(), 0.5)]),
            val_mean_confidence: Some(0.9),
            val_images: 100,
            embeddings: Some((0..300).map(|i| vec![(i % 7) as f32, 1.0]).collect()),
        }
    }

    pub(crate) fn traffic(scale: f32, only_a: bool) -> Vec<Observation> {
        (0..200)
            .map(|i| Observation {
                time_ms: i as i64 * 1000,
                stats: stats(scale * (0.3 + 0.4 * i as f32 / 200.0)),
                predicted: if only_a || i % 2 == 0 { "a" } else { "b" }.into(),
                probability: 0.9,
                confident: true,
                latency_ms: 5.0,
                embedding: Some(vec![(i % 7) as f32, if scale < 1.0 { 1.5 } else { 1.0 }]),
            })
            .collect()
    }

    #[test]
    fn like_training_is_healthy_darker_and_one_sided_are_not() {
        let t = Thresholds::default();
        let r = reference();
        let failed = |status: u16| Failed { time_ms: 0, status };
        let healthy = judge(&r, &traffic(1.0, false), &[failed(400), failed(503)], &t);
        assert_eq!(healthy.alerts().count(), 0, "{healthy:#?}");
        let dark = judge(&r, &traffic(0.6, false), &[], &t);
        let names: Vec<&str> = dark.alerts().map(|c| c.name.as_str()).collect();
        assert!(
            names.contains(&"brightness")
                && names.contains(&"embedding_mmd")
                && !names.contains(&"class_mix"),
            "{names:?}"
        );
        let mix = judge(&r, &traffic(1.0, true), &[], &t);
        let names: Vec<&str> = mix.alerts().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["class_mix"]);
        // 20 server failures beside 200 answers: 9 %, over the 5 % line; bad input is not.
        let failing = judge(
            &r,
            &traffic(1.0, false),
            &[[failed(503); 20], [failed(400); 20]].concat(),
            &t,
        );
        let names: Vec<&str> = failing.alerts().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["error_rate"]);
        // Too few requests: reported, not alerted.
        let few = judge(&r, &traffic(0.6, false)[..10], &[], &t);
        assert_eq!(few.alerts().count(), 0);
    }
}
