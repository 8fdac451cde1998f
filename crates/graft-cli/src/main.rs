//! `graft`: from a folder of labelled photos to a trained, evaluated and served image classifier.
//!
//! The binary is thin: argument parsing, progress bars and printing live here; the work lives in
//! the library crates.

#[macro_use]
mod output;
mod cli;
mod cmd;
mod config;
mod progress;
mod registered;
mod served;
mod terminal;
mod tracked;

use clap::Parser;

fn main() -> std::process::ExitCode {
    quiet_on_closed_stdout();
    let cli = cli::Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    output::set_quiet(cli.quiet);
    graft_run::notes::set_sink(|text| note!("{text}"));
    if let Some(n) = cli.threads {
        // Only fails if a global pool already exists, which cannot happen this early.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global();
    }
    tracked::set(graft_run::Tracking {
        enabled: !cli.no_track,
        db: cli.tracking_db.clone(),
        system_every: std::time::Duration::from_secs_f64(
            cli.system_metrics_every.clamp(0.05, 3600.0),
        ),
        mlflow: cli.mlflow.clone().filter(|u| !u.trim().is_empty()),
    });
    match cmd::run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet {
        "error"
    } else {
        match verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_env("GRAFT_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// `graft runs show | head`: once the reader has gone, the next print to stdout fails with a
/// broken pipe and `println!` panics. Stop quietly instead, with the status a shell gives a
/// process killed by SIGPIPE (128 + 13), as other Unix tools do. (Restoring SIGPIPE's default
/// action would need `unsafe`, which this workspace denies.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
