//! `graft extract`: build (or resume, or merge) a feature cache.

use anyhow::Context;
use graft_run::extract::ExtractRequest;

use crate::cli::ExtractArgs;
use crate::terminal::Terminal;

pub fn run(args: ExtractArgs) -> anyhow::Result<()> {
    if args.merge {
        return merge(&args);
    }
    let (Some(data), Some(mut kind)) = (&args.data, args.encoder.clone()) else {
        anyhow::bail!("--data and --encoder are required (unless --merge)");
    };
    args.onnx.apply(&mut kind)?;
    let done = graft_run::extract::extract(
        &ExtractRequest {
            data: data.clone(),
            encoder: kind.clone(),
            out: args.out.clone(),
            batch: args.batch,
            chunk: args.chunk,
            shard: args.shard,
            spatial: args.spatial,
            backend: args.backend,
            force: args.force,
        },
        &Terminal,
    )?;
    if let Some(path) = &args.report {
        let report = ExtractReport {
            backend: done.backend,
            batch: args.batch,
            cache_complete: done.summary.cache_complete,
            encoder: done.encoder.to_string(),
            failed: done.summary.failed.len(),
            images: done.summary.images_encoded,
            images_per_s: done.images_per_second(),
            peak_rss_mb: crate::cmd::peak_rss_mb(),
            seconds: done.seconds(),
            threads: rayon::current_num_threads(),
        };
        let json = serde_json::to_string_pretty(&report)? + "\n";
        graft_data::atomic::write_atomic(path, json.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `--report FILE`: what a benchmark script reads back (keys in alphabetical order, as
/// before it was a type).
#[derive(serde::Serialize)]
struct ExtractReport {
    backend: &'static str,
    batch: usize,
    cache_complete: bool,
    encoder: String,
    failed: usize,
    images: usize,
    images_per_s: f64,
    peak_rss_mb: f64,
    seconds: f64,
    threads: usize,
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
