//! `graft ablate`: a matrix of head settings × seeds on a run's cached features, each cell as
//! mean ± 95% confidence interval on test, and a paired t-test of each cell against the
//! reference row (the same seeds, the same test images).
//!
//! Every (cell, seed) is one training, written to `runs.csv` as it finishes: a killed ablation
//! continues where it was. Training is deterministic, so the same seed gives the same row.

pub mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use graft_train::{evaluate, train_head, MeanCi, PairedT};
use graft_tune::{Point, Space};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use plan::AblationFile;

use crate::files::write_file;
use crate::report::{Event, Reporter};
use crate::{RunDir, RunError, Settings};

/// What to ablate.
#[derive(Debug, Clone)]
pub struct AblateRequest<'a> {
    pub run: &'a RunDir,
    pub file: AblationFile,
    /// The folder under `RUN/ablate/`.
    pub name: String,
    /// Forget earlier results in that folder.
    pub fresh: bool,
}

/// One training: a cell with a seed, scored on the evaluation rows.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRun {
    pub cell: usize,
    pub seed: u64,
    pub val_macro_f1: f64,
    pub macro_f1: f64,
    pub accuracy: f64,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellSummary {
    pub cell: usize,
    pub label: String,
    /// Factor → value, as written in the ablation file.
    pub factors: Vec<(String, String)>,
    pub macro_f1: MeanCi,
    pub accuracy: MeanCi,
    /// Against the reference row's macro-F1, seed by seed; none for the reference itself.
    pub vs_reference: Option<PairedT>,
}

/// `ablation.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ablation {
    pub name: String,
    /// The split scored: test, or val when the run has no test split.
    pub split: String,
    pub rows: usize,
    pub seeds: Vec<u64>,
    pub cells: Vec<CellSummary>,
}

/// The summary's file name in an ablation's folder.
const SUMMARY: &str = "ablation.json";

/// The folder of one ablation and its files.
#[derive(Debug, Clone)]
pub struct AblateDir(PathBuf);

impl AblateDir {
    pub fn root(&self) -> &Path {
        &self.0
    }
    /// Every (cell, seed) training, in order: what a rerun resumes from.
    pub fn runs(&self) -> PathBuf {
        self.0.join("runs.csv")
    }
    /// The table: one row per cell.
    pub fn table(&self) -> PathBuf {
        self.0.join("ablation.csv")
    }
    pub fn summary(&self) -> PathBuf {
        self.0.join(SUMMARY)
    }
    pub fn chart(&self) -> PathBuf {
        self.0.join("ablation.png")
    }
    /// The ablation file it was run with: a rerun with another one is refused.
    pub fn plan(&self) -> PathBuf {
        self.0.join("ablation.toml")
    }
    /// `cells/`: one `cell-NNNNN.csv` per cell a cluster task trained alone
    /// (`graft ablate --cell I`); the next whole `graft ablate` gathers them.
    pub fn cell_files(&self) -> PathBuf {
        self.0.join("cells")
    }
    pub fn cell_file(&self, cell: usize) -> PathBuf {
        self.cell_files().join(format!("cell-{cell:05}.csv"))
    }
}

/// An ablation set up: its folder checked against its file, the data loaded, the trainings
/// finished so far read back.
struct Setup {
    space: Space,
    ds: graft_train::Dataset,
    base: graft_train::TrainConfig,
    dir: AblateDir,
    cells: Vec<Point>,
    seeds: Vec<u64>,
    done: Vec<CellRun>,
}

fn setup(req: &AblateRequest<'_>) -> Result<Setup, RunError> {
    let space = req.file.space()?;
    crate::files::check_plain_name(&req.name, "ablation")?;
    let settings = Settings::of_run(req.run)?;
    let ds = crate::heads::pooled_dataset(req.run, &settings)?;
    let base = crate::tune::base_config(&settings)?;
    let dir = AblateDir(req.run.root().join("ablate").join(&req.name));
    crate::files::output_folder(dir.root(), req.fresh)?;
    let plan_text = toml::to_string(&req.file).map_err(|e| RunError::Invalid(e.to_string()))?;
    match std::fs::read_to_string(dir.plan()) {
        Ok(old) if old != plan_text => {
            return Err(RunError::Invalid(format!(
                "{} was run with another ablation file: give --name, or --fresh to replace it",
                dir.root().display()
            )))
        }
        Ok(_) => {}
        Err(_) => write_file(&dir.plan(), plan_text.as_bytes())?,
    }
    let cells = plan::cells(&space);
    let seeds: Vec<u64> = (0..req.file.seeds as u64).map(|i| base.seed + i).collect();
    let done = read_all_runs(&dir, cells.len())?;
    Ok(Setup {
        space,
        ds,
        base,
        dir,
        cells,
        seeds,
        done,
    })
}

