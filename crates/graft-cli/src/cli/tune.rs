//! `graft tune`: a hyperparameter search for the head on a run's cached features.

use std::path::PathBuf;

use clap::Args;

pub const TUNE_HELP: &str = "\
Examples:
  graft tune --run runs/leaves                          40 Bayesian trials over the default space
  graft tune --run runs/leaves --method genetic --trials 60 --time 10m
  graft tune --run runs/leaves --method grid            every combination (3 levels per number)
  graft train --config runs/leaves/tune/bayes/best.toml train the winner as a run of its own

Methods:
  grid     every combination of grid_levels values per numeric parameter (even on a log scale
           for log ones) and every entry of a choice
  random   each parameter drawn from its own distribution
  bayes    tree-structured Parzen estimator (Bergstra et al. 2011): after `startup` random
           trials, each parameter is drawn where the best quarter of the trials so far are
           dense and the others are not (ratio of two kernel densities, 24 candidates)
  genetic  a random first generation of `population`; then two parents by tournaments of three
           among the best `population` trials, uniform crossover, each parameter mutated with
           probability `mutation`

The search space is [tune.space] in graft.toml (or --config FILE), one line per parameter:
  [tune.space]
  lr = { log = [1e-4, 3e-2] }           log-uniform      weight_decay = { log = [1e-6, 1e-2] }
  head = { choice = [\"linear\", \"mlp\"] } one of a list    hidden = { choice = [128, 256, 512] }
  dropout = { uniform = [0.0, 0.5] }    uniform          epochs = { int = [5, 30] }
Parameters: lr, weight_decay, head, hidden, dropout, label_smoothing, epochs, patience, batch,
balance, clip. Those left out keep the run's [heads] values. The default space is lr,
weight_decay, head (linear or mlp), hidden, dropout and label_smoothing.

The objective is the val macro-F1 (ties: val accuracy). --parallel trials train at once, one
per core; trial i is proposed from trials 0 … i − parallel, so the same seed gives the same
search whatever order trials finish in. Every finished trial is in RUN/tune/NAME/trials.csv at
once: kill the search, rerun the same command, and it continues without redoing them (a larger
--trials extends it). The test split is used once, at the end, for the best configuration.

Writes RUN/tune/NAME/: trials.csv, results.csv (best first), best.toml (the run's settings with
the winner's head settings, for `graft train --config`), tune.json (summary and test result),
objective.png, parameters.png, heatmap.png (lr × weight_decay unless [tune] heatmap says).";

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(flatten)]
    pub search: TuneSearchArgs,
    /// Start no trial after this long: 90s, 10m, 1h30m.
    #[arg(long, value_name = "DURATION")]
    pub time: Option<String>,
    /// Print tune.json instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Run only trial I, into RUN/tune/NAME/trials/trial-I.csv, as one task of
    /// `graft cluster slurm tune` does (it waits for the trials it is proposed from); the
    /// next whole `graft tune` gathers these files.
    #[arg(long, value_name = "I", conflicts_with_all = ["time", "json", "fresh"])]
    pub trial: Option<usize>,
}

/// The search itself: what `graft tune` and `graft cluster slurm tune` both take.
#[derive(Debug, Args)]
pub struct TuneSearchArgs {
    /// The run whose cached features the heads train on.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// grid, random, bayes or genetic [default: bayes, or [tune] method].
    #[arg(long, value_name = "METHOD")]
    pub method: Option<graft_tune::Method>,
    /// Trials to run [default: 40; a grid: all of it].
    #[arg(long, value_name = "N")]
    pub trials: Option<usize>,
    /// Trials trained at once [default: one per core; on a cluster, 4 (the array's
    /// throttle)].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Seed of the proposals (each trial's training seed is the run's [heads] seed).
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
    /// Read [tune] from this TOML file instead of the run's config.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder under RUN/tune/ [default: the method's name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Delete that folder's trials and start over.
    #[arg(long)]
    pub fresh: bool,
}
