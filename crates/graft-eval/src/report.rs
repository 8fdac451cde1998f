//! `report.html`: one self-contained page (figures embedded as data URIs, no scripts, no
//! network) that reads well in any browser and can be mailed around.

use crate::summary::Evaluation;

/// What the report shows besides the evaluation itself.
#[derive(Debug, Default)]
pub struct ReportInputs<'a> {
    pub run_name: &'a str,
    /// e.g. "mlp:256:0.2 on mobilenet-v2 features".
    pub model: &'a str,
    /// (label, value) lines for the "Run" table.
    pub facts: Vec<(String, String)>,
    /// Sweep table as header + rows, if the run came from a sweep.
    pub sweep: Option<(Vec<String>, Vec<Vec<String>>)>,
    /// (caption, PNG bytes).
    pub figures: Vec<(String, Vec<u8>)>,
    /// What `graft explain` found for this model, when it has run.
    pub explanations: Option<Explanations>,
    /// What `graft ablate` measured on this run's features, when it has run.
    pub ablations: Option<Section>,
    /// Nets trained from scratch (`graft baseline`) beside the transfer result.
    pub baselines: Option<Section>,
}

/// The report's "Explanations" section: a summary row per explained set and its figures.
pub type Explanations = Section;

/// A section of tables and figures another command wrote into the run.
#[derive(Debug, Default)]
pub struct Section {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// (caption, PNG bytes).
    pub figures: Vec<(String, Vec<u8>)>,
}

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Standard base64 with padding (RFC 4648), for the data URIs of embedded figures.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

