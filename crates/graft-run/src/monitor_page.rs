//! `monitor.html`: `graft monitor`'s report as one self-contained page — the checks (alerts
//! first, in red) and the window's traffic over time: requests, mean confidence against
//! validation's, the low-confidence share, brightness against the training range, latency P95
//! and the server error rate, per time bucket.

use graft_eval::report::{base64, html_escape};
use graft_eval::timeline::{timeline_png, Panel};

use crate::monitor::{Failed, Observation, Report};
use crate::reference::Reference;

/// Time buckets the window is cut into.
const BUCKETS: usize = 24;

/// One bucket's traffic.
#[derive(Debug, Clone, Default, PartialEq)]
struct Bucket {
    answered: usize,
    failed_server: usize,
    confidence: f64,
    low: usize,
    brightness: f64,
    latency: Vec<f64>,
}

/// The traffic cut into [`BUCKETS`] equal spans of time; with the window's span in minutes.
fn buckets(traffic: &[Observation], failures: &[Failed]) -> (Vec<(f64, Bucket)>, f64) {
    let times = traffic
        .iter()
        .map(|o| o.time_ms)
        .chain(failures.iter().map(|f| f.time_ms));
    let (first, last) = times.fold((i64::MAX, i64::MIN), |(a, b), t| (a.min(t), b.max(t)));
    if first > last {
        return (Vec::new(), 0.0);
    }
    let span = (last - first).max(1) as f64;
    let at = |t: i64| (((t - first) as f64 / span * BUCKETS as f64) as usize).min(BUCKETS - 1);
    let mut b = vec![Bucket::default(); BUCKETS];
    for o in traffic {
        let k = &mut b[at(o.time_ms)];
        k.answered += 1;
        k.confidence += o.probability;
        k.low += usize::from(!o.confident);
        k.brightness += f64::from(o.stats.brightness);
        k.latency.push(o.latency_ms);
    }
    for f in failures.iter().filter(|f| f.status >= 500) {
        b[at(f.time_ms)].failed_server += 1;
    }
    let minutes = span / 60_000.0;
    let width = minutes / BUCKETS as f64;
    let out = b
        .into_iter()
        .enumerate()
        .filter(|(_, k)| k.answered + k.failed_server > 0)
        .map(|(i, k)| (i as f64 * width, k))
        .collect();
    (out, minutes)
}

/// The training images' 5th and 95th brightness percentiles.
fn brightness_band(reference: &Reference) -> Option<(f64, f64)> {
    let mut v: Vec<f64> = reference
        .images
        .iter()
        .map(|s| f64::from(s.brightness))
        .collect();
    if v.is_empty() {
        return None;
    }
    let lo = graft_eval::percentile(&mut v, 0.05);
    let hi = graft_eval::percentile(&mut v, 0.95);
    Some((lo, hi))
}

/// The figure's panels.
fn panels(buckets: &[(f64, Bucket)], reference: &Reference) -> Vec<Panel> {
    let series = |f: &dyn Fn(&Bucket) -> Option<f64>| -> Vec<(f64, f64)> {
        buckets
            .iter()
            .filter_map(|(t, b)| f(b).map(|v| (*t, v)))
            .collect()
    };
    let answered = |b: &Bucket| (b.answered > 0).then_some(b.answered as f64);
    vec![
        Panel {
            title: "requests per bucket".into(),
            points: series(&|b| Some((b.answered + b.failed_server) as f64)),
            reference: None,
            band: None,
        },
        Panel {
            title: "mean confidence (dashed: validation)".into(),
            points: series(&|b| answered(b).map(|n| b.confidence / n)),
            reference: reference.val_mean_confidence,
            band: None,
        },
        Panel {
            title: "low-confidence share (dashed: 30 % alert)".into(),
            points: series(&|b| answered(b).map(|n| b.low as f64 / n)),
            reference: Some(0.30),
            band: None,
        },
        Panel {
            title: "brightness (band: training 5–95 %)".into(),
            points: series(&|b| answered(b).map(|n| b.brightness / n)),
            reference: None,
            band: brightness_band(reference),
        },
        Panel {
            title: "latency P95, ms".into(),
            points: series(&|b| {
                let mut l = b.latency.clone();
                (!l.is_empty()).then(|| graft_eval::percentile(&mut l, 0.95))
            }),
            reference: None,
            band: None,
        },
        Panel {
            title: "server error rate (dashed: 5 % alert)".into(),
            points: series(&|b| {
                let asked = b.answered + b.failed_server;
                (asked > 0).then(|| b.failed_server as f64 / asked as f64)
            }),
            reference: Some(0.05),
            band: None,
        },
    ]
}

