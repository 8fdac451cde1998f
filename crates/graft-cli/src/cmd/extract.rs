//! `graft extract`: build (or resume, or merge) a feature cache.

use anyhow::Context;
use graft_features::{ExtractOptions, Source};

use crate::cli::ExtractArgs;

use graft_run::encoder::{open_encoder, weights_id};

pub fn run(args: ExtractArgs) -> anyhow::Result<()> {
    if args.merge {
        return merge(&args);
    }
    let (Some(data), Some(kind)) = (&args.data, args.encoder) else {
        anyhow::bail!("--data and --encoder are required (unless --merge)");
    };
    if !data.exists() {
        anyhow::bail!("{} does not exist", data.display());
    }
    // Encoder before data: loading weights fails fast, hashing a large folder does not.
    let mut encoder = open_encoder(kind, args.backend)?;
    let source = Source::open(data).with_context(|| format!("reading {}", data.display()))?;
    let opts = ExtractOptions {
        batch: args.batch,
        chunk: args.chunk,
        shard: args.shard,
        spatial: args.spatial,
        force: args.force,
        ..ExtractOptions::new(kind, weights_id(kind), kind.preprocess())
    };
    note!(
        "Extracting {} images with {kind} ({}) into {}{}",
        source.len(),
        encoder.backend(),
        args.out.display(),
        if args.shard.count > 1 {
            format!(", shard {}", args.shard)
        } else {
            String::new()
        }
    );
    let pb = crate::progress::bar(0, "extract");
    let summary = graft_features::extract(&args.out, &source, encoder.as_mut(), &opts, &mut |p| {
        pb.set_length(p.todo as u64);
        pb.set_position(p.done as u64);
    })
    .with_context(|| format!("extracting features into {}", args.out.display()))?;
    pb.finish_and_clear();
    graft_features::Origin::of(data).write(&args.out)?;

    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    say!(
        "Encoded {} images in {:.1} s ({:.1} images/s); chunks: {} written, {} already done, \
         {} owned of {}.",
        summary.images_encoded,
        secs,
        summary.images_encoded as f64 / secs,
        summary.chunks_written,
        summary.chunks_skipped,
        summary.chunks_owned,
        summary.chunks_total
    );
    if !summary.failed.is_empty() {
        say!(
            "{} image(s) could not be used (zero rows, left out of training):",
            summary.failed.len()
        );
        for f in summary.failed.iter().take(10) {
            say!("  {}: {}", f.path, f.reason);
        }
        if summary.failed.len() > 10 {
            say!(
                "  … and {} more (see failed-*.json)",
                summary.failed.len() - 10
            );
        }
    }
    if let Some(path) = &args.report {
        let report = serde_json::json!({
            "encoder": kind.name(),
            "backend": encoder.backend(),
            "images": summary.images_encoded,
            "failed": summary.failed.len(),
            "seconds": secs,
            "images_per_s": summary.images_encoded as f64 / secs,
            "batch": args.batch,
            "threads": rayon::current_num_threads(),
            "peak_rss_mb": crate::cmd::peak_rss_mb(),
            "cache_complete": summary.cache_complete,
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if summary.cache_complete {
        say!("Cache complete: {}", args.out.display());
    } else {
        say!(
            "This part is done; the cache is complete once every --shard i/{} has run \
             (then: graft extract --merge --out DIR --from …).",
            args.shard.count
        );
    }
    Ok(())
}

fn merge(args: &ExtractArgs) -> anyhow::Result<()> {
    let report = graft_features::merge(&args.out, &args.from)
        .with_context(|| format!("merging into {}", args.out.display()))?;
    for (k, dir) in &report.copied {
        tracing::info!("chunk {k} copied from {}", dir.display());
    }
    if !report.is_complete() {
        anyhow::bail!(
            "{} of {} chunks are missing: {}",
            report.missing.len(),
            report.chunks_total,
            report.describe_missing()
        );
    }
    say!(
        "Cache complete: {} chunks ({} copied in), {} images in {}.",
        report.chunks_total,
        report.copied.len(),
        report.header.total,
        args.out.display()
    );
    Ok(())
}
