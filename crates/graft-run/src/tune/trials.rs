//! The record of a tune: `search.json` (what is searched, so a rerun knows it continues the
//! same search) and `trials.csv` (one row per finished trial, rewritten whole and atomically
//! as each finishes, so a kill loses only the trials still running).

use std::path::{Path, PathBuf};

use graft_train::TrainConfig;
use graft_tune::{Method, Options, Point, Space};
use serde::{Deserialize, Serialize};

use crate::files::write_file;
use crate::RunError;

/// The summary's file name in a tune's folder.
pub const SUMMARY: &str = "tune.json";

/// The folder of one tune, `RUN/tune/NAME/`, and its files.
#[derive(Debug, Clone)]
pub struct TuneDir {
    root: PathBuf,
}

impl TuneDir {
    pub fn new(root: impl Into<PathBuf>) -> TuneDir {
        TuneDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `search.json`: the search's identity.
    pub fn search(&self) -> PathBuf {
        self.root.join("search.json")
    }
    /// `trials.csv`: every finished trial in trial order, what a rerun resumes from.
    pub fn trials(&self) -> PathBuf {
        self.root.join("trials.csv")
    }
    /// `trials/`: one `trial-NNNNN.csv` per trial a cluster task ran alone
    /// (`graft tune --trial I`); the next whole `graft tune` gathers them into trials.csv.
    pub fn trial_files(&self) -> PathBuf {
        self.root.join("trials")
    }
    pub fn trial_file(&self, trial: usize) -> PathBuf {
        self.trial_files().join(format!("trial-{trial:05}.csv"))
    }
    /// `results.csv`: the trials best first.
    pub fn results(&self) -> PathBuf {
        self.root.join("results.csv")
    }
    /// `best.toml`: the run's settings with the best trial's head settings, for
    /// `graft train --config`.
    pub fn best_toml(&self) -> PathBuf {
        self.root.join("best.toml")
    }
    /// `tune.json`: the summary, with the best configuration's test result.
    pub fn summary(&self) -> PathBuf {
        self.root.join(SUMMARY)
    }
    /// The objective of every trial in order, and the best so far.
    pub fn objective_plot(&self) -> PathBuf {
        self.root.join("objective.png")
    }
    /// The objective against each parameter.
    pub fn parameters_plot(&self) -> PathBuf {
        self.root.join("parameters.png")
    }
    /// The best objective over two parameters.
    pub fn heatmap_plot(&self) -> PathBuf {
        self.root.join("heatmap.png")
    }
}

/// What a tune searches: a rerun with the same identity continues it; any difference and it
/// is another search. The budget (trials, time) is not part of it: a rerun may extend it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchSpec {
    pub method: Method,
    pub seed: u64,
    /// Trials trained at once: trial `i` sees trials `0 ..= i - parallel`.
    pub parallel: usize,
    pub options: Options,
    pub space: Space,
    /// The settings of every trial before the space's parameters are set.
    pub base: TrainConfig,
    /// The rows trained on: train and val counts, feature width, classes.
    pub data: DataShape,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataShape {
    pub train: usize,
    pub val: usize,
    pub dim: usize,
    pub classes: Vec<String>,
}

/// One finished trial.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialRecord {
    pub trial: usize,
    pub point: Point,
    pub val_macro_f1: f64,
    pub val_accuracy: f64,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub seconds: f64,
}

impl TrialRecord {
    /// What a proposal sees of this trial.
    pub fn observed(&self) -> graft_tune::Observed {
        graft_tune::Observed {
            point: self.point.clone(),
            objective: self.val_macro_f1,
        }
    }
}

const FIXED: [&str; 5] = [
    "val_macro_f1",
    "val_accuracy",
    "best_epoch",
    "epochs_run",
    "seconds",
];

fn header(space: &Space) -> Vec<&str> {
    std::iter::once("trial")
        .chain(space.names())
        .chain(FIXED)
        .collect()
}

fn row(space: &Space, t: &TrialRecord) -> Vec<String> {
    std::iter::once(t.trial.to_string())
        .chain(space.format(&t.point))
        // Shortest round-trip forms: a resumed search sees exactly the numbers it saw before.
        .chain([
            format!("{}", t.val_macro_f1),
            format!("{}", t.val_accuracy),
            t.best_epoch.to_string(),
            t.epochs_run.to_string(),
            format!("{:.3}", t.seconds),
        ])
        .collect()
}

/// `trials.csv` text for `trials` (in the order given).
pub fn to_csv(space: &Space, trials: &[TrialRecord]) -> Result<String, RunError> {
    Ok(graft_data::table::to_csv(
        &header(space),
        trials.iter().map(|t| row(space, t)),
    )?)
}

