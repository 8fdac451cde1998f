//! `graft tune --run RUN`: the search, then its best trials, the winner's test result and
//! where the pictures are.

use graft_run::tune::{tune, Stopped, TuneConfig, TuneRequest, Tuned};
use graft_run::{RunDir, Settings};

use crate::cli::{TuneArgs, TuneSearchArgs};
use crate::terminal::Terminal;

/// `[tune]` (the run's, or --config's) with the flags over it.
pub(crate) fn resolve(args: &TuneSearchArgs, time: Option<&String>) -> anyhow::Result<TuneConfig> {
    let dir = RunDir::new(&args.run);
    if !dir.features().is_dir() {
        anyhow::bail!(
            "{}: no feature cache in this run (train it first: graft train DIR)",
            args.run.display()
        );
    }
    let mut config = match &args.config {
        Some(file) => graft_run::settings::read_table::<TuneConfig>(file, "tune", "graft tune")?,
        None => Settings::of_run(&dir)?.tune,
    };
    if let Some(m) = args.method {
        config.method = m;
    }
    if let Some(t) = args.trials {
        config.trials = Some(t);
    }
    if let Some(t) = time {
        config.time = Some(t.clone());
    }
    if let Some(p) = args.parallel {
        config.parallel = p;
    }
    if let Some(s) = args.seed {
        config.seed = s;
    }
    Ok(config)
}

pub fn run(args: TuneArgs) -> anyhow::Result<()> {
    let search = &args.search;
    let dir = RunDir::new(&search.run);
    let config = resolve(search, args.time.as_ref())?;
    if let Some(trial) = args.trial {
        let req = TuneRequest {
            run: &dir,
            name: search.name.clone(),
            config,
            fresh: false,
        };
        match graft_run::tune::tune_trial(&req, trial, &Terminal)? {
            Some(t) => say!(
                "Trial {trial}: val macro-F1 {:.4}, val accuracy {:.4} ({:.1} s)",
                t.val_macro_f1,
                t.val_accuracy,
                t.seconds
            ),
            None => say!("Trial {trial}: not part of this search (nothing to run)"),
        }
        return Ok(());
    }
    let req = TuneRequest {
        run: &dir,
        name: search.name.clone(),
        config,
        fresh: search.fresh,
    };
    let c = &req.config;
    let params = graft_track::Params::from([
        (
            "name".to_string(),
            req.name.clone().unwrap_or_else(|| c.method.to_string()),
        ),
        ("method".to_string(), c.method.to_string()),
        (
            "trials".to_string(),
            c.trials.map_or_else(|| "default".into(), |t| t.to_string()),
        ),
        ("seed".to_string(), c.seed.to_string()),
        ("parallel".to_string(), c.parallel.to_string()),
        // A bad space is reported by the search itself, with its hint.
        (
            "space".to_string(),
            c.space()
                .ok()
                .and_then(|s| serde_json::to_string(&s).ok())
                .unwrap_or_default(),
        ),
    ]);
    // --json prints only the summary on stdout.
    let reporter: &dyn graft_run::Reporter = if args.json {
        &graft_run::Silent
    } else {
        &Terminal
    };
    let tuned = crate::tracked::tracked(graft_run::Job::Tune, &dir, params, || {
        tune(&req, reporter).map_err(|e| {
            anyhow::anyhow!(
                "{e}{}",
                if e.to_string().contains("[tune") {
                    " (see `graft tune --help` for the space's form)"
                } else {
                    ""
                }
            )
        })
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&tuned.summary)?);
        return Ok(());
    }
    print(&tuned);
    Ok(())
}

fn print(t: &Tuned) {
    let s = &t.summary;
    let ranked = graft_run::tune::trials::ranked(&t.trials);
    let names: Vec<&str> = t.space.names().collect();
    say!("Best trials (val macro-F1):");
    say!(
        "  {:>5}  {:>8}  {:>8}  {}",
        "trial",
        "macro-F1",
        "accuracy",
        names.join("  ")
    );
    for r in ranked.iter().take(5) {
        let values: Vec<String> = t
            .space
            .iter()
            .zip(&r.point)
            .map(|((_, d), v)| short(&d.format(*v)))
            .collect();
        say!(
            "  {:>5}  {:>8.4}  {:>8.4}  {}",
            r.trial,
            r.val_macro_f1,
            r.val_accuracy,
            values.join("  ")
        );
    }
    say!(
        "{} trials of {} ({}{}) in {:.1} s this time, {} at once.",
        s.trials_finished,
        s.trials_asked,
        s.method,
        s.model
            .as_deref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default(),
        s.seconds,
        s.parallel
    );
    if s.stopped == Stopped::Time {
        say!("  stopped by the time limit; rerun (with more --time) to continue");
    }
    let b = &s.best;
    say!(
        "Best: trial {} — {} lr {:.3e}: val macro-F1 {:.4}, val accuracy {:.4}",
        b.trial,
        b.head,
        b.lr,
        b.val_macro_f1,
        b.val_accuracy
    );
    if let Some(sweep) = s.sweep_best_val_macro_f1 {
        say!(
            "  the run's own sweep reached {sweep:.4} on the same val rows ({:+.4})",
            b.val_macro_f1 - sweep
        );
    }
    match &b.test {
        Some(test) => say!(
            "  test, once{}: macro-F1 {:.4}, accuracy {:.4} on {} images",
            if t.test_from_before {
                " (from the earlier run of this search: the best trial has not changed)"
            } else {
                " (the best configuration retrained)"
            },
            test.macro_f1,
            test.accuracy,
            test.rows
        ),
        None => say!("  no test split in this run: nothing scored on test"),
    }
    let d = &t.dir;
    say!("Train it: graft train --config {}", d.best_toml().display());
    say!(
        "Files: {} ({}, {}, {})",
        d.root().display(),
        "results.csv",
        "tune.json",
        "objective.png, parameters.png, heatmap.png"
    );
}

fn short(s: &str) -> String {
    match s.parse::<f64>() {
        Ok(x) if s.contains('.') || s.contains('e') => {
            if x != 0.0 && (x.abs() < 1e-2 || x.abs() >= 1e4) {
                format!("{x:.2e}")
            } else {
                format!("{x:.3}")
            }
        }
        _ => s.to_string(),
    }
}
