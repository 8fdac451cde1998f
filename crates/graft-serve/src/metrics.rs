//! Counters for `GET /metrics`, in the Prometheus text exposition format (0.0.4) through
//! prometheus-client.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::audit::Arm;
use crate::batcher::BatchStats;
use crate::live_drift::Scores;

pub use prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClassLabels {
    class: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModelInfoLabels {
    run: String,
    sha256: String,
    encoder: String,
}

/// Upper bounds of the top-1 probability histogram's buckets.
const CONFIDENCE_BUCKETS: [f64; 12] =
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CanaryInfoLabels {
    run: String,
    sha256: String,
    encoder: String,
    share_percent: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ArmLabels {
    arm: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatisticLabels {
    statistic: String,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// By class index: the names only come with `render`.
    predictions: Vec<Counter>,
    low_confidence: Counter,
    confidence: Histogram,
    /// Answered images by arm: champion, canary.
    answers: [Counter; 2],
    /// Canary answers the champion also scored, and those where both had the same top class.
    shadowed: Counter,
    agreed: Counter,
}

/// Label values for the model's identity.
pub struct ModelLabels<'a> {
    pub run: &'a str,
    pub sha256: &'a str,
    pub encoder: &'a str,
}

impl Metrics {
    pub fn new(classes: usize) -> Self {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            predictions: (0..classes).map(|_| Counter::default()).collect(),
            low_confidence: Counter::default(),
            confidence: Histogram::new(CONFIDENCE_BUCKETS),
            answers: Default::default(),
            shadowed: Counter::default(),
            agreed: Counter::default(),
        }
    }

    /// One finished request. `route` is the matched route (or "other"), never the raw path, so
    /// random paths cannot blow up the number of series.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One answered image: its top-1 class and probability, and whether it cleared the
    /// threshold.
    pub fn prediction(&self, arm: Arm, class: usize, probability: f32, confident: bool) {
        self.answers[arm as usize].inc();
        if let Some(c) = self.predictions.get(class) {
            c.inc();
        }
        self.confidence.observe(f64::from(probability));
        if !confident {
            self.low_confidence.inc();
        }
    }

    /// The champion scored a canary answer too: `agreed` when its top class was the same.
    pub fn shadow(&self, agreed: bool) {
        self.shadowed.inc();
        if agreed {
            self.agreed.inc();
        }
    }

    pub fn render(
        &self,
        classes: &[String],
        batches: &BatchStats,
        model: &ModelLabels<'_>,
        uptime: Duration,
        drift: Option<&Scores>,
        canary: Option<(&ModelLabels<'_>, u8)>,
    ) -> String {
        // prometheus-client appends `_total` to counters, `_info` to info metrics and a full
        // stop to every help text.
        let mut r = Registry::default();
        r.register(
            "graft_model",
            "The model being served",
            Info::new(ModelInfoLabels {
                run: model.run.to_owned(),
                sha256: model.sha256.to_owned(),
                encoder: model.encoder.to_owned(),
            }),
        );
        r.register(
            "graft_uptime_seconds",
            "Seconds since the server started",
            ConstGauge::new(uptime.as_secs_f64()),
        );
        r.register(
            "graft_http_requests",
            "HTTP requests by route and status",
            self.requests.clone(),
        );
        r.register(
            "graft_http_request_duration_seconds",
            "Time from request to response, by route",
            self.latency.clone(),
        );
        // A fresh family per scrape: every class gets a series, answered or not.
        let predictions = Family::<ClassLabels, Counter>::default();
        for (class, n) in classes.iter().zip(&self.predictions) {
            predictions
                .get_or_create(&ClassLabels {
                    class: class.clone(),
                })
                .inc_by(n.get());
        }
        r.register(
            "graft_predictions",
            "Answered images by top-1 class",
            predictions,
        );
        let low = self.low_confidence.get();
        r.register(
            "graft_low_confidence",
            "Answered images whose top-1 probability was below the threshold",
            ConstCounter::new(low),
        );
        r.register(
            "graft_prediction_confidence",
            "Top-1 probability of answered images",
            self.confidence.clone(),
        );
        if let Some(d) = drift {
            r.register(
                "graft_drift_window_images",
                "Answered images the drift gauges are computed over (the most recent)",
                ConstGauge::new(d.requests as i64),
            );
            let family = Family::<StatisticLabels, Gauge<f64, AtomicU64>>::default();
            for (name, v) in &d.psi {
                family
                    .get_or_create(&StatisticLabels {
                        statistic: (*name).to_string(),
                    })
                    .set(*v);
            }
            r.register(
                "graft_drift_psi",
                "Population stability index of an input statistic over the window against \
                 the training images (above 0.25: a shift)",
                family,
            );
            r.register(
                "graft_drift_class_mix_psi",
                "Population stability index of the predicted classes over the window against \
                 the training prior",
                ConstGauge::new(d.class_mix_psi),
            );
        }
        if let Some((c, share)) = canary {
            r.register(
                "graft_canary",
                "The challenger answering a share of the clients (graft serve --canary)",
                Info::new(CanaryInfoLabels {
                    run: c.run.to_owned(),
                    sha256: c.sha256.to_owned(),
                    encoder: c.encoder.to_owned(),
                    share_percent: share,
                }),
            );
            let family = Family::<ArmLabels, Counter>::default();
            for arm in [Arm::Champion, Arm::Canary] {
                family
                    .get_or_create(&ArmLabels { arm: arm.as_str() })
                    .inc_by(self.answers[arm as usize].get());
            }
            r.register("graft_answers", "Answered images by model", family);
            r.register(
                "graft_canary_shadow_scored",
                "Canary answers the champion scored too",
                ConstCounter::new(self.shadowed.get()),
            );
            r.register(
                "graft_canary_agreed",
                "Canary answers whose top class the champion shared",
                ConstCounter::new(self.agreed.get()),
            );
        }
        r.register(
            "graft_inference_batches",
            "Model runs",
            ConstCounter::new(batches.batches.load(Ordering::Relaxed)),
        );
        r.register(
            "graft_inference_images",
            "Images through the model (÷ batches = mean batch size)",
            ConstCounter::new(batches.images.load(Ordering::Relaxed)),
        );
        r.register(
            "graft_inference_seconds",
            "Time spent in the model",
            ConstCounter::new(batches.busy_us.load(Ordering::Relaxed) as f64 / 1e6),
        );
        let mut s = String::new();
        // Writing into a String cannot fail, nor can the label sets above.
        let _ = prometheus_text::encode(&mut s, &r);

        // Written by hand to keep its fixed six decimals: prometheus-client writes the
        // shortest form of a float (0.25, not 0.250000).
        let total: u64 = self.predictions.iter().map(Counter::get).sum();
        let ratio = if total == 0 {
            0.0
        } else {
            low as f64 / total as f64
        };
        let name = "graft_low_confidence_ratio";
        let _ = writeln!(
            s,
            "# HELP {name} Share of answered images below the threshold.\n\
             # TYPE {name} gauge\n\
             {name} {ratio:.6}"
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_ratio() {
        let m = Metrics::new(2);
        m.request("/predict", 200, Duration::from_millis(7));
        m.request("/predict", 200, Duration::from_millis(70));
        m.request("/predict", 415, Duration::from_millis(1));
        m.prediction(Arm::Champion, 0, 0.95, true);
        m.prediction(Arm::Champion, 1, 0.45, false);
        m.prediction(Arm::Canary, 1, 0.75, true);
        m.prediction(Arm::Champion, 1, 1.0, true);
        m.shadow(true);
        let stats = BatchStats::default();
        stats.batches.store(3, Ordering::Relaxed);
        stats.images.store(4, Ordering::Relaxed);
        let classes = vec!["a\"b".to_string(), "c".to_string()];
        let model = ModelLabels {
            run: "r",
            sha256: "ab",
            encoder: "mobilenet-v2",
        };
        let drift = Scores {
            requests: 4,
            psi: vec![("brightness", 0.5)],
            class_mix_psi: 0.125,
        };
        let text = m.render(
            &classes,
            &stats,
            &model,
            Duration::from_secs(2),
            Some(&drift),
            Some((
                &ModelLabels {
                    run: "r2",
                    sha256: "cd",
                    encoder: "mobilenet-v2",
                },
                10,
            )),
        );
        for line in [
            "graft_http_requests_total{route=\"/predict\",status=\"200\"} 2",
            "graft_http_requests_total{route=\"/predict\",status=\"415\"} 1",
            "graft_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.01\"} 2",
            "graft_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.1\"} 3",
            "graft_http_request_duration_seconds_bucket{route=\"/predict\",le=\"+Inf\"} 3",
            "graft_http_request_duration_seconds_count{route=\"/predict\"} 3",
            "graft_predictions_total{class=\"a\\\"b\"} 1",
            "graft_predictions_total{class=\"c\"} 3",
            "graft_low_confidence_total 1",
            "graft_low_confidence_ratio 0.250000",
            "graft_inference_images_total 4",
            "graft_prediction_confidence_bucket{le=\"0.5\"} 1",
            "graft_prediction_confidence_bucket{le=\"0.8\"} 2",
            "graft_prediction_confidence_bucket{le=\"0.95\"} 3",
            "graft_prediction_confidence_bucket{le=\"1\"} 4",
            "graft_prediction_confidence_count 4",
            "graft_drift_window_images 4",
            "graft_drift_psi{statistic=\"brightness\"} 0.5",
            "graft_drift_class_mix_psi 0.125",
            "graft_canary_info{run=\"r2\",sha256=\"cd\",encoder=\"mobilenet-v2\",share_percent=\"10\"} 1",
            "graft_answers_total{arm=\"champion\"} 3",
            "graft_answers_total{arm=\"canary\"} 1",
            "graft_canary_shadow_scored_total 1",
            "graft_canary_agreed_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        // Every sample line is `name{labels} value` or `name value`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let value = l.rsplit(' ').next().expect("value");
            assert!(value.parse::<f64>().is_ok(), "bad sample line {l:?}");
        }
    }
}
