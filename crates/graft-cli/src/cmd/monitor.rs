//! `graft monitor --run RUN`: the audit trail's traffic judged against the run's reference
//! profile; exit status 1 when a check alerts.

use anyhow::Context as _;
use graft_run::monitor::{judge, Failed, Observation, Thresholds};
use graft_run::monitor_compare::{compare, CompareThresholds, Scored};
use graft_run::monitor_field::{judge_field, FieldObservation};
use graft_run::{Precision, RunDir};
use graft_serve::audit::Arm;

use crate::cli::MonitorArgs;

pub fn run(args: MonitorArgs) -> anyhow::Result<()> {
    if args.compare {
        return compare_arms(&args);
    }
    let dir = RunDir::new(&args.run);
    let reference = match graft_run::files::read_json_if_exists(&dir.reference())? {
        Some(r) => r,
        None => {
            note!(
                "note: {} is missing (graft export writes it); building it from the training \
                 images now",
                dir.reference().display()
            );
            graft_run::reference::write(&dir)?
        }
    };
    let audit = args
        .audit
        .clone()
        .unwrap_or_else(|| args.run.join("audit.db"));
    let rows = graft_serve::audit::read(&audit, args.window)?;
    // The champion scored every request (the canary's in shadow).
    let traffic: Vec<Observation> = rows
        .iter()
        .filter(|r| r.arm == Arm::Champion)
        .map(|r| Observation {
            time_ms: r.time_ms,
            stats: r.stats,
            predicted: r.predicted.clone(),
            probability: f64::from(r.probability),
            confident: r.confident,
            latency_ms: r.latency_ms,
            embedding: r.embedding.clone(),
        })
        .collect();
    let failures: Vec<Failed> = graft_serve::audit::read_failures(&audit, args.window)?
        .iter()
        .map(|f| Failed {
            time_ms: f.time_ms,
            status: f.status,
        })
        .collect();
    let mut report = judge(&reference, &traffic, &failures, &Thresholds::default());
    // The web page's offline predictions, sent back by devices (`POST /feedback`).
    let field: Vec<FieldObservation> = graft_serve::audit::field::read(&audit, args.window)?
        .into_iter()
        .map(|r| FieldObservation {
            made_ms: r.prediction.made_ms,
            predicted: r.prediction.predicted,
            probability: f64::from(r.prediction.probability),
            confident: r.prediction.confident,
            sha256: r.prediction.sha256,
        })
        .collect();
    let exported: Vec<String> = [Precision::Fp32, Precision::Int8]
        .iter()
        .filter_map(|&p| graft_data::hash::sha256_file(&dir.onnx(p)).ok())
        .collect();
    judge_field(&mut report, &reference, &field, &exported);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join("monitor.json"));
    crate::output::write_file(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    let page = out.with_extension("html");
    let html =
        graft_run::monitor_page::render(&dir.name(), &report, &traffic, &failures, &reference);
    crate::output::write_file(&page, html)
        .with_context(|| format!("writing {}", page.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        say!(
            "{} requests{} in {} against {} training images",
            report.requests,
            if report.field_predictions > 0 {
                format!(
                    " and {} predictions made offline by the web page",
                    report.field_predictions
                )
            } else {
                String::new()
            },
            audit.display(),
            report.reference_images
        );
        let mut rows = vec![vec![
            "check".to_string(),
            "kind".into(),
            "value".into(),
            "".into(),
            "detail".into(),
        ]];
        for c in &report.checks {
            rows.push(vec![
                c.name.clone(),
                c.kind.to_string(),
                format!("{:.4}", c.value),
                if c.alert { "ALERT" } else { "ok" }.to_string(),
                c.detail.clone(),
            ]);
        }
        super::runs::print_table("  ", &rows);
        say!(
            "Report: {} (figures over time: {})",
            out.display(),
            page.display()
        );
        if report.requests < report.thresholds.min_requests {
            say!(
                "Fewer than {} requests: nothing is alerted on yet.",
                report.thresholds.min_requests
            );
        }
    }
    let alerts: Vec<&str> = report.alerts().map(|c| c.name.as_str()).collect();
    alerted(&alerts, &out, args.on_alert.as_deref())
}

/// Nothing alerted: Ok. Otherwise say which checks did, run `--on-alert`, and exit 1 (for cron).
fn alerted(alerts: &[&str], out: &std::path::Path, on_alert: Option<&str>) -> anyhow::Result<()> {
    if alerts.is_empty() {
        return Ok(());
    }
    note!("ALERT: {} (report: {})", alerts.join(", "), out.display());
    if let Some(cmd) = on_alert {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{cmd} \"$0\""))
            .arg(out)
            .status()
            .with_context(|| format!("running --on-alert {cmd:?}"))?;
        if !status.success() {
            note!("warning: --on-alert {cmd:?} exited with {status}");
        }
    }
    std::process::exit(1);
}