/// The cells of an ablation file: an array of `graft ablate --cell I` has this many tasks.
pub fn cell_count(file: &AblationFile) -> Result<usize, RunError> {
    Ok(plan::cells(&file.space()?).len())
}

/// One training of `cell` with `seed`, scored on `rows`.
fn train_cell(s: &Setup, rows: &[usize], cell: usize, seed: u64) -> Result<CellRun, RunError> {
    let mut cfg = crate::tune::config::train_config(&s.space, &s.cells[cell], &s.base)?;
    cfg.seed = seed;
    let out = train_head(&s.ds, &cfg);
    let c = evaluate(&out.head, &s.ds, rows);
    Ok(CellRun {
        cell,
        seed,
        val_macro_f1: out.val_macro_f1,
        macro_f1: c.macro_f1(),
        accuracy: c.accuracy(),
    })
}

/// Train cell `cell` with every seed, alone, as one task of a cluster's array does, into its
/// own file (`cells/cell-NNNNN.csv`); seeds already trained are kept. `None` when the matrix
/// has no such cell.
pub fn ablate_cell(req: &AblateRequest<'_>, cell: usize) -> Result<Option<Vec<CellRun>>, RunError> {
    let s = setup(req)?;
    if cell >= s.cells.len() {
        return Ok(None);
    }
    let rows = if s.ds.test.is_empty() {
        &s.ds.val
    } else {
        &s.ds.test
    };
    let mut runs: Vec<CellRun> = s
        .seeds
        .par_iter()
        .map(
            |&seed| match s.done.iter().find(|r| r.cell == cell && r.seed == seed) {
                Some(r) => Ok(r.clone()),
                None => train_cell(&s, rows, cell, seed),
            },
        )
        .collect::<Result<_, _>>()?;
    runs.sort_by_key(|r| r.seed);
    let dir = s.dir.cell_files();
    std::fs::create_dir_all(&dir).map_err(|e| RunError::write(&dir, e))?;
    write_file(
        &s.dir.cell_file(cell),
        runs_csv(&s.space, &s.cells, &runs)?.as_bytes(),
    )?;
    Ok(Some(runs))
}

/// Run (or continue) the ablation and write its folder.
pub fn ablate(
    req: &AblateRequest<'_>,
    reporter: &dyn Reporter,
) -> Result<(Ablation, AblateDir), RunError> {
    let setup = setup(req)?;
    let Setup {
        space,
        ds,
        dir,
        cells,
        seeds,
        done,
        ..
    } = &setup;
    let (rows, split) = if ds.test.is_empty() {
        (&ds.val, "val")
    } else {
        (&ds.test, "test")
    };
    let todo: Vec<(usize, u64)> = cells
        .iter()
        .enumerate()
        .flat_map(|(c, _)| seeds.iter().map(move |&s| (c, s)))
        .filter(|(c, s)| !done.iter().any(|r| r.cell == *c && r.seed == *s))
        .collect();
    reporter.event(Event::Note(format!(
        "Ablation: {} cells × {} seeds on {} {split} rows{} → {}",
        cells.len(),
        seeds.len(),
        rows.len(),
        if done.is_empty() {
            String::new()
        } else {
            format!("; {} trainings finished before, kept", done.len())
        },
        dir.root().display()
    )));
    let bar = reporter.bar("ablation", (cells.len() * seeds.len()) as u64);
    bar.set_position(done.len() as u64);
    let all = Mutex::new(done.clone());
    todo.into_par_iter()
        .with_max_len(1)
        .try_for_each(|(cell, seed)| -> Result<(), RunError> {
            let run = train_cell(&setup, rows, cell, seed)?;
            let mut g = all
                .lock()
                .map_err(|_| RunError::Invalid("a training panicked".into()))?;
            g.push(run);
            g.sort_by_key(|r| (r.cell, r.seed));
            write_file(&dir.runs(), runs_csv(space, cells, &g)?.as_bytes())?;
            bar.inc(1);
            Ok(())
        })?;
    drop(bar);
    let all = all
        .into_inner()
        .map_err(|_| RunError::Invalid("a training panicked".into()))?;
    // Cells cluster tasks trained alone join the others here.
    write_file(&dir.runs(), runs_csv(space, cells, &all)?.as_bytes())?;
    let summary = summarise(&req.name, split, rows.len(), space, cells, seeds, &all);
    write_file(&dir.table(), table_csv(&summary)?.as_bytes())?;
    crate::files::write_json(&dir.summary(), &summary)?;
    let bars: Vec<graft_eval::ablation_plot::Bar> = summary
        .cells
        .iter()
        .map(|c| graft_eval::ablation_plot::Bar {
            label: c.label.clone(),
            mean: c.macro_f1.mean,
            ci95: c.macro_f1.ci95,
            reference: c.vs_reference.is_none(),
            significant: c.vs_reference.as_ref().is_some_and(|p| p.p_value < 0.05),
        })
        .collect();
    if let Err(e) = graft_eval::ablation_plot::chart(
        &bars,
        &format!("{split} macro-F1, mean ± 95% CI over {} seeds", seeds.len()),
        &dir.chart(),
    ) {
        reporter.event(Event::Note(format!(
            "the ablation chart was not drawn: {e}"
        )));
    }
    Ok((summary, dir.clone()))
}

