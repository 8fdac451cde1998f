//! `graft data split DIR`

use anyhow::Context;
use graft_data::scan::Layout;
use graft_data::split::{parse_ratios, plan_split, write_manifest, SplitOptions};

use crate::cli::SplitArgs;

pub fn run(args: SplitArgs) -> anyhow::Result<()> {
    let ratios = parse_ratios(&args.ratios)?;
    let val_from_train = match args.val_from_train {
        Some(p) if !(0.0..100.0).contains(&p) || p == 0.0 => {
            anyhow::bail!("--val-from-train must be a percentage between 0 and 100, got {p}")
        }
        Some(p) => Some(p / 100.0),
        None => None,
    };
    let (dataset, facts) =
        graft_run::prepare::scan_and_analyze(&args.dir, &crate::terminal::Terminal)?;
    let opts = SplitOptions {
        ratios,
        seed: args.seed,
        near_dup_threshold: args.near_dup_threshold,
        val_from_train,
    };
    let outcome = plan_split(&dataset, &facts, &opts)
        .with_context(|| format!("splitting {}", args.dir.display()))?;
    write_manifest(&args.out, &outcome.rows)?;

    match outcome.layout {
        Layout::ImageFolder => say!(
            "Split {} images of {} classes {:.0}/{:.0}/{:.0} (seed {}).",
            outcome.rows.len(),
            outcome.classes.len(),
            ratios[0] * 100.0,
            ratios[1] * 100.0,
            ratios[2] * 100.0,
            args.seed
        ),
        Layout::PreSplit => say!(
            "Kept the folder's own train/val/test split for {} images of {} classes{}.",
            outcome.rows.len(),
            outcome.classes.len(),
            if val_from_train.is_some() {
                " (val held out from train)"
            } else {
                ""
            }
        ),
    }
    let w = outcome
        .classes
        .iter()
        .map(|c| c.len())
        .max()
        .unwrap_or(5)
        .max(5);
    say!(
        "  {:<w$}  {:>7} {:>7} {:>7}",
        "class",
        "train",
        "val",
        "test"
    );
    let mut totals = [0usize; 3];
    for (class, c) in &outcome.counts {
        say!("  {class:<w$}  {:>7} {:>7} {:>7}", c[0], c[1], c[2]);
        for s in 0..3 {
            totals[s] += c[s];
        }
    }
    say!(
        "  {:<w$}  {:>7} {:>7} {:>7}",
        "total",
        totals[0],
        totals[1],
        totals[2]
    );
    if outcome.clusters_kept_together > 0 {
        say!(
            "{} duplicate/near-duplicate cluster(s) kept within one split.",
            outcome.clusters_kept_together
        );
    }
    if outcome.clusters_across_splits > 0 {
        say!(
            "warning: {} duplicate cluster(s) span the folder's own splits (test leakage); \
             run `graft data audit` to see them.",
            outcome.clusters_across_splits
        );
    }
    if outcome.layout == Layout::PreSplit && totals[1] == 0 {
        say!("note: no val split. Pass --val-from-train 15 to hold out 15% of each train class.");
    }
    if !outcome.excluded.is_empty() {
        say!(
            "{} unreadable file(s) left out (run `graft data audit` for the list).",
            outcome.excluded.len()
        );
    }
    say!("Manifest: {}", args.out.display());
    Ok(())
}
