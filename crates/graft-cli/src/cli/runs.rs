//! Arguments of `graft runs`: the tracking store's runs.

use std::path::PathBuf;

use clap::{Args, Subcommand};

pub const RUNS_HELP: &str = "\
Every graft train, train heads, finetune, eval and export is recorded in RUNS/graft.db
(SQLite, beside the run folders): its experiment (<dataset>-training, -evaluation, -export),
parameters, per-epoch and final metrics, system metrics sampled every 5 s (CPU, memory, disk
I/O, NVIDIA GPUs), the files it wrote with their SHA-256, the dataset hash and the graft
version. A run killed mid-way shows as killed. --no-track (or GRAFT_NO_TRACK=1) records
nothing; --tracking-db FILE (or GRAFT_TRACKING_DB) uses another store.

With --mlflow URI (or MLFLOW_TRACKING_URI, as MLflow's own tools read it) each run is also
sent to that MLflow server while it runs: parameters, tags, step metrics, system metrics
(under MLflow's system/ names) and the run's files, through its REST API and artifact proxy.
A server that is down or failing never stops or slows the run: one warning, the run stays in
graft.db, and `graft runs sync` sends whatever the server lacks, never anything twice.

Examples:
  graft runs list
  graft runs list --experiment demo-training --sort test_accuracy --limit 5
  graft runs list --param heads.seed=42 --status finished --json
  graft runs show 3f2a9c
  graft runs compare 3f2a9c 81d0e4 --metric val_macro_f1 --metric train_loss
  graft runs delete 3f2a9c
  graft runs sync --mlflow http://127.0.0.1:5000

Ids may be shortened to any unique prefix, as with git.";

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Runs recorded in the store, newest first (or sorted by a metric).
    List(RunsListArgs),
    /// Everything recorded for one run: parameters, final metrics, system metrics, files.
    Show(RunsShowArgs),
    /// The parameters and metrics that differ between runs, and their learning curves as a PNG.
    Compare(RunsCompareArgs),
    /// Remove runs from the store (their folders stay).
    Delete(RunsDeleteArgs),
    /// Send the MLflow server (--mlflow or MLFLOW_TRACKING_URI) what it lacks of every run.
    Sync(RunsSyncArgs),
}

/// Where the store is.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The runs folder whose graft.db to read.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub runs: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunsListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this experiment (e.g. demo-training).
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// Only runs with this status: running, finished, failed or killed.
    #[arg(long)]
    pub status: Option<graft_track::Status>,
    /// Only runs with this parameter value (repeat for several).
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    pub param: Vec<(String, String)>,
    /// Only runs on this dataset (its hash, or the first characters of it).
    #[arg(long, value_name = "HASH")]
    pub dataset: Option<String>,
    /// Sort by this metric's final value, highest first (e.g. test_accuracy).
    #[arg(long, value_name = "METRIC")]
    pub sort: Option<String>,
    /// With --sort: lowest first (for losses and latencies).
    #[arg(long, requires = "sort")]
    pub ascending: bool,
    /// At most this many runs.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsShowArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The run's id (or a unique prefix).
    pub id: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsCompareArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Two or more run ids (or unique prefixes).
    #[arg(required = true, num_args = 2..)]
    pub ids: Vec<String>,
    /// Step metrics drawn as learning curves, a panel each (default: val_macro_f1 and
    /// train_loss).
    #[arg(long, value_name = "METRIC")]
    pub metric: Vec<String>,
    /// Where the curves PNG goes (default: RUNS/compare-<id>-<id>….png).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunsDeleteArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Run ids (or unique prefixes).
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunsSyncArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only these runs (ids or unique prefixes; default: every run the server lacks).
    pub ids: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE (e.g. heads.seed=42)"))
}