fn summarise(
    name: &str,
    split: &str,
    rows: usize,
    space: &Space,
    cells: &[Point],
    seeds: &[u64],
    all: &[CellRun],
) -> Ablation {
    let scores = |cell: usize, f: fn(&CellRun) -> f64| -> Vec<f64> {
        seeds
            .iter()
            .filter_map(|s| all.iter().find(|r| r.cell == cell && r.seed == *s).map(f))
            .collect()
    };
    let reference = scores(0, |r| r.macro_f1);
    let cells = cells
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let f1 = scores(i, |r| r.macro_f1);
            CellSummary {
                cell: i,
                label: plan::label(space, cell),
                factors: space
                    .names()
                    .map(str::to_string)
                    .zip(space.format(cell))
                    .collect(),
                vs_reference: (i > 0).then(|| PairedT::of(&reference, &f1)),
                macro_f1: MeanCi::of(f1),
                accuracy: MeanCi::of(scores(i, |r| r.accuracy)),
            }
        })
        .collect();
    Ablation {
        name: name.to_string(),
        split: split.to_string(),
        rows,
        seeds: seeds.to_vec(),
        cells,
    }
}

const RUN_COLUMNS: [&str; 5] = ["cell", "seed", "val_macro_f1", "macro_f1", "accuracy"];

fn runs_csv(space: &Space, cells: &[Point], runs: &[CellRun]) -> Result<String, RunError> {
    let header: Vec<&str> = RUN_COLUMNS.iter().copied().chain(space.names()).collect();
    let rows = runs.iter().map(|r| {
        [
            r.cell.to_string(),
            r.seed.to_string(),
            format!("{}", r.val_macro_f1),
            format!("{}", r.macro_f1),
            format!("{}", r.accuracy),
        ]
        .into_iter()
        .chain(space.format(&cells[r.cell]))
        .collect::<Vec<_>>()
    });
    Ok(graft_data::table::to_csv(&header, rows)?)
}

/// Every training finished: runs.csv's and those of the single-cell files, by (cell, seed).
fn read_all_runs(dir: &AblateDir, cells: usize) -> Result<Vec<CellRun>, RunError> {
    let mut out = read_runs(&dir.runs(), cells)?;
    for f in crate::files::unit_files(&dir.cell_files(), "cell-") {
        out.extend(read_runs(&f, cells)?);
    }
    out.sort_by_key(|r| (r.cell, r.seed));
    out.dedup_by_key(|r| (r.cell, r.seed));
    Ok(out)
}

/// The trainings already in `runs.csv` (none when it does not exist).
fn read_runs(path: &Path, cells: usize) -> Result<Vec<CellRun>, RunError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bad = |why: String| {
        RunError::Invalid(format!(
            "{}: {why} (delete it, or rerun with --fresh)",
            path.display()
        ))
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for rec in reader.records() {
        let rec = rec.map_err(|e| bad(e.to_string()))?;
        let f = |i: usize| rec.get(i).unwrap_or("");
        let num = |i: usize| {
            f(i).parse::<f64>()
                .map_err(|_| bad(format!("{:?} is not a number", f(i))))
        };
        let cell: usize = f(0)
            .parse()
            .map_err(|_| bad(format!("{:?} is not a cell", f(0))))?;
        if cell >= cells {
            return Err(bad(format!("cell {cell} is not in the matrix")));
        }
        out.push(CellRun {
            cell,
            seed: f(1)
                .parse()
                .map_err(|_| bad(format!("{:?} is not a seed", f(1))))?,
            val_macro_f1: num(2)?,
            macro_f1: num(3)?,
            accuracy: num(4)?,
        });
    }
    Ok(out)
}

