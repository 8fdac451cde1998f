//! `graft runs`: the tracking store's runs as tables, JSON and learning curves.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use graft_track::{compare, curves, short_id, Filter, RunDetails, RunSummary, Store};

use crate::cli::{RunsCompareArgs, RunsDeleteArgs, RunsListArgs, RunsShowArgs, StoreArgs};

pub(crate) fn open(store: &StoreArgs) -> anyhow::Result<Store> {
    let path = crate::tracked::db_in(&store.runs);
    Store::open_existing(&path).map_err(|e| match e {
        graft_track::TrackError::NoStore(_) => anyhow::anyhow!(
            "{e}; runs are recorded by graft train, eval, export and finetune \
             (give the runs folder with --runs DIR)"
        ),
        e => e.into(),
    })
}

pub(crate) fn when(ms: i64) -> String {
    use chrono::TimeZone as _;
    chrono::Local
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

pub fn list(args: RunsListArgs) -> anyhow::Result<()> {
    let store = open(&args.store)?;
    let filter = Filter {
        experiment: args.experiment,
        status: args.status,
        params: args.param,
        dataset: args.dataset,
        sort: args.sort.clone(),
        ascending: args.ascending,
        limit: args.limit,
    };
    let runs = store.runs(&filter)?;
    // The metric a table shows: the one sorted by, else the usual headline.
    let shown = args.sort.unwrap_or_else(|| "test_accuracy".into());
    if args.json {
        let mut out = Vec::with_capacity(runs.len());
        for r in &runs {
            out.push(store.run(&r.id)?);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if runs.is_empty() {
        println!("No runs match in {}.", store.path().display());
        return Ok(());
    }
    let mut rows = vec![vec![
        "ID".to_string(),
        "STATUS".into(),
        "COMMAND".into(),
        "EXPERIMENT".into(),
        "RUN".into(),
        "STARTED".into(),
        "SECONDS".into(),
        shown.to_uppercase(),
    ]];
    for r in &runs {
        let value = store.latest(&r.id, &shown)?;
        rows.push(vec![
            short_id(&r.id).to_string(),
            r.status.to_string(),
            r.command.clone(),
            r.experiment.clone(),
            r.name.clone(),
            when(r.start_ms),
            r.seconds().map(|s| format!("{s:.1}")).unwrap_or("-".into()),
            value.map(|v| format!("{v:.4}")).unwrap_or("-".into()),
        ]);
    }
    print_table("", &rows);
    Ok(())
}

/// Rows of cells, each column padded to its widest cell, every line after `indent`.
pub(crate) fn print_table(indent: &str, rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{indent}{}", line.join("  ").trim_end());
    }
}

pub fn show(args: RunsShowArgs) -> anyhow::Result<()> {
    let store = open(&args.store)?;
    let id = store.resolve(&args.id)?;
    let run = store.run(&id)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run)?);
        return Ok(());
    }
    print_details(&run);
    Ok(())
}

fn print_details(run: &RunDetails) {
    let s: &RunSummary = &run.summary;
    println!("Run {} ({})", s.id, s.status);
    println!("  command     graft {}", s.command);
    println!("  experiment  {}", s.experiment);
    println!("  folder      {}", s.run_dir);
    println!("  started     {}", when(s.start_ms));
    if let Some(secs) = s.seconds() {
        println!("  took        {secs:.1} s");
    }
    if let Some(h) = &s.dataset_hash {
        println!("  dataset     {h}");
    }
    println!("  graft       {}", s.graft_version);
    if let Some(e) = &s.error {
        println!("  error       {e}");
    }
    if !run.params.is_empty() {
        println!("Parameters:");
        for (k, v) in &run.params {
            println!("  {k} = {v}");
        }
    }
    let (system, own): (Vec<_>, Vec<_>) = run
        .metrics
        .iter()
        .partition(|(k, _)| k.starts_with(graft_track::system::PREFIX));
    if !own.is_empty() {
        println!("Metrics (final value, values recorded):");
        for (k, v) in own {
            println!("  {k} = {v:.6} ({})", run.metric_steps[k]);
        }
    }
    if !system.is_empty() {
        println!("System metrics (last sample, samples):");
        for (k, v) in system {
            println!("  {k} = {v:.1} ({})", run.metric_steps[k]);
        }
    }
    if !run.artifacts.is_empty() {
        println!("Files:");
        for a in &run.artifacts {
            println!(
                "  {:<24} {:>10}  sha256 {}",
                a.path,
                bytesize::ByteSize(a.bytes).to_string(),
                &a.sha256[..a.sha256.len().min(16)]
            );
        }
    }
}

