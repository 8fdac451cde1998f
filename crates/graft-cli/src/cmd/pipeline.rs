//! `graft train DIR`: every stage of a run (graft-run's pipeline), then the lines users look
//! for — best head, test metrics, what to do next.

use graft_run::files::read_json;
use graft_run::tracking::params_of;
use graft_run::{Job, RunDir};

use crate::cli::PipelineArgs;
use crate::config::{Config, Resolve};
use crate::terminal::Terminal;
use crate::tracked::tracked;

pub fn run(args: PipelineArgs) -> anyhow::Result<()> {
    let cfg = Config::resolve(&args)?;
    let train = || Ok(graft_run::pipeline::train(&cfg, &Terminal)?);
    // A folder that is not there fails before any run exists: nothing to record, and
    // train() gives the error.
    let trained = match graft_run::pipeline::run_dir(&cfg) {
        Ok(run) => tracked(Job::Train, &run, params_of(&cfg), train)?,
        Err(_) => train()?,
    };
    let run = &trained.run;
    print_result(run)?;
    let report = run.report();
    if report.is_file() {
        say!(
            "Done in {:.1} s. Report: {}",
            trained.seconds,
            report.display()
        );
    } else {
        say!("Done in {:.1} s.", trained.seconds);
    }
    let r = run.root().display();
    say!("Next:");
    say!("  graft predict --run {r} photo.jpg");
    say!("  graft serve --run {r}          # web page + API on http://127.0.0.1:8080");
    say!("  graft export --run {r}         # one validated ONNX file");
    say!(
        "  graft train --config {}   # reproduce",
        trained.config.display()
    );
    Ok(())
}

/// The last lines users look for: best head and test metrics.
fn print_result(run: &RunDir) -> anyhow::Result<()> {
    let m: graft_run::Metrics = read_json(&run.metrics())?;
    say!(
        "Best head: {} (lr {}), val macro-F1 {:.4}",
        m.best.head,
        m.best.lr,
        m.best.val_macro_f1
    );
    if let Some(e) = m.headline_eval() {
        say!(
            "{} split: accuracy {:.4}, macro-F1 {:.4} on {} images",
            e.split,
            e.accuracy,
            e.macro_f1,
            e.images
        );
    }
    Ok(())
}