/// `graft monitor --compare`: the champion and its canary on the requests both scored.
fn compare_arms(args: &MonitorArgs) -> anyhow::Result<()> {
    let audit = args
        .audit
        .clone()
        .unwrap_or_else(|| args.run.join("audit.db"));
    let rows = graft_serve::audit::read(&audit, args.window)?;
    let scored = |arm: Arm| -> Vec<Scored> {
        rows.iter()
            .filter(|r| r.arm == arm)
            .map(|r| Scored {
                request_id: r.request_id.clone(),
                model: r.model.clone(),
                predicted: r.predicted.clone(),
                probability: f64::from(r.probability),
                confident: r.confident,
                answered: r.answered,
                latency_ms: r.latency_ms,
            })
            .collect()
    };
    let canary = scored(Arm::Canary);
    if canary.is_empty() {
        anyhow::bail!(
            "{} has no canary answers{}: serve with `graft serve --run {} --canary RUN2` first",
            audit.display(),
            args.window
                .map_or(String::new(), |_| " in the window".into()),
            args.run.display()
        );
    }
    let c = compare(
        &scored(Arm::Champion),
        &canary,
        &CompareThresholds::default(),
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.run.join("compare.json"));
    crate::output::write_file(&out, serde_json::to_string_pretty(&c)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        say!(
            "{} requests scored by both models in {}",
            c.shared,
            audit.display()
        );
        let mix = |s: &graft_run::monitor_compare::ArmSummary| {
            let mut top: Vec<(&String, &usize)> = s.class_mix.iter().collect();
            top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            top.iter()
                .take(3)
                .map(|(k, n)| format!("{k} {:.0} %", 100.0 * **n as f64 / c.shared.max(1) as f64))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut table = vec![vec![
            "".to_string(),
            "model".into(),
            "answered".into(),
            "P95 ms".into(),
            "mean conf.".into(),
            "low conf.".into(),
            "top classes (shared)".into(),
        ]];
        for (arm, s) in [("champion", &c.champion), ("canary", &c.canary)] {
            table.push(vec![
                arm.to_string(),
                s.model.clone(),
                s.answered.to_string(),
                format!("{:.1}", s.latency_p95_ms),
                format!("{:.3}", s.mean_confidence),
                format!("{:.1} %", 100.0 * s.low_confidence_rate),
                mix(s),
            ]);
        }
        super::runs::print_table("  ", &table);
        let mut checks = vec![vec![
            "check".to_string(),
            "value".into(),
            "".into(),
            "detail".into(),
        ]];
        for k in &c.checks {
            checks.push(vec![
                k.name.clone(),
                format!("{:.4}", k.value),
                if k.alert { "ALERT" } else { "ok" }.to_string(),
                k.detail.clone(),
            ]);
        }
        super::runs::print_table("  ", &checks);
        say!("Report: {}", out.display());
        if c.shared < c.thresholds.min_shared {
            say!(
                "Fewer than {} shared requests: nothing is alerted on yet.",
                c.thresholds.min_shared
            );
        }
    }
    let alerts: Vec<&str> = c.alerts().map(|k| k.name.as_str()).collect();
    alerted(&alerts, &out, args.on_alert.as_deref())
}