pub fn compare_runs(args: RunsCompareArgs) -> anyhow::Result<()> {
    let store = open(&args.store)?;
    let mut runs = Vec::new();
    for id in &args.ids {
        let id = store.resolve(id)?;
        runs.push(store.run(&id)?);
    }
    let cmp = compare(&runs);
    let metrics = if args.metric.is_empty() {
        vec!["val_macro_f1".to_string(), "train_loss".to_string()]
    } else {
        args.metric.clone()
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_png(&args.store.runs, &runs));
    let histories: Vec<Vec<Vec<graft_track::Metric>>> = metrics
        .iter()
        .map(|m| {
            runs.iter()
                .map(|r| store.history(&r.summary.id, m))
                .collect::<Result<_, _>>()
        })
        .collect::<Result<_, _>>()?;
    let panels: Vec<curves::Panel<'_>> = metrics
        .iter()
        .zip(&histories)
        .map(|(m, per_run)| curves::Panel {
            metric: m.clone(),
            curves: runs
                .iter()
                .zip(per_run)
                .map(|(r, points)| curves::Curve {
                    label: format!("{} {}", short_id(&r.summary.id), r.summary.name),
                    points,
                })
                .collect(),
        })
        .collect();
    let drawn = histories.iter().flatten().any(|h| !h.is_empty());
    if drawn {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        curves::draw(&panels, &out)?;
    }
    if args.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            comparison: &'a graft_track::Comparison,
            curves: Option<&'a Path>,
        }
        let o = Out {
            comparison: &cmp,
            curves: drawn.then_some(out.as_path()),
        };
        println!("{}", serde_json::to_string_pretty(&o)?);
        return Ok(());
    }
    let head: Vec<String> = std::iter::once(String::new())
        .chain(runs.iter().map(|r| short_id(&r.summary.id).to_string()))
        .collect();
    let table = |title: &str, rows: Vec<Vec<String>>| {
        if rows.is_empty() {
            println!("{title}: all the same.");
            return;
        }
        println!("{title} that differ:");
        let mut all = vec![head.clone()];
        all.extend(rows);
        print_table("  ", &all);
    };
    let missing = || "-".to_string();
    table(
        "Parameters",
        cmp.params
            .iter()
            .map(|row| {
                std::iter::once(row.key.clone())
                    .chain(row.values.iter().map(|v| v.clone().unwrap_or_else(missing)))
                    .collect()
            })
            .collect(),
    );
    table(
        "Metrics",
        cmp.metrics
            .iter()
            .map(|row| {
                std::iter::once(row.key.clone())
                    .chain(
                        row.values
                            .iter()
                            .map(|v| v.map(|x| format!("{x:.4}")).unwrap_or_else(missing)),
                    )
                    .collect()
            })
            .collect(),
    );
    if drawn {
        println!("Learning curves: {}", out.display());
    } else {
        println!(
            "No step values of {} recorded for these runs; no curves drawn.",
            metrics.join(", ")
        );
    }
    Ok(())
}

fn default_png(runs_folder: &Path, runs: &[RunDetails]) -> PathBuf {
    let ids: Vec<&str> = runs.iter().map(|r| short_id(&r.summary.id)).collect();
    runs_folder.join(format!("compare-{}.png", ids.join("-")))
}

pub fn delete(args: RunsDeleteArgs) -> anyhow::Result<()> {
    let store = open(&args.store)?;
    let ids: Vec<String> = args
        .ids
        .iter()
        .map(|id| store.resolve(id))
        .collect::<Result<_, _>>()?;
    for id in &ids {
        store.delete(id)?;
        say!("Deleted run {id} from {}", store.path().display());
    }
    Ok(())
}
