//! `graft ablate`: a matrix of head settings × seeds with confidence intervals.

use std::path::PathBuf;

use clap::Args;

pub const ABLATE_HELP: &str = "\
The ablation file lists factors, each with its values; every combination is a cell, trained
once per seed on the run's cached features and scored on test (val when there is no test
split). The first value of each factor makes the reference row:

  seeds = 3
  [factors]
  head = [\"mlp\", \"linear\"]
  balance = [\"auto\", \"none\"]
  label_smoothing = [0.1, 0.0]

Factors: lr, weight_decay, head, hidden, dropout, label_smoothing, epochs, patience, batch,
balance, clip (those left out keep the run's [heads] values). Seeds are the run's [heads] seed
and the next ones; every cell gets the same seeds and the same test images, so each cell is
compared with the reference seed by seed (paired t-test, two-sided).

Writes RUN/ablate/NAME/: ablation.csv (a row per cell: mean and 95% interval of macro-F1 and
accuracy, the paired difference from the reference and its p-value), ablation.json,
ablation.png (bars with 95% whiskers; darker: differs from the reference at p < 0.05),
runs.csv (every training; kill the command, rerun it, and it continues). `graft eval` adds an
\"Ablations\" section to report.html.

Example:
  graft ablate --run runs/leaves ablation.toml";

#[derive(Debug, Args)]
pub struct AblateArgs {
    #[command(flatten)]
    pub target: AblationArgs,
    /// Forget that folder's earlier results and start over.
    #[arg(long)]
    pub fresh: bool,
    /// Print ablation.json instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Train only cell I (every seed) into RUN/ablate/NAME/cells/cell-I.csv, as one task of
    /// `graft cluster slurm ablate` does; the next whole `graft ablate` gathers these files.
    #[arg(long, value_name = "I", conflicts_with_all = ["json", "fresh"])]
    pub cell: Option<usize>,
}

/// The ablation itself: what `graft ablate` and `graft cluster slurm ablate` both take.
#[derive(Debug, Args)]
pub struct AblationArgs {
    /// The run whose cached features the heads train on.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// The ablation file (TOML): `seeds` and a [factors] table.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Seeds per cell, instead of the file's.
    #[arg(long, value_name = "N")]
    pub seeds: Option<usize>,
    /// Folder under RUN/ablate/ [default: the file's name without .toml].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

impl AblationArgs {
    /// The run folder, which must hold a feature cache.
    pub fn checked_run(&self) -> anyhow::Result<graft_run::RunDir> {
        let dir = graft_run::RunDir::new(&self.run);
        if !dir.features().is_dir() {
            anyhow::bail!(
                "{}: no feature cache in this run (train it first: graft train DIR)",
                self.run.display()
            );
        }
        Ok(dir)
    }

    /// The ablation file with --seeds over its own, and the folder name.
    pub fn read(&self) -> anyhow::Result<(graft_run::ablate::AblationFile, String)> {
        let mut file = graft_run::ablate::AblationFile::read(&self.file)?;
        if let Some(s) = self.seeds {
            file.seeds = s;
        }
        let name = self.name.clone().unwrap_or_else(|| {
            self.file
                .file_stem()
                .map_or_else(|| "ablation".into(), |s| s.to_string_lossy().into_owned())
        });
        Ok((file, name))
    }
}
