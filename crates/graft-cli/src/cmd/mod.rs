//! One module per subcommand; each turns parsed arguments into library calls and output.

mod ablate;
mod audit;
mod augment;
mod baseline;
mod bench;
mod cluster;
mod diff;
mod eval;
mod explain;
mod export;
mod extract;
mod finetune;
pub mod import_idx;
mod lr_find;
mod models;
mod monitor;
mod pipeline;
mod predict;
mod registry;
mod runs;
mod serve;
mod split;
mod sync;
mod trail;
mod train_heads;
pub(crate) mod tune;

use crate::cli::{BenchCommand, Command, DataCommand, ModelsCommand, RunsCommand, TrainCommand};

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Data(DataCommand::Audit(a)) => audit::run(a),
        Command::Data(DataCommand::Augment(a)) => augment::run(a),
        Command::Data(DataCommand::Split(a)) => split::run(a),
        Command::Data(DataCommand::Diff(a)) => diff::run(a),
        Command::Data(DataCommand::ImportIdx(a)) => import_idx::run(a),
        Command::Extract(a) => extract::run(a),
        Command::Finetune(a) => finetune::run(*a),
        Command::Eval(a) => eval::run(a),
        Command::Explain(a) => explain::run(*a),
        Command::LrFind(a) => lr_find::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Ablate(a) => ablate::run(a),
        Command::Baseline(a) => baseline::run(*a),
        Command::Cluster(c) => cluster::run(c),
        Command::Export(a) => export::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Train(t) => match t.command {
            Some(TrainCommand::Heads(a)) => train_heads::run(a),
            None => pipeline::run(t.pipeline),
        },
        Command::Runs(RunsCommand::List(a)) => runs::list(a),
        Command::Runs(RunsCommand::Show(a)) => runs::show(a),
        Command::Runs(RunsCommand::Compare(a)) => runs::compare_runs(a),
        Command::Runs(RunsCommand::Delete(a)) => runs::delete(a),
        Command::Runs(RunsCommand::Sync(a)) => sync::run(a),
        Command::Registry(c) => registry::run(c),
        Command::Audit(crate::cli::AuditCommand::Export(a)) => trail::export(a),
        Command::Monitor(a) => monitor::run(a),
        Command::Models(ModelsCommand::List) => models::list(),
        Command::Models(ModelsCommand::Fetch(a)) => models::fetch(a),
        Command::Models(ModelsCommand::Import(a)) => models::import(a),
        Command::Models(ModelsCommand::Inspect(a)) => models::inspect(a),
        Command::Models(ModelsCommand::Predict(a)) => models::predict(a),
        Command::Bench(BenchCommand::Audit(a)) => bench::audit(a),
        Command::Bench(BenchCommand::Extract(a)) => bench::extract(a),
        Command::Bench(BenchCommand::Heads(a)) => bench::heads(a),
        Command::Bench(BenchCommand::Finetune(a)) => bench::finetune(a),
        Command::Bench(BenchCommand::Serve(a)) => bench::serve(a),
        Command::Bench(BenchCommand::Tracking(a)) => bench::tracking(a),
        Command::Bench(BenchCommand::Explain(a)) => bench::explain(a),
        Command::Bench(BenchCommand::Tune(a)) => bench::tune(a),
    }
}

/// Peak resident set size of this process so far (Linux; 0 elsewhere).
pub(crate) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}
