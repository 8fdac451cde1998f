//! Counters for `GET /metrics`, rendered in the Prometheus text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use crate::batcher::BatchStats;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    predictions: Vec<u64>,
    low_confidence: u64,
}

#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
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
            inner: Mutex::new(Inner {
                predictions: vec![0; classes],
                ..Inner::default()
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock cannot corrupt plain counters: keep counting.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// One finished request. `route` is the matched route (or "other"), never the raw path, so
    /// random paths cannot blow up the number of series.
    pub fn request(&self, route: &str, status: u16, elapsed: Duration) {
        self.with(|m| {
            *m.requests.entry((route.to_owned(), status)).or_default() += 1;
            let h = m.latency.entry(route.to_owned()).or_default();
            let s = elapsed.as_secs_f64();
            for (i, &b) in BUCKETS.iter().enumerate() {
                if s <= b {
                    h.counts[i] += 1;
                }
            }
            h.sum += s;
            h.count += 1;
        });
    }

    /// One answered image: its top-1 class and whether it cleared the threshold.
    pub fn prediction(&self, class: usize, confident: bool) {
        self.with(|m| {
            if let Some(c) = m.predictions.get_mut(class) {
                *c += 1;
            }
            if !confident {
                m.low_confidence += 1;
            }
        });
    }

    pub fn render(
        &self,
        classes: &[String],
        batches: &BatchStats,
        model: &ModelLabels<'_>,
        uptime: Duration,
    ) -> String {
        let m = self.with(|m| {
            (
                m.requests.clone(),
                m.latency.clone(),
                m.predictions.clone(),
                m.low_confidence,
            )
        });
        let (requests, latency, predictions, low) = m;
        let mut s = String::new();
        family(
            &mut s,
            "graft_model_info",
            "gauge",
            "The model being served.",
        );
        let _ = writeln!(
            s,
            "graft_model_info{{run=\"{}\",sha256=\"{}\",encoder=\"{}\"}} 1",
            esc(model.run),
            esc(model.sha256),
            esc(model.encoder)
        );
        scalar(
            &mut s,
            "graft_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            format!("{:.3}", uptime.as_secs_f64()),
        );

        family(
            &mut s,
            "graft_http_requests_total",
            "counter",
            "HTTP requests by route and status.",
        );
        for ((route, status), n) in &requests {
            let _ = writeln!(
                s,
                "graft_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                esc(route)
            );
        }
        let hist = "graft_http_request_duration_seconds";
        family(
            &mut s,
            hist,
            "histogram",
            "Time from request to response, by route.",
        );
        for (route, h) in &latency {
            let r = esc(route);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "{hist}_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(s, "{hist}_bucket{{route=\"{r}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(s, "{hist}_sum{{route=\"{r}\"}} {}", h.sum);
            let _ = writeln!(s, "{hist}_count{{route=\"{r}\"}} {}", h.count);
        }

        family(
            &mut s,
            "graft_predictions_total",
            "counter",
            "Answered images by top-1 class.",
        );
        for (class, n) in classes.iter().zip(&predictions) {
            let _ = writeln!(s, "graft_predictions_total{{class=\"{}\"}} {n}", esc(class));
        }
        scalar(
            &mut s,
            "graft_low_confidence_total",
            "counter",
            "Answered images whose top-1 probability was below the threshold.",
            low.to_string(),
        );
        let total: u64 = predictions.iter().sum();
        let ratio = if total == 0 {
            0.0
        } else {
            low as f64 / total as f64
        };
        scalar(
            &mut s,
            "graft_low_confidence_ratio",
            "gauge",
            "Share of answered images below the threshold.",
            format!("{ratio:.6}"),
        );
        scalar(
            &mut s,
            "graft_inference_batches_total",
            "counter",
            "Model runs.",
            batches.batches.load(Ordering::Relaxed).to_string(),
        );
        scalar(
            &mut s,
            "graft_inference_images_total",
            "counter",
            "Images through the model (÷ batches = mean batch size).",
            batches.images.load(Ordering::Relaxed).to_string(),
        );
        scalar(
            &mut s,
            "graft_inference_seconds_total",
            "counter",
            "Time spent in the model.",
            format!(
                "{:.6}",
                batches.busy_us.load(Ordering::Relaxed) as f64 / 1e6
            ),
        );
        s
    }
}

/// The `# HELP` and `# TYPE` lines that open a metric family.
fn family(s: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(s, "# HELP {name} {help}");
    let _ = writeln!(s, "# TYPE {name} {kind}");
}

/// A family with one unlabelled sample.
fn scalar(s: &mut String, name: &str, kind: &str, help: &str, value: String) {
    family(s, name, kind, help);
    let _ = writeln!(s, "{name} {value}");
}

/// Escape a label value (backslash, double quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        m.prediction(0, true);
        m.prediction(1, false);
        m.prediction(1, true);
        m.prediction(1, true);
        let stats = BatchStats::default();
        stats.batches.store(3, Ordering::Relaxed);
        stats.images.store(4, Ordering::Relaxed);
        let classes = vec!["a\"b".to_string(), "c".to_string()];
        let model = ModelLabels {
            run: "r",
            sha256: "ab",
            encoder: "mobilenet-v2",
        };
        let text = m.render(&classes, &stats, &model, Duration::from_secs(2));
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