pub fn write(path: &Path, space: &Space, trials: &[TrialRecord]) -> Result<(), RunError> {
    write_file(path, to_csv(space, trials)?.as_bytes())
}

/// The trials in `path`, in trial order; none when it does not exist.
pub fn read(path: &Path, space: &Space) -> Result<Vec<TrialRecord>, RunError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bad = |line: usize, why: &str| {
        RunError::Invalid(format!(
            "{} line {line}: {why} (it was written by graft tune; delete the folder, or rerun \
             with --fresh, to start the search over)",
            path.display()
        ))
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(1, &e.to_string()))?;
    let want = header(space);
    let got: Vec<String> = reader
        .headers()
        .map_err(|e| bad(1, &e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect();
    if got != want {
        return Err(bad(1, &format!("columns {got:?}, expected {want:?}")));
    }
    let n = space.len();
    let mut out: Vec<TrialRecord> = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| bad(line, &e.to_string()))?;
        let field = |k: usize| rec.get(k).unwrap_or("");
        let num = |k: usize| -> Result<f64, RunError> {
            field(k)
                .parse::<f64>()
                .map_err(|_| bad(line, &format!("{:?} is not a number", field(k))))
        };
        let whole = |k: usize| -> Result<usize, RunError> {
            field(k)
                .parse::<usize>()
                .map_err(|_| bad(line, &format!("{:?} is not a count", field(k))))
        };
        let texts: Vec<&str> = (1..=n).map(field).collect();
        let point = space
            .parse(&texts)
            .ok_or_else(|| bad(line, "a value is not in the search space"))?;
        out.push(TrialRecord {
            trial: whole(0)?,
            point,
            val_macro_f1: num(n + 1)?,
            val_accuracy: num(n + 2)?,
            best_epoch: whole(n + 3)?,
            epochs_run: whole(n + 4)?,
            seconds: num(n + 5)?,
        });
    }
    out.sort_by_key(|t| t.trial);
    out.dedup_by_key(|t| t.trial);
    Ok(out)
}

/// Every finished trial, in trial order: trials.csv's and those of the single-trial files.
pub fn read_all(dir: &TuneDir, space: &Space) -> Result<Vec<TrialRecord>, RunError> {
    let mut out = read(&dir.trials(), space)?;
    for f in crate::files::unit_files(&dir.trial_files(), "trial-") {
        out.extend(read(&f, space)?);
    }
    out.sort_by_key(|t| t.trial);
    out.dedup_by_key(|t| t.trial);
    Ok(out)
}

/// The trials best first: higher val macro-F1, then val accuracy, then the earlier trial.
pub fn ranked(trials: &[TrialRecord]) -> Vec<&TrialRecord> {
    let mut r: Vec<&TrialRecord> = trials.iter().collect();
    r.sort_by(|a, b| {
        (b.val_macro_f1, b.val_accuracy)
            .partial_cmp(&(a.val_macro_f1, a.val_accuracy))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.trial.cmp(&b.trial))
    });
    r
}

/// `results.csv`: rank, then the trials' columns, best first.
pub fn results_csv(space: &Space, trials: &[TrialRecord]) -> Result<String, RunError> {
    let head: Vec<&str> = std::iter::once("rank").chain(header(space)).collect();
    let rows = ranked(trials).into_iter().enumerate().map(|(i, t)| {
        std::iter::once((i + 1).to_string())
            .chain(row(space, t))
            .collect::<Vec<_>>()
    });
    Ok(graft_data::table::to_csv(&head, rows)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use graft_data::rng::SplitMix64;

    #[test]
    fn trials_write_and_read_back_exactly_and_rank_best_first() {
        let space = crate::tune::config::default_space();
        let mut rng = SplitMix64::new(5);
        let trials: Vec<TrialRecord> = (0..6)
            .map(|i| TrialRecord {
                trial: i,
                point: space.sample(&mut rng),
                val_macro_f1: rng.next_f64(),
                val_accuracy: rng.next_f64(),
                best_epoch: i,
                epochs_run: i + 2,
                seconds: 1.5,
            })
            .collect();
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("trials.csv");
        write(&path, &space, &trials).expect("write");
        assert_eq!(read(&path, &space).expect("read"), trials);
        let r = ranked(&trials);
        assert!(r.windows(2).all(|w| w[0].val_macro_f1 >= w[1].val_macro_f1));
        let text = results_csv(&space, &trials).expect("results");
        assert!(text.starts_with("rank,trial,dropout,head,"), "{text}");

        std::fs::write(&path, "trial,lr\n0,0.1\n").expect("write");
        let e = read(&path, &space).expect_err("columns").to_string();
        assert!(
            e.contains("trials.csv line 1") && e.contains("--fresh"),
            "{e}"
        );
    }
}
