//! `graft ablate --run RUN FILE`: the matrix trained, the table printed.

use graft_run::ablate::{ablate, AblateRequest};

use crate::cli::AblateArgs;
use crate::terminal::Terminal;

pub fn run(args: AblateArgs) -> anyhow::Result<()> {
    let dir = args.target.checked_run()?;
    let (file, name) = args.target.read()?;
    let reporter: &dyn graft_run::Reporter = if args.json {
        &graft_run::Silent
    } else {
        &Terminal
    };
    let req = AblateRequest {
        run: &dir,
        file,
        name,
        fresh: args.fresh,
    };
    if let Some(cell) = args.cell {
        match graft_run::ablate::ablate_cell(&req, cell)? {
            Some(runs) => {
                for r in runs {
                    say!(
                        "Cell {cell}, seed {}: macro-F1 {:.4}, accuracy {:.4}",
                        r.seed,
                        r.macro_f1,
                        r.accuracy
                    );
                }
            }
            None => say!("Cell {cell}: not in this matrix (nothing to train)"),
        }
        return Ok(());
    }
    let params = graft_track::Params::from([
        ("name".to_string(), req.name.clone()),
        ("seeds".to_string(), req.file.seeds.to_string()),
        (
            "factors".to_string(),
            serde_json::to_string(&req.file.factors).unwrap_or_default(),
        ),
    ]);
    let (a, out) = crate::tracked::tracked(graft_run::Job::Ablate, &dir, params, || {
        ablate(&req, reporter).map_err(|e| anyhow::anyhow!("{e} (see `graft ablate --help`)"))
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&a)?);
        return Ok(());
    }
    let width = a
        .cells
        .iter()
        .map(|c| c.label.len())
        .max()
        .unwrap_or(4)
        .max(4);
    say!(
        "{:<width$}  {:>17}  {:>17}  {:>17}  {:>6}",
        "cell",
        format!("{} macro-F1", a.split),
        "accuracy",
        "vs reference",
        "p"
    );
    for c in &a.cells {
        let (diff, p) = match &c.vs_reference {
            Some(t) => (
                format!("{:+.4} ± {:.4}", t.diff.mean, t.diff.ci95),
                format!("{:.3}", t.p_value),
            ),
            None => ("reference".to_string(), String::new()),
        };
        say!(
            "{:<width$}  {:>17}  {:>17}  {:>17}  {:>6}",
            c.label,
            format!("{:.4} ± {:.4}", c.macro_f1.mean, c.macro_f1.ci95),
            format!("{:.4} ± {:.4}", c.accuracy.mean, c.accuracy.ci95),
            diff,
            p
        );
    }
    say!(
        "Mean ± 95% interval over seeds {:?} on {} {} images; p: paired t-test against the \
         reference, seed by seed.",
        a.seeds,
        a.rows,
        a.split
    );
    say!(
        "Wrote {} (ablation.csv, ablation.png, runs.csv)",
        out.root().display()
    );
    Ok(())
}