/// The page for `report` over `traffic` and `failures`, judged against `reference`.
pub fn render(
    title: &str,
    report: &Report,
    traffic: &[Observation],
    failures: &[Failed],
    reference: &Reference,
) -> String {
    let (b, minutes) = buckets(traffic, failures);
    let figure = match timeline_png(&panels(&b, reference), minutes) {
        Ok(png) => format!(
            "<img alt=\"traffic over time\" src=\"data:image/png;base64,{}\">",
            base64(&png)
        ),
        Err(e) => format!("<p>(no figure: {})</p>", html_escape(&e.to_string())),
    };
    let alerts: Vec<&str> = report.alerts().map(|c| c.name.as_str()).collect();
    let verdict = if alerts.is_empty() {
        "<p class=\"ok\">Healthy: no check alerts.</p>".to_string()
    } else {
        format!(
            "<p class=\"alert\">ALERT: {}</p>",
            html_escape(&alerts.join(", "))
        )
    };
    let mut checks: Vec<_> = report.checks.iter().collect();
    // Alerts first, then in the report's order.
    checks.sort_by_key(|c| !c.alert);
    let rows: String = checks
        .iter()
        .map(|c| {
            format!(
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td></tr>\n",
                if c.alert { "alert" } else { "ok" },
                html_escape(&c.name),
                c.kind,
                c.value,
                if c.alert { "ALERT" } else { "ok" },
                html_escape(&c.detail)
            )
        })
        .collect();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>graft monitor — {t}</title>\n<style>\n\
         body{{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}}\n\
         table{{border-collapse:collapse;width:100%}} td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}\n\
         tr.alert td{{color:#b00020;font-weight:600}} p.alert{{color:#b00020;font-weight:700}} p.ok{{color:#2e7d32;font-weight:700}}\n\
         img{{max-width:100%}}\n</style></head><body>\n\
         <h1>graft monitor — {t}</h1>\n\
         <p>{n} answered requests ({f} failed) against {r} training images.</p>\n{verdict}\n\
         <h2>Checks</h2>\n<table><tr><th>check</th><th>kind</th><th>value</th><th></th><th>detail</th></tr>\n{rows}</table>\n\
         <h2>Over time</h2>\n<p>The window ({minutes:.1} minutes) in {BUCKETS} buckets.</p>\n{figure}\n\
         </body></html>\n",
        t = html_escape(title),
        n = report.requests,
        f = failures.len(),
        r = report.reference_images,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use graft_data::image_stats::ImageStats;
    use std::collections::BTreeMap;

    #[test]
    fn buckets_split_the_window_and_the_page_names_the_alerts() {
        let traffic: Vec<Observation> = (0..100)
            .map(|i| Observation {
                time_ms: 1_000_000 + i * 6_000,
                stats: ImageStats::default(),
                predicted: "a".into(),
                probability: 0.9,
                confident: i % 4 != 0,
                latency_ms: 5.0,
                embedding: None,
            })
            .collect();
        let failures = [Failed {
            time_ms: 1_000_000,
            status: 503,
        }];
        let (b, minutes) = buckets(&traffic, &failures);
        assert!((minutes - 9.9).abs() < 1e-9, "{minutes}");
        assert_eq!(b.iter().map(|(_, k)| k.answered).sum::<usize>(), 100);
        assert_eq!(b[0].1.failed_server, 1);
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0));
        let reference = Reference {
            images: vec![ImageStats::default(); 10],
            class_prior: BTreeMap::from([("a".to_string(), 0.5), ("b".to_string(), 0.5)]),
            val_mean_confidence: Some(0.9),
            val_images: 10,
            embeddings: None,
        };
        let report = crate::monitor::judge(
            &reference,
            &traffic,
            &failures,
            &crate::monitor::Thresholds::default(),
        );
        let page = render("demo <run>", &report, &traffic, &failures, &reference);
        assert!(page.contains("ALERT: class_mix"), "{page}");
        assert!(page.contains("demo &lt;run&gt;"));
        assert!(page.contains("data:image/png;base64,"));
    }
}
