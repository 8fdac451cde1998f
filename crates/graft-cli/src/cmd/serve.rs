//! `graft serve --run RUN`: the run's classifier behind an HTTP API and a web page.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use graft_serve::batcher::BatchConfig;
use graft_serve::ServeOptions;

use crate::cli::ServeArgs;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.threshold) {
        bail!("--threshold must be between 0 and 1");
    }
    if args.top == 0 || args.batch == 0 || args.max_batch_images == 0 {
        bail!("--top, --batch and --max-batch-images must be at least 1");
    }
    let host: IpAddr = args.host.parse().with_context(|| {
        format!(
            "--host {:?} is not an IP address (127.0.0.1 for this machine only, 0.0.0.0 for all)",
            args.host
        )
    })?;
    let (run, registered) = match (&args.run, &args.model) {
        (Some(run), _) => (run.clone(), None),
        (None, Some(spec)) => {
            let (run, registered) = crate::registered::locate(spec, &args.runs)?;
            (run, Some(registered))
        }
        (None, None) => bail!("give --run DIR or --model NAME@ALIAS"),
    };
    let model = crate::served::head_model(&run)?;
    let mut served =
        crate::served::served_model(&run, &model, args.classes_info.as_deref(), args.precision)?;
    if let Some(r) = &registered {
        served.name = format!("{}@{}", r.name, r.alias.as_deref().unwrap_or(&r.version));
    }
    served.registered = registered;
    let explain = match crate::served::explainer(&run, &model) {
        Ok((graph, settings)) => {
            served.explainer = Some(graph);
            Some(settings)
        }
        Err(e) => {
            note!("note: POST /explain is off: {e:#}");
            None
        }
    };
    let canary = match &args.canary {
        Some(dir) => {
            let model = crate::served::load_model(dir, None, args.precision)
                .with_context(|| format!("loading the canary --canary {}", dir.display()))?;
            graft_serve::canary::check_classes(&served, &model).map_err(anyhow::Error::msg)?;
            Some(graft_serve::Canary {
                model,
                share: args.canary_share,
            })
        }
        None => None,
    };
    let canary_note = canary.as_ref().map(|c| {
        format!(
            "  canary    {} answers {} % of the clients; the champion scores them too",
            c.model.name, c.share
        )
    });
    let drift = drift_reference(&run, &served.classes);
    let opts = ServeOptions {
        addr: SocketAddr::new(host, args.port),
        threshold: args.threshold,
        top: args.top,
        api_keys: args.api_keys.clone(),
        rate_limit: (args.rate_limit > 0).then_some(args.rate_limit),
        max_body: args.max_body_mb << 20,
        max_pixels: args.max_megapixels * 1_000_000,
        max_batch_images: args.max_batch_images,
        timeout: Duration::from_secs(args.timeout.max(1)),
        cors_origins: args.cors_origins.clone(),
        batch: BatchConfig {
            max_batch: args.batch,
            max_wait: Duration::from_millis(args.batch_wait_ms),
            ..BatchConfig::default()
        },
        workers: args.workers,
        threads: Some(rayon::current_num_threads()),
        audit: (!args.no_audit).then(|| graft_serve::audit::AuditOptions {
            path: args.audit.clone().unwrap_or_else(|| run.join("audit.db")),
            keep: args.audit_keep,
        }),
        drift,
        explain: explain.unwrap_or_default(),
        web: args.web.clone(),
    };
    let audit_note = opts
        .audit
        .as_ref()
        .map_or("no audit trail".to_string(), |a| {
            format!("audit trail {}", a.path.display())
        });
    let keyed = opts.api_keys.iter().any(|k| !k.is_empty());
    if !host.is_loopback() && !keyed {
        note!(
            "note: listening on {host} without an API key: anyone who can reach this machine \
             can use the model (--api-key KEY to require one)"
        );
    }
    let auth = if keyed {
        "API key required"
    } else {
        "no API key"
    };
    let limit = opts
        .rate_limit
        .map_or("no rate limit".to_string(), |n| format!("{n} requests/min"));
    let explaining = served.explainer.is_some();
    let name = served.name.clone();
    let origin = served.onnx_origin.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(graft_serve::serve(
        served,
        canary,
        opts,
        |addr| {
            say!("Serving {name} ({origin}; {auth}; {limit})");
            say!("  web page  http://{addr}/");
            say!("  API       POST http://{addr}/predict   (graft serve --help lists all)");
            if explaining {
                say!("            POST http://{addr}/explain   (where the model looked)");
            }
            if let Some(c) = &canary_note {
                say!("{c}");
            }
            say!("  {audit_note}");
            say!("Ctrl-C stops after the requests in flight.");
            let _ = std::io::stdout().flush();
        },
        shutdown_signal(),
    ))?;
    say!("Stopped.");
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    note!("Shutting down…");
}

/// The drift gauges' reference, from RUN/reference.json when the run has one (graft train and
/// graft export write it); without it `/metrics` has no drift gauges.
fn drift_reference(
    run: &std::path::Path,
    classes: &[String],
) -> Option<graft_serve::live_drift::DriftReference> {
    let path = graft_run::RunDir::new(run).reference();
    match graft_run::files::read_json_if_exists::<graft_run::reference::Reference>(&path) {
        Ok(Some(r)) => Some(graft_serve::live_drift::DriftReference {
            class_prior: classes
                .iter()
                .map(|c| r.class_prior.get(c).copied().unwrap_or(0.0))
                .collect(),
            images: r.images,
        }),
        Ok(None) => {
            note!(
                "note: {} is missing, so /metrics has no drift gauges (graft export writes it)",
                path.display()
            );
            None
        }
        Err(e) => {
            note!("note: no drift gauges in /metrics: {e}");
            None
        }
    }
}