fn table_csv(a: &Ablation) -> Result<String, RunError> {
    let factor_names: Vec<String> = a
        .cells
        .first()
        .map(|c| c.factors.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let header: Vec<String> = ["cell".to_string()]
        .into_iter()
        .chain(factor_names)
        .chain(
            [
                "seeds",
                "macro_f1_mean",
                "macro_f1_ci95",
                "accuracy_mean",
                "accuracy_ci95",
                "macro_f1_diff_vs_reference",
                "diff_ci95",
                "p_value",
            ]
            .map(str::to_string),
        )
        .collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let rows = a.cells.iter().map(|c| {
        let mut row = vec![c.cell.to_string()];
        row.extend(c.factors.iter().map(|(_, v)| v.clone()));
        row.push(c.macro_f1.values.len().to_string());
        row.push(format!("{:.6}", c.macro_f1.mean));
        row.push(format!("{:.6}", c.macro_f1.ci95));
        row.push(format!("{:.6}", c.accuracy.mean));
        row.push(format!("{:.6}", c.accuracy.ci95));
        match &c.vs_reference {
            Some(p) => {
                row.push(format!("{:.6}", p.diff.mean));
                row.push(format!("{:.6}", p.diff.ci95));
                row.push(format!("{:.4}", p.p_value));
            }
            None => row.extend(["reference".to_string(), String::new(), String::new()]),
        }
        row
    });
    Ok(graft_data::table::to_csv(&header_refs, rows)?)
}

/// The report's "Ablations" section: every `RUN/ablate/*/ablation.json`, a row per cell, and
/// the charts; `None` when the run has none.
pub fn report_section(run: &RunDir) -> Option<graft_eval::report::Section> {
    let mut folders: Vec<PathBuf> = std::fs::read_dir(run.root().join("ablate"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .collect();
    folders.sort();
    let mut section = graft_eval::report::Section {
        header: [
            "ablation",
            "cell",
            "seeds",
            "macro-F1",
            "accuracy",
            "vs reference",
            "p",
        ]
        .map(str::to_string)
        .to_vec(),
        ..Default::default()
    };
    for folder in folders {
        let dir = AblateDir(folder);
        let Ok(a) = crate::files::read_json::<Ablation>(&dir.summary()) else {
            continue;
        };
        for c in &a.cells {
            let (diff, p) = match &c.vs_reference {
                Some(t) => (
                    format!("{:+.4} ± {:.4}", t.diff.mean, t.diff.ci95),
                    format!("{:.3}", t.p_value),
                ),
                None => ("reference".to_string(), String::new()),
            };
            section.rows.push(vec![
                a.name.clone(),
                c.label.clone(),
                c.macro_f1.values.len().to_string(),
                format!("{:.4} ± {:.4}", c.macro_f1.mean, c.macro_f1.ci95),
                format!("{:.4} ± {:.4}", c.accuracy.mean, c.accuracy.ci95),
                diff,
                p,
            ]);
        }
        if let Ok(png) = std::fs::read(dir.chart()) {
            section.figures.push((format!("ablation {}", a.name), png));
        }
    }
    (!section.rows.is_empty()).then_some(section)
}

/// What the ablation written last (at or after `since_ms`) leaves to the tracking store: its
/// folder, each cell's label as a parameter (`cell.N`), and per cell (the step is the cell's
/// number) the mean macro-F1, its interval and the p-value against the reference.
pub fn tracked(run: &RunDir, since_ms: i64) -> Option<crate::tracking::Recorded> {
    let folder = crate::tracking::newest_written(&run.root().join("ablate"), SUMMARY, since_ms)?;
    let a: Ablation = crate::files::read_json(&AblateDir(folder.clone()).summary()).ok()?;
    let mut params = BTreeMap::new();
    params.insert("split".to_string(), a.split.clone());
    let mut metrics = vec![
        ("cells".to_string(), a.cells.len() as f64, 0),
        ("seeds".to_string(), a.seeds.len() as f64, 0),
    ];
    for c in &a.cells {
        let step = c.cell as i64;
        params.insert(format!("cell.{}", c.cell), c.label.clone());
        metrics.push(("cell_macro_f1".into(), c.macro_f1.mean, step));
        metrics.push(("cell_macro_f1_ci95".into(), c.macro_f1.ci95, step));
        metrics.push(("cell_accuracy".into(), c.accuracy.mean, step));
        if let Some(t) = &c.vs_reference {
            metrics.push(("cell_diff_vs_reference".into(), t.diff.mean, step));
            metrics.push(("cell_p_value".into(), t.p_value, step));
        }
    }
    Some(crate::tracking::Recorded {
        folder,
        params,
        metrics,
    })
}
