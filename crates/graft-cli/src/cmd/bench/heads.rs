//! `graft bench heads`: graft's head sweep against the same sweep in PyTorch, on the same
//! standardised feature rows, in one invocation.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use graft_features::FeatureCache;
use graft_train::{best, run_sweep, Balance, Dataset, SweepConfig, SweepData, TrainConfig};
use serde_json::{json, Value};

use crate::cli::BenchHeadsArgs;

const TORCH_SCRIPT: &str = include_str!("../../../../../scripts/bench/torch_heads.py");

pub fn heads(args: BenchHeadsArgs) -> anyhow::Result<()> {
    let cache = FeatureCache::open(&args.features)
        .with_context(|| format!("opening {}", args.features.display()))?;
    let loaded = cache.load_all();
    let ds = Dataset::new(
        loaded.feature_dim,
        loaded.features,
        loaded.labels,
        &loaded.splits,
        cache.classes().to_vec(),
        0.1,
        args.seed,
    )?;
    let sweep = SweepConfig {
        base: TrainConfig {
            epochs: args.epochs,
            seed: args.seed,
            ..TrainConfig::default()
        },
        ..SweepConfig::default()
    };
    let threads = rayon::current_num_threads();
    println!(
        "bench heads: {} configurations, {} train / {} val rows × {} features, {} classes, {threads} threads",
        sweep.runs().len(),
        ds.train.len(),
        ds.val.len(),
        ds.dim,
        ds.classes.len()
    );
    let t = Instant::now();
    let entries = run_sweep(SweepData::pooled(&ds), &sweep, &|_| {})?;
    let graft_s = t.elapsed().as_secs_f64();
    let b = best(&entries).context("empty sweep")?;
    println!(
        "  graft sweep      {graft_s:>7.1} s   best {} lr {} val macro-F1 {:.4}",
        entries[b].config.head, entries[b].config.lr, entries[b].outcome.val_macro_f1
    );

    let mut out = json!({
        "train_rows": ds.train.len(),
        "threads": threads,
        "graft": {
            "seconds": graft_s,
            "runs": entries.iter().map(|e| json!({
                "head": e.config.head.to_string(),
                "lr": e.config.lr,
                "val_macro_f1": e.outcome.val_macro_f1,
                "epochs_run": e.outcome.history.len(),
                "seconds": e.outcome.seconds,
            })).collect::<Vec<_>>(),
        },
    });
    if args.reference.no_reference {
        println!("  pytorch reference skipped (--no-reference)");
    } else {
        match reference(&args, &ds, &sweep, threads) {
            Ok(r) => {
                let torch_s = r["seconds"].as_f64().unwrap_or(0.0);
                println!(
                    "  pytorch {:<8} {torch_s:>7.1} s   (same 9 configurations, one after the other, {} threads)",
                    r["torch"].as_str().unwrap_or("?").split('+').next().unwrap_or("?"),
                    r["threads"]
                );
                println!(
                    "  per configuration (val macro-F1 graft / pytorch, seconds graft / pytorch):"
                );
                if let Some(runs) = r["runs"].as_array() {
                    for (e, t) in entries.iter().zip(runs) {
                        println!(
                            "    {:<14} {:<8} {:.4} / {:.4}   {:>5.1} / {:>5.1}",
                            e.config.head.to_string(),
                            e.config.lr,
                            e.outcome.val_macro_f1,
                            t["val_macro_f1"].as_f64().unwrap_or(0.0),
                            e.outcome.seconds,
                            t["seconds"].as_f64().unwrap_or(0.0)
                        );
                    }
                }
                println!(
                    "  speed-up graft / pytorch: {:.2}x",
                    torch_s / graft_s.max(1e-9)
                );
                out["pytorch"] = r;
                out["speedup"] = json!(torch_s / graft_s.max(1e-9));
            }
            Err(e) => println!("  pytorch reference skipped: {e:#}"),
        }
    }
    if let Some(path) = &args.reference.json {
        crate::output::write_file(path, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    Ok(())
}

/// The standardised train and val rows and labels as the PyTorch references read them:
/// `train_x.f32`, `train_y.u32`, `val_x.f32`, `val_y.u32` (little-endian).
fn write_train_val(work: &Path, ds: &Dataset) -> anyhow::Result<()> {
    write_rows(&work.join("train_x.f32"), ds, &ds.train)?;
    write_labels(&work.join("train_y.u32"), ds, &ds.train)?;
    write_rows(&work.join("val_x.f32"), ds, &ds.val)?;
    write_labels(&work.join("val_y.u32"), ds, &ds.val)
}

fn write_rows(path: &Path, ds: &Dataset, rows: &[usize]) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for &i in rows {
        for v in &ds.x[i * ds.dim..(i + 1) * ds.dim] {
            f.write_all(&v.to_le_bytes())?;
        }
    }
    f.flush()?;
    Ok(())
}

fn write_labels(path: &Path, ds: &Dataset, rows: &[usize]) -> anyhow::Result<()> {
    let bytes: Vec<u8> = rows
        .iter()
        .flat_map(|&i| (ds.y[i] as u32).to_le_bytes())
        .collect();
    crate::output::write_file(path, bytes)?;
    Ok(())
}

fn reference(
    args: &BenchHeadsArgs,
    ds: &Dataset,
    sweep: &SweepConfig,
    threads: usize,
) -> anyhow::Result<Value> {
    super::require_python(&args.reference.python, &["torch", "numpy"])?;
    HeadReference {
        python: &args.reference.python,
        what: "the PyTorch reference sweep",
        meta_file: "sweep.json",
        scripts: &[("torch_heads.py", TORCH_SCRIPT)],
        threads,
    }
    .run(ds, sweep.base.balance, json!({ "runs": sweep.runs() }))
}

/// A Python reference that trains heads on the same standardised rows as graft: the rows, a
/// JSON file of what to do and the scripts in a temporary folder, the first script run with
/// `--work FOLDER --threads N`, its one JSON line back.
pub(super) struct HeadReference<'a> {
    pub python: &'a Path,
    /// For the progress note and errors ("the Optuna reference").
    pub what: &'a str,
    pub meta_file: &'a str,
    /// (file name, text); the first is run, the others are modules it imports.
    pub scripts: &'a [(&'a str, &'a str)],
    pub threads: usize,
}

