//! Arguments of `graft registry`: named models, numbered versions and aliases.

use clap::{Args, Subcommand};

use super::StoreArgs;

pub const REGISTRY_HELP: &str = "\
The model registry lives in RUNS/graft.db beside the runs. A version is a run's exported model
(model.onnx) with the run id, dataset hash, config, final metrics, the ONNX file's SHA-256 and
the model card. Aliases (champion, challenger, any name) point at versions; graft serve
--model NAME@champion serves the version an alias points at.

promote moves champion only when the candidate beats the current champion on the same test
images: both score every test image, and McNemar's exact test on the images only one of them
gets right must favour the candidate (one-sided p below --alpha, 0.05 by default). --force
promotes anyway, and the registry records that it was forced. rollback moves champion back to
the version that held it before.

With --mlflow URI (or MLFLOW_TRACKING_URI) every change is mirrored to MLflow's model
registry (versions with their run, aliases as MLflow's aliases); when the server is down the
change is kept here and `graft runs sync` sends it.

Examples:
  graft export --run runs/leaves && graft registry register runs/leaves --name leaves
  graft registry alias leaves 1 challenger
  graft registry promote leaves 2
  graft registry rollback leaves
  graft registry show leaves
  graft serve --model leaves@champion";

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Register a run's exported model as the next version of a named model.
    Register(RegisterArgs),
    /// Point an alias (challenger, staging, any name) at a version.
    Alias(AliasArgs),
    /// Make a version the champion, if it beats the current one on the same test set.
    Promote(PromoteArgs),
    /// Move champion back to the version that held it before.
    Rollback(RollbackArgs),
    /// Registered models, their versions and aliases.
    List(RegistryListArgs),
    /// One model: every version, its metrics and aliases, and how the aliases moved.
    Show(RegistryShowArgs),
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The run: its folder (its latest finished run) or its id in `graft runs list`.
    pub run: String,
    /// The model's name (created on first use).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AliasArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    pub name: String,
    pub version: i64,
    /// Letters, digits, - and _.
    pub alias: String,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    pub name: String,
    pub version: i64,
    /// Largest p-value of the paired test that counts as a win.
    #[arg(long, default_value_t = 0.05, value_name = "P")]
    pub alpha: f64,
    /// Promote even if the candidate does not beat the champion (recorded as forced).
    #[arg(long)]
    pub force: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    pub name: String,
    /// The alias to move back.
    #[arg(long, default_value = "champion")]
    pub alias: String,
}

#[derive(Debug, Args)]
pub struct RegistryListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RegistryShowArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    pub name: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}
