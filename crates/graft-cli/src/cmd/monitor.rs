//! `graft monitor --run RUN`: the audit trail's traffic judged against the run's reference
//! profile; exit status 1 when a check alerts.

use anyhow::Context as _;
use graft_run::monitor::{judge, Failed, Observation, Thresholds};
use graft_run::RunDir;

use crate::cli::MonitorArgs;

pub fn run(args: MonitorArgs) -> anyhow::Result<()> {
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
    let traffic: Vec<Observation> = rows
        .iter()
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
    let report = judge(&reference, &traffic, &failures, &Thresholds::default());
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
            "{} requests in {} against {} training images",
            report.requests,
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
    if alerts.is_empty() {
        return Ok(());
    }
    note!("ALERT: {} (report: {})", alerts.join(", "), out.display());
    if let Some(cmd) = &args.on_alert {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{cmd} \"$0\""))
            .arg(&out)
            .status()
            .with_context(|| format!("running --on-alert {cmd:?}"))?;
        if !status.success() {
            note!("warning: --on-alert {cmd:?} exited with {status}");
        }
    }
    // For cron: 1 means drift or an alert.
    std::process::exit(1);
}
