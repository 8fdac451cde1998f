//! `graft tune`: a hyperparameter search for the head on a run's cached features.
//!
//! Trials run on `parallel` workers (one per core), trial `i` proposed from trials
//! `0 ..= i - parallel` ([`schedule`]), so the search is the same whatever order trials finish
//! in, and a rerun after a kill proposes the same points and skips the finished ones. Validation
//! macro-F1 drives the search; the test split is used once, for the best configuration, at
//! the end.

pub mod config;
mod schedule;
pub mod tracked;
pub mod trials;

use std::collections::BTreeMap;
use std::time::Instant;

use graft_train::{evaluate, train_head, Dataset, TrainConfig};
use graft_tune::{Method, Observed, Search, Space};
use serde::{Deserialize, Serialize};

pub use config::TuneConfig;
pub use trials::{DataShape, SearchSpec, TrialRecord, TuneDir};

use crate::files::{read_json_if_exists, write_file, write_json, Metrics};
use crate::report::{Event, Reporter};
use crate::{RunDir, RunError, Settings};

/// What to search.
#[derive(Debug, Clone)]
pub struct TuneRequest<'a> {
    pub run: &'a RunDir,
    /// The tune's folder under `RUN/tune/`; the method's name when `None`.
    pub name: Option<String>,
    /// `[tune]` with the command line's flags applied.
    pub config: TuneConfig,
    /// Delete the folder's earlier trials and start over.
    pub fresh: bool,
}

/// Told before the first trial.
#[derive(Debug)]
pub struct TuneStarted<'a> {
    pub dir: &'a TuneDir,
    pub method: Method,
    pub space: &'a Space,
    pub trials: usize,
    /// Trials already finished by an earlier run of the same search.
    pub resumed: usize,
    pub parallel: usize,
    pub train_rows: usize,
    pub val_rows: usize,
}

/// Why the search stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stopped {
    /// Every trial asked for ran.
    Budget,
    /// The time limit came first.
    Time,
}

/// `tune.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneSummary {
    pub name: String,
    pub method: Method,
    /// How the bayes method models the objective, said plainly.
    pub model: Option<String>,
    pub trials_finished: usize,
    pub trials_asked: usize,
    pub stopped: Stopped,
    /// Seconds spent on trials by this invocation.
    pub seconds: f64,
    pub parallel: usize,
    pub best: BestTrial,
    /// The run's own head sweep's best val macro-F1, for comparison (same val rows).
    pub sweep_best_val_macro_f1: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestTrial {
    pub trial: usize,
    /// Every parameter of the space as written in trials.csv.
    pub params: BTreeMap<String, String>,
    pub head: String,
    pub lr: f32,
    pub val_macro_f1: f64,
    pub val_accuracy: f64,
    /// The best configuration trained again and scored on test: once per best trial.
    pub test: Option<TestResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub macro_f1: f64,
    pub accuracy: f64,
    pub rows: usize,
    /// The retrained head's val macro-F1: equal to the trial's (training is deterministic).
    pub retrained_val_macro_f1: f64,
}

/// The search's result, as written.
#[derive(Debug)]
pub struct Tuned {
    pub dir: TuneDir,
    pub summary: TuneSummary,
    pub trials: Vec<TrialRecord>,
    pub space: Space,
    /// The test result was read from an earlier run of the same search, not computed again.
    pub test_from_before: bool,
}

/// A search set up: its folder checked against (or given) its identity, the data loaded,
/// the trials finished so far read back.
struct Setup {
    settings: Settings,
    space: Space,
    name: String,
    limit: Option<std::time::Duration>,
    ds: Dataset,
    base: TrainConfig,
    parallel: usize,
    dir: TuneDir,
    done: Vec<TrialRecord>,
    asked: usize,
}

