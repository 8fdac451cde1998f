//! `graft data diff A.csv B.csv`: what changed between two split manifests.

use anyhow::Context as _;
use graft_data::manifest_diff::{diff, Change, Image, ManifestDiff};
use graft_data::split::read_manifest;

use crate::cli::DiffArgs;

pub fn run(args: DiffArgs) -> anyhow::Result<()> {
    let read = |p: &std::path::Path| {
        read_manifest(p).with_context(|| {
            format!(
                "reading {} (a manifest.csv from graft data split or a run folder)",
                p.display()
            )
        })
    };
    let before = read(&args.before)?;
    let after = read(&args.after)?;
    let d = diff(&before, &after);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print(&args, &d, before.len(), after.len());
    }
    if args.exit_code && !d.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

fn print(args: &DiffArgs, d: &ManifestDiff, before: usize, after: usize) {
    say!(
        "{} → {}: {before} → {after} images, {} unchanged",
        args.before.display(),
        args.after.display(),
        d.unchanged
    );
    if d.is_empty() {
        say!("Same images, labels and splits.");
        return;
    }
    let count = |n: usize, what: &str| {
        if n > 0 {
            say!("  {n:>6} {what}");
        }
    };
    count(d.added.len(), "added");
    count(d.removed.len(), "removed");
    count(d.relabelled().count(), "relabelled");
    count(d.resplit().count(), "moved to another split");
    count(d.moved().count(), "renamed (same bytes, new path)");
    count(d.replaced().count(), "replaced (same path, new bytes)");
    let changed: Vec<_> = d.classes.iter().filter(|(_, [a, b])| a != b).collect();
    if !changed.is_empty() {
        say!("Classes whose counts changed:");
        for (class, [a, b]) in changed {
            say!("  {class}: {a} → {b}");
        }
    }
    let limit = args.limit;
    let list = |title: &str, items: Vec<String>| {
        if items.is_empty() {
            return;
        }
        say!("{title}:");
        for line in items.iter().take(limit) {
            say!("  {line}");
        }
        if items.len() > limit {
            say!(
                "  … and {} more (--limit N, or --json for all)",
                items.len() - limit
            );
        }
    };
    let img = |i: &Image| format!("{} ({}, {})", i.path.display(), i.label, i.split);
    list("Added", d.added.iter().map(img).collect());
    list("Removed", d.removed.iter().map(img).collect());
    let change = |f: fn(&Change) -> String, it: &mut dyn Iterator<Item = &Change>| {
        it.map(f).collect::<Vec<_>>()
    };
    list(
        "Relabelled",
        change(
            |c| {
                format!(
                    "{}: {} → {}",
                    c.after.path.display(),
                    c.before.label,
                    c.after.label
                )
            },
            &mut d.relabelled(),
        ),
    );
    list(
        "Moved to another split",
        change(
            |c| {
                format!(
                    "{}: {} → {}",
                    c.after.path.display(),
                    c.before.split,
                    c.after.split
                )
            },
            &mut d.resplit(),
        ),
    );
    list(
        "Renamed",
        change(
            |c| format!("{} → {}", c.before.path.display(), c.after.path.display()),
            &mut d.moved(),
        ),
    );
    list(
        "Replaced",
        change(|c| c.after.path.display().to_string(), &mut d.replaced()),
    );
}
