//! `graft data import-idx`: MNIST-format idx files to an ImageFolder of PNGs.

use anyhow::{bail, Context};
use graft_data::idx;

use crate::cli::ImportIdxArgs;

pub fn run(args: ImportIdxArgs) -> anyhow::Result<()> {
    // Labels are small; reading them here gives the bar its length and the default class names.
    let labels = idx::read_labels(&args.labels)?;
    let classes = class_names(&args, &labels)?;
    let total = args.limit.map_or(labels.len(), |l| l.min(labels.len()));

    let pb = crate::progress::bar(total as u64, "import");
    let result = idx::import_idx(
        &args.images,
        &args.labels,
        &args.out,
        &classes,
        args.limit,
        &|n| pb.inc(n),
    );
    pb.finish();
    let summary = result?;

    say!(
        "imported {} images ({}x{} grey PNG) into {}",
        summary.images,
        summary.cols,
        summary.rows,
        args.out.display()
    );
    let width = summary
        .per_class
        .iter()
        .map(|(c, _)| c.len())
        .max()
        .unwrap_or(0);
    for (class, count) in &summary.per_class {
        say!("  {class:<width$}  {count}");
    }
    Ok(())
}

/// `--classes`, else `--preset`, else "0".."N-1" with N = largest label + 1.
fn class_names(args: &ImportIdxArgs, labels: &[u8]) -> anyhow::Result<Vec<String>> {
    if let Some(classes) = &args.classes {
        // "a, b" on the command line means "a" and "b".
        return Ok(classes.iter().map(|c| c.trim().to_string()).collect());
    }
    if let Some(preset) = &args.preset {
        return idx::preset_classes(preset).with_context(|| {
            format!(
                "unknown preset {preset:?}; known presets: {} (or name the classes with --classes a,b,...)",
                idx::PRESETS.join(", ")
            )
        });
    }
    let Some(&max) = labels.iter().max() else {
        bail!(
            "{} holds no labels; nothing to import",
            args.labels.display()
        );
    };
    Ok((0..=max).map(|l| l.to_string()).collect())
}