fn setup(req: &TuneRequest<'_>, reporter: &dyn Reporter) -> Result<Setup, RunError> {
    let run = req.run;
    let cfg = &req.config;
    let settings = Settings::of_run(run)?;
    let space = cfg.space()?;
    let name = req.name.clone().unwrap_or_else(|| cfg.method.to_string());
    crate::files::check_plain_name(&name, "tune")?;
    let limit = cfg
        .time
        .as_deref()
        .map(config::parse_duration)
        .transpose()?;
    let ds = crate::heads::pooled_dataset(run, &settings)?;
    let base = base_config(&settings)?;
    let parallel = if cfg.parallel == 0 {
        rayon::current_num_threads()
    } else {
        cfg.parallel
    };
    let spec = SearchSpec {
        method: cfg.method,
        seed: cfg.seed,
        parallel,
        options: cfg.options(),
        space: space.clone(),
        base: base.clone(),
        data: DataShape {
            train: ds.train.len(),
            val: ds.val.len(),
            dim: ds.dim,
            classes: ds.classes.clone(),
        },
    };
    let dir = TuneDir::new(run.root().join("tune").join(&name));
    crate::files::output_folder(dir.root(), req.fresh)?;
    match read_json_if_exists::<SearchSpec>(&dir.search())? {
        Some(old) if old != spec => {
            return Err(RunError::Invalid(format!(
                "{} holds another search (it differs in {}): give this one another --name, \
                 or --fresh to replace it",
                dir.root().display(),
                differences(&old, &spec)
            )))
        }
        Some(_) => {}
        None => write_json(&dir.search(), &spec)?,
    }
    let done = trials::read_all(&dir, &space)?;
    let asked = trials_asked(cfg, &space);
    if asked == 0 {
        return Err(RunError::Invalid("trials must be at least 1".into()));
    }
    if cfg.method == Method::Grid && cfg.trials.is_none() && cfg.time.is_none() && asked > 100 {
        reporter.event(Event::Note(format!(
            "note: the grid has {asked} points and all of them will be trained; --trials N or \
             --time 10m bounds it, fewer grid_levels or values shrink it (bayes usually needs \
             far fewer trials)"
        )));
    }
    Ok(Setup {
        settings,
        space,
        name,
        limit,
        ds,
        base,
        parallel,
        dir,
        done,
        asked,
    })
}

/// The search `cfg` describes over `space`.
fn search_of<'a>(cfg: &TuneConfig, space: &'a Space) -> Search<'a> {
    Search {
        space,
        method: cfg.method,
        seed: cfg.seed,
        options: cfg.options(),
    }
}

/// Train trial `trial` at `point`: its record (a local worker's, or a cluster task's).
fn run_trial(
    ds: &Dataset,
    space: &Space,
    base: &TrainConfig,
    trial: usize,
    point: graft_tune::Point,
) -> Result<TrialRecord, RunError> {
    let config = config::train_config(space, &point, base)?;
    let outcome = train_head(ds, &config);
    tracing::info!(
        trial,
        head = %config.head,
        lr = config.lr,
        f1 = outcome.val_macro_f1,
        "trial finished"
    );
    Ok(TrialRecord {
        trial,
        point,
        val_macro_f1: outcome.val_macro_f1,
        val_accuracy: outcome.val_acc,
        best_epoch: outcome.best_epoch,
        epochs_run: outcome.history.len(),
        seconds: outcome.seconds,
    })
}

/// How many trials `cfg` asks for: `trials`, 40 by default; a grid's size at most.
pub fn trials_asked(cfg: &TuneConfig, space: &Space) -> usize {
    match (cfg.method, cfg.trials) {
        (Method::Grid, t) => {
            let size = graft_tune::grid_size(space, cfg.grid_levels);
            t.map_or(size, |t| t.min(size))
        }
        (_, t) => t.unwrap_or(40),
    }
}