impl HeadReference<'_> {
    /// Run it on `ds` with `balance`; `meta` gains the rows' `dim`, `classes` and
    /// `class_weights`.
    pub(super) fn run(
        &self,
        ds: &Dataset,
        balance: Balance,
        mut meta: Value,
    ) -> anyhow::Result<Value> {
        let balance = ds.resolve(balance);
        if balance == Balance::Sampling {
            bail!("the reference implements class weights, not balanced sampling");
        }
        meta["dim"] = json!(ds.dim);
        meta["classes"] = json!(ds.classes.len());
        meta["class_weights"] = json!((balance == Balance::Weights).then(|| ds.class_weights()));
        let work = std::env::temp_dir().join(format!("graft-bench-{}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let result = (|| -> anyhow::Result<Value> {
            write_train_val(&work, ds)?;
            crate::output::write_file(work.join(self.meta_file), serde_json::to_vec(&meta)?)?;
            for (name, text) in self.scripts {
                crate::output::write_file(work.join(name), text)?;
            }
            let script = work.join(self.scripts.first().map_or("", |s| s.0));
            note!("running {} …", self.what);
            let out = Command::new(self.python)
                .arg(&script)
                .arg("--work")
                .arg(&work)
                .args(["--threads", &self.threads.to_string()])
                .stderr(std::process::Stdio::inherit())
                .output()
                .with_context(|| format!("starting {}", self.what))?;
            if !out.status.success() {
                bail!("{} failed ({})", self.what, out.status);
            }
            serde_json::from_slice(&out.stdout).context("reading the reference's JSON")
        })();
        let _ = std::fs::remove_dir_all(&work);
        result
    }
}