pub fn render(eval: &Evaluation, inp: &ReportInputs<'_>) -> String {
    let mut h = String::new();
    h.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    h.push_str(&format!(
        "<title>graft report — {}</title>\n",
        html_escape(inp.run_name)
    ));
    h.push_str(
        "<style>
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7fb}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 10px}
.sub{color:#5b6477;margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px}
.card{background:#fff;border-radius:10px;padding:14px 16px;box-shadow:0 1px 3px #0001}
.card b{display:block;font-size:26px} .card span{color:#5b6477;font-size:13px}
table{border-collapse:collapse;background:#fff;border-radius:8px;overflow:hidden;box-shadow:0 1px 3px #0001;width:100%}
th,td{padding:6px 10px;text-align:right;border-bottom:1px solid #eef0f5} th{background:#eef1f8}
td:first-child,th:first-child{text-align:left}
tr.best td{font-weight:600;background:#f1f8ee}
.low{color:#b42318;font-weight:600}
figure{background:#fff;border-radius:10px;padding:12px;margin:0 0 16px;box-shadow:0 1px 3px #0001}
figure img{max-width:100%;height:auto} figcaption{color:#5b6477;font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px}
.grid figure:nth-child(n+3){grid-column:1/-1}
footer{color:#8a93a6;font-size:12px;margin-top:30px}
</style></head><body><main>\n",
    );
    h.push_str(&format!("<h1>{}</h1>\n", html_escape(inp.run_name)));
    h.push_str(&format!(
        "<p class=\"sub\">{} — {} split, {} images</p>\n",
        html_escape(inp.model),
        html_escape(&eval.split),
        eval.images
    ));
    h.push_str("<div class=\"cards\">\n");
    let mut card = |label: &str, value: String| {
        h.push_str(&format!(
            "<div class=\"card\"><b>{}</b><span>{}</span></div>\n",
            html_escape(&value),
            html_escape(label)
        ));
    };
    card("accuracy", pct(eval.accuracy));
    card("macro-F1", format!("{:.4}", eval.macro_f1));
    for (k, v) in &eval.top_k {
        card(&format!("top-{k} accuracy"), pct(*v));
    }
    card(
        "expected calibration error",
        format!("{:.3}", eval.calibration.ece),
    );
    if let Some(l) = &eval.latency {
        card(
            "latency per image, P50 / P95",
            format!("{:.1} / {:.1} ms", l.p50_ms, l.p95_ms),
        );
    }
    if let Some(b) = eval.model_bytes {
        card("model size", format!("{:.1} MB", b as f64 / 1e6));
    }
    h.push_str("</div>\n");

    if !inp.facts.is_empty() {
        h.push_str("<h2>Run</h2>\n<table>\n");
        for (k, v) in &inp.facts {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>\n",
                html_escape(k),
                html_escape(v)
            ));
        }
        h.push_str("</table>\n");
    }

    h.push_str("<h2>Per class</h2>\n<table>\n<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th><th>predicted</th></tr>\n");
    let worst_f1 = eval
        .per_class
        .iter()
        .filter(|c| c.metrics.support > 0)
        .map(|c| c.metrics.f1)
        .fold(f64::INFINITY, f64::min);
    for c in &eval.per_class {
        let m = &c.metrics;
        let class = if m.support > 0 && m.f1 == worst_f1 {
            " class=\"low\""
        } else {
            ""
        };
        h.push_str(&format!(
            "<tr><td{class}>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>\n",
            html_escape(&c.class),
            m.precision,
            m.recall,
            m.f1,
            m.support,
            m.predicted
        ));
    }
    h.push_str("</table>\n");

    if let Some((head, rows)) = &inp.sweep {
        h.push_str("<h2>Sweep</h2>\n<table>\n<tr>");
        for c in head {
            h.push_str(&format!("<th>{}</th>", html_escape(c)));
        }
        h.push_str("</tr>\n");
        for r in rows {
            let best = r.first().is_some_and(|c| c.starts_with('★'));
            h.push_str(if best { "<tr class=\"best\">" } else { "<tr>" });
            for c in r {
                h.push_str(&format!("<td>{}</td>", html_escape(c)));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }

    if !inp.figures.is_empty() {
        h.push_str("<h2>Figures</h2>\n");
        figures(&mut h, &inp.figures);
    }
    if let Some(x) = &inp.explanations {
        h.push_str("<h2>Explanations</h2>\n");
        h.push_str(
            "<p>Where the model looked (<code>graft explain</code>), and whether that holds up: \
             confidence drop when the hot region is hidden, concentration, deletion AUC (lower \
             is better) and insertion AUC (higher is better). Suspicious maps failed a \
             threshold; <code>graft explain query FILE --suspicious</code> lists them.</p>\n",
        );
        table(&mut h, &x.header, &x.rows);
        figures(&mut h, &x.figures);
    }
    if let Some(x) = &inp.ablations {
        h.push_str("<h2>Ablations</h2>\n");
        h.push_str(
            "<p>Head settings varied one matrix at a time (<code>graft ablate</code>), each cell \
             trained with several seeds: mean ± 95% confidence interval, and the paired \
             difference from the reference row (the first) with its t-test p-value.</p>\n",
        );
        table(&mut h, &x.header, &x.rows);
        figures(&mut h, &x.figures);
    }
    if let Some(x) = &inp.baselines {
        h.push_str("<h2>Baselines</h2>\n");
        h.push_str(
            "<p>Nets trained from scratch on the images themselves (<code>graft baseline</code>), \
             with the run's split and scored on the same images as the frozen encoder's head: \
             whether the pretrained features earn their keep on this data.</p>\n",
        );
        table(&mut h, &x.header, &x.rows);
        figures(&mut h, &x.figures);
    }
    h.push_str(&format!(
        "<footer>graft {} — generated locally; this file has no external references.</footer>\n",
        env!("CARGO_PKG_VERSION")
    ));
    h.push_str("</main></body></html>\n");
    h
}

/// A grid of embedded PNGs with captions.
fn figures(h: &mut String, figures: &[(String, Vec<u8>)]) {
    h.push_str("<div class=\"grid\">\n");
    for (caption, png) in figures {
        h.push_str(&format!(
            "<figure><img alt=\"{0}\" src=\"data:image/png;base64,{1}\"><figcaption>{0}</figcaption></figure>\n",
            html_escape(caption),
            base64(png)
        ));
    }
    h.push_str("</div>\n");
}

/// A plain table: header cells, then rows.
fn table(h: &mut String, header: &[String], rows: &[Vec<String>]) {
    h.push_str("<table>\n<tr>");
    for c in header {
        h.push_str(&format!("<th>{}</th>", html_escape(c)));
    }
    h.push_str("</tr>\n");
    for r in rows {
        h.push_str("<tr>");
        for c in r {
            h.push_str(&format!("<td>{}</td>", html_escape(c)));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn report_escapes_and_embeds() {
        let classes: Vec<String> = vec!["<cat>".into(), "dog".into()];
        let (e, _) = crate::summarise("test", &[0.9, 0.1, 0.2, 0.8], &[0, 1], &classes);
        let html = render(
            &e,
            &ReportInputs {
                run_name: "r&d",
                model: "linear",
                figures: vec![("fig".into(), vec![1, 2, 3])],
                ..Default::default()
            },
        );
        assert!(html.contains("&lt;cat&gt;") && !html.contains("<cat>"));
        assert!(html.contains("r&amp;d"));
        assert!(html.contains("data:image/png;base64,AQID"));
        assert!(html.contains("100.00%"));
        assert!(!html.contains("Explanations"));
        let html = render(
            &e,
            &ReportInputs {
                explanations: Some(Explanations {
                    header: vec!["set".into(), "images".into()],
                    rows: vec![vec!["misclassified".into(), "<3>".into()]],
                    figures: vec![("true cat".into(), vec![4, 5, 6])],
                }),
                ..Default::default()
            },
        );
        assert!(html.contains("<h2>Explanations</h2>") && html.contains("&lt;3&gt;"));
        assert!(html.contains("BAUG") && html.contains("true cat"));
    }
}
