//! `graft bench tune`: `graft tune --method bayes` against Optuna's TPE driving the same
//! PyTorch head, on the same standardised feature rows, space and trial count, in one run.

use graft_run::tune::{base_config, tune, TuneRequest};
use graft_run::{RunDir, Settings, Silent};
use serde_json::{json, Value};

use crate::cli::BenchTuneArgs;

const OPTUNA_SCRIPT: &str = include_str!("../../../../../scripts/bench/optuna_tune.py");
const TORCH_SCRIPT: &str = include_str!("../../../../../scripts/bench/torch_heads.py");

pub fn tune_bench(args: BenchTuneArgs) -> anyhow::Result<()> {
    let run = RunDir::new(&args.run);
    let settings = Settings::of_run(&run)?;
    let mut config = settings.tune.clone();
    config.method = graft_tune::Method::Bayes;
    config.trials = Some(args.trials);
    config.seed = args.seed;
    config.time = None;
    if let Some(p) = args.parallel {
        config.parallel = p;
    }
    let space = config.space()?;
    let threads = rayon::current_num_threads();
    println!(
        "bench tune: {} Bayesian trials over {} on {}",
        args.trials,
        space.names().collect::<Vec<_>>().join(", "),
        run.root().display()
    );
    let tuned = tune(
        &TuneRequest {
            run: &run,
            name: Some("bench".into()),
            config: config.clone(),
            fresh: true,
        },
        &Silent,
    )?;
    let s = &tuned.summary;
    println!(
        "  graft tune       {:>7.1} s   best val macro-F1 {:.4} ({} lr {:.2e}), {} trials at once",
        s.seconds, s.best.val_macro_f1, s.best.head, s.best.lr, s.parallel
    );
    let mut out = json!({
        "trials": args.trials,
        "threads": threads,
        "graft": {
            "seconds": s.seconds,
            "parallel": s.parallel,
            "best_val_macro_f1": s.best.val_macro_f1,
            "best_params": s.best.params,
        },
    });
    if args.reference.no_reference {
        println!("  optuna reference skipped (--no-reference)");
    } else {
        match reference(&args, &run, &settings, &config, threads) {
            Ok(r) => {
                let secs = r["seconds"].as_f64().unwrap_or(0.0);
                println!(
                    "  optuna {:<9} {secs:>7.1} s   best val macro-F1 {:.4} (TPE, torch {}, one trial at a time on {} threads)",
                    r["optuna"].as_str().unwrap_or("?"),
                    r["best_value"].as_f64().unwrap_or(0.0),
                    r["torch"].as_str().unwrap_or("?").split('+').next().unwrap_or("?"),
                    r["threads"]
                );
                println!(
                    "  speed-up graft / optuna+pytorch: {:.2}x",
                    secs / s.seconds.max(1e-9)
                );
                out["optuna"] = r;
                out["speedup"] = json!(secs / s.seconds.max(1e-9));
            }
            Err(e) => println!("  optuna reference skipped: {e:#}"),
        }
    }
    if let Some(path) = &args.reference.json {
        crate::output::write_file(path, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    Ok(())
}

fn reference(
    args: &BenchTuneArgs,
    run: &RunDir,
    settings: &Settings,
    config: &graft_run::tune::TuneConfig,
    threads: usize,
) -> anyhow::Result<Value> {
    super::require_python(&args.reference.python, &["torch", "numpy", "optuna"])?;
    let ds = graft_run::heads::pooled_dataset(run, settings)?;
    let base = base_config(settings)?;
    let balance = base.balance;
    super::heads::HeadReference {
        python: &args.reference.python,
        what: "the Optuna reference",
        meta_file: "search.json",
        scripts: &[
            ("optuna_tune.py", OPTUNA_SCRIPT),
            ("torch_heads.py", TORCH_SCRIPT),
        ],
        threads,
    }
    .run(
        &ds,
        balance,
        json!({
            "space": config.space()?,
            "base": base,
            "trials": args.trials,
            "seed": args.seed,
            "startup": config.startup,
        }),
    )
}