/// Run trial `trial` of the search alone, as one task of a cluster's array does, and write
/// it to its own file (`trials/trial-NNNNN.csv`); the next whole `graft tune` gathers the
/// files. The trial sees trials `0 ..= trial - parallel`, as in a local search: it waits
/// until other tasks have written those. `None` when the search has no such trial (a grid
/// smaller than the array); a trial already finished is read back, not run again.
pub fn tune_trial(
    req: &TuneRequest<'_>,
    trial: usize,
    reporter: &dyn Reporter,
) -> Result<Option<TrialRecord>, RunError> {
    let cfg = &req.config;
    let Setup {
        space,
        ds,
        base,
        parallel,
        dir,
        mut done,
        asked,
        ..
    } = setup(req, reporter)?;
    if trial >= asked {
        return Ok(None);
    }
    if let Some(t) = done.iter().find(|t| t.trial == trial) {
        return Ok(Some(t.clone()));
    }
    let seen = (trial + 1).saturating_sub(parallel);
    let mut said = false;
    while done.iter().take_while(|t| t.trial < seen).count() < seen {
        if !said {
            reporter.event(Event::Note(format!(
                "trial {trial} waits for trials 0-{} (it is proposed from them)",
                seen - 1
            )));
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
        done = trials::read_all(&dir, &space)?;
    }
    let history: Vec<Observed> = done[..seen].iter().map(TrialRecord::observed).collect();
    let Some(point) = search_of(cfg, &space).propose(trial, &history) else {
        return Ok(None);
    };
    let record = run_trial(&ds, &space, &base, trial, point)?;
    std::fs::create_dir_all(dir.trial_files())
        .map_err(|e| RunError::write(&dir.trial_files(), e))?;
    trials::write(
        &dir.trial_file(trial),
        &space,
        std::slice::from_ref(&record),
    )?;
    Ok(Some(record))
}

/// Run (or continue) the search and write its folder.
pub fn tune(req: &TuneRequest<'_>, reporter: &dyn Reporter) -> Result<Tuned, RunError> {
    let run = req.run;
    let cfg = &req.config;
    let Setup {
        settings,
        space,
        name,
        limit,
        ds,
        base,
        parallel,
        dir,
        done,
        asked,
    } = setup(req, reporter)?;
    let search = search_of(cfg, &space);
    let resumed = done.iter().filter(|t| t.trial < asked).count();
    reporter.event(Event::TuneStarted(&TuneStarted {
        dir: &dir,
        method: cfg.method,
        space: &space,
        trials: asked,
        resumed,
        parallel,
        train_rows: ds.train.len(),
        val_rows: ds.val.len(),
    }));

    let started = Instant::now();
    let out_of_time = || limit.is_some_and(|l| started.elapsed() >= l);
    let bar = reporter.bar("trials", asked as u64);
    bar.set_position(resumed as u64);
    let propose = |i: usize, seen: &[Observed]| search.propose(i, seen);
    let run_trial = |trial: usize, point: graft_tune::Point| -> Result<TrialRecord, RunError> {
        run_trial(&ds, &space, &base, trial, point)
    };
    let finished = |all: &[TrialRecord]| -> Result<(), RunError> {
        bar.inc(1);
        trials::write(&dir.trials(), &space, all)
    };
    let (all, timed_out) = schedule::run(
        &schedule::Plan {
            asked,
            parallel,
            propose: &propose,
            run: &run_trial,
            finished: &finished,
            out_of_time: &out_of_time,
        },
        done,
    )?;
    drop(bar);
    // Trials cluster tasks ran alone join the others here.
    trials::write(&dir.trials(), &space, &all)?;
    let seconds = started.elapsed().as_secs_f64();
    if all.is_empty() {
        return Err(RunError::Invalid(format!(
            "no trial finished before the time limit ({}): give more --time",
            cfg.time.as_deref().unwrap_or("")
        )));
    }
    write_file(
        &dir.results(),
        trials::results_csv(&space, &all)?.as_bytes(),
    )?;
    let ranked = trials::ranked(&all);
    let best = ranked[0];
    let best_config = config::train_config(&space, &best.point, &base)?;
    let earlier: Option<TuneSummary> = read_json_if_exists(&dir.summary())?;
    let (test, test_from_before) = match earlier.and_then(|s| {
        (s.best.trial == best.trial)
            .then_some(s.best.test)
            .flatten()
    }) {
        Some(t) => (Some(t), true),
        None => (test_once(&ds, &best_config), false),
    };
    let sweep_best = read_json_if_exists::<Metrics>(&run.metrics())
        .ok()
        .flatten()
        .map(|m| m.best.val_macro_f1);
    let summary = TuneSummary {
        name: name.clone(),
        method: cfg.method,
        model: (cfg.method == Method::Bayes).then(|| {
            "tree-structured Parzen estimator (univariate, Bergstra et al. 2011)".to_string()
        }),
        trials_finished: all.len(),
        trials_asked: asked,
        stopped: if timed_out {
            Stopped::Time
        } else {
            Stopped::Budget
        },
        seconds,
        parallel,
        best: BestTrial {
            trial: best.trial,
            params: space
                .names()
                .map(str::to_string)
                .zip(space.format(&best.point))
                .collect(),
            head: best_config.head.to_string(),
            lr: best_config.lr,
            val_macro_f1: best.val_macro_f1,
            val_accuracy: best.val_accuracy,
            test,
        },
        sweep_best_val_macro_f1: sweep_best,
    };
    write_json(&dir.summary(), &summary)?;
    write_file(
        &dir.best_toml(),
        best_toml(run, &name, &settings, &best_config, &dir)?.as_bytes(),
    )?;
    let plots = graft_eval::tune_plots::TunePlot {
        names: space.names().map(str::to_string).collect(),
        log_scale: space
            .dists()
            .map(|d| matches!(d, graft_tune::Dist::Log(_)))
            .collect(),
        labels: space
            .dists()
            .map(|d| match d {
                graft_tune::Dist::Choice(list) => list.iter().map(ToString::to_string).collect(),
                _ => Vec::new(),
            })
            .collect(),
        trials: all
            .iter()
            .map(|t| graft_eval::tune_plots::PlotTrial {
                trial: t.trial,
                values: t
                    .point
                    .iter()
                    .map(|v| match v {
                        graft_tune::Value::Num(x) => *x,
                        graft_tune::Value::Cat(i) => *i as f64,
                    })
                    .collect(),
                objective: t.val_macro_f1,
            })
            .collect(),
        reference: sweep_best,
    };
    let drawn = [
        graft_eval::tune_plots::objective(&plots, &dir.objective_plot()),
        graft_eval::tune_plots::parameters(&plots, &dir.parameters_plot()),
        heatmap_pair(cfg, &space).map_or(Ok(()), |(a, b)| {
            graft_eval::tune_plots::heatmap(&plots, a, b, &dir.heatmap_plot())
        }),
    ];
    for d in drawn {
        if let Err(e) = d {
            reporter.event(Event::Note(format!("a tune chart was not drawn: {e}")));
        }
    }
    Ok(Tuned {
        dir,
        summary,
        trials: all,
        space,
        test_from_before,
    })
}

/// Every trial starts from the run's `[heads]` settings: its first pooled head, its middle
/// learning rate, its epochs, batch, regularisation, balance and seed.
pub fn base_config(settings: &Settings) -> Result<TrainConfig, RunError> {
    let h = &settings.heads;
    let head = settings
        .head_specs()?
        .into_iter()
        .find(|s| !s.spatial())
        .unwrap_or(graft_train::HeadSpec::Linear);
    let lr = h.lrs.get(h.lrs.len() / 2).copied().unwrap_or(1e-3);
    Ok(TrainConfig {
        head,
        lr,
        epochs: h.epochs,
        batch: h.batch,
        weight_decay: h.weight_decay,
        label_smoothing: h.label_smoothing,
        balance: settings.balance()?,
        clip: h.clip,
        patience: h.patience,
        seed: h.seed,
        ..TrainConfig::default()
    })
}

/// The best configuration trained again on train and scored on test, once.
fn test_once(ds: &Dataset, config: &TrainConfig) -> Option<TestResult> {
    if ds.test.is_empty() {
        return None;
    }
    let outcome = train_head(ds, config);
    let c = evaluate(&outcome.head, ds, &ds.test);
    Some(TestResult {
        macro_f1: c.macro_f1(),
        accuracy: c.accuracy(),
        rows: ds.test.len(),
        retrained_val_macro_f1: outcome.val_macro_f1,
    })
}

/// The run's settings with the best trial's head settings, as a file `graft train --config`
/// reads; its run is named `<run>-<tune>` so it does not overwrite this one.
fn best_toml(
    run: &RunDir,
    name: &str,
    settings: &Settings,
    best: &TrainConfig,
    dir: &TuneDir,
) -> Result<String, RunError> {
    let mut s = settings.clone();
    s.name = Some(format!("{}-{name}", run.name()));
    let h = &mut s.heads;
    h.heads = vec![best.head.to_string()];
    h.lrs = vec![best.lr];
    h.epochs = best.epochs;
    h.batch = best.batch;
    h.weight_decay = best.weight_decay;
    h.label_smoothing = best.label_smoothing;
    h.balance = best.balance.to_string();
    h.clip = best.clip;
    h.patience = best.patience;
    let body = s.to_toml(&dir.best_toml())?;
    Ok(format!(
        "# The best configuration of `graft tune` ({}); train it with\n#   graft train --config {}\n{body}",
        dir.root().display(),
        dir.best_toml().display()
    ))
}

/// The heatmap's two parameters: `[tune] heatmap`, else lr × weight_decay, else the first two
/// numeric parameters; none when the space has fewer than two.
fn heatmap_pair<'a>(cfg: &'a TuneConfig, space: &'a Space) -> Option<(usize, usize)> {
    if let Some([a, b]) = &cfg.heatmap {
        return Some((space.index(a)?, space.index(b)?));
    }
    if let (Some(a), Some(b)) = (space.index("lr"), space.index("weight_decay")) {
        return Some((a, b));
    }
    let numeric: Vec<usize> = space
        .dists()
        .enumerate()
        .filter(|(_, d)| d.bounds().is_some())
        .map(|(i, _)| i)
        .collect();
    (numeric.len() >= 2).then(|| (numeric[0], numeric[1]))
}

/// Which parts of two searches differ, for the refusal to mix them.
fn differences(a: &SearchSpec, b: &SearchSpec) -> String {
    let mut d = Vec::new();
    if a.method != b.method {
        d.push(format!("method: {} then {}", a.method, b.method));
    }
    if a.seed != b.seed {
        d.push(format!("seed: {} then {}", a.seed, b.seed));
    }
    if a.parallel != b.parallel {
        d.push(format!("parallel: {} then {}", a.parallel, b.parallel));
    }
    if a.options != b.options {
        d.push("the method's options".into());
    }
    if a.space != b.space {
        d.push("the search space".into());
    }
    if a.base != b.base {
        d.push("the run's [heads] settings".into());
    }
    if a.data != b.data {
        d.push("the feature cache's rows".into());
    }
    d.join(", ")
}
