//! `graft bench audit DIR`: graft's parallel audit against a straightforward single-threaded
//! pass over the same files, in the same process, after one warm-up read so that both see a
//! warm page cache. Reports ratios; absolute seconds on a shared machine are noise.

use std::time::Instant;

use graft_data::analyze::facts_of;
use graft_data::hash::hamming;

use crate::cli::BenchAuditArgs;
use crate::cmd::peak_rss_mb;

pub fn audit(args: BenchAuditArgs) -> anyhow::Result<()> {
    let dataset = graft_data::scan::scan(&args.dir)?;
    let n = dataset.entries.len();
    println!(
        "bench audit: {} files in {} classes, {} threads",
        n,
        dataset.classes.len(),
        rayon::current_num_threads()
    );

    let t = Instant::now();
    let mut bytes_read = 0u64;
    for e in &dataset.entries {
        bytes_read += std::fs::read(&e.path).map(|b| b.len() as u64).unwrap_or(0);
    }
    let warm = t.elapsed().as_secs_f64();
    println!(
        "  warm-up read     {warm:>8.2} s  ({:.1} MB)",
        bytes_read as f64 / 1e6
    );

    let t = Instant::now();
    let (dataset, facts) =
        graft_run::prepare::scan_and_analyze(&args.dir, &crate::terminal::Terminal)?;
    let report = graft_data::audit::build_report(
        &dataset,
        &facts,
        graft_data::audit::DEFAULT_NEAR_DUP_THRESHOLD,
    );
    let graft_s = t.elapsed().as_secs_f64();
    let graft_rss = peak_rss_mb();
    println!(
        "  graft audit      {graft_s:>8.2} s  {:>9.0} img/s  peak RSS {graft_rss:.0} MB",
        n as f64 / graft_s
    );
    println!(
        "    ({} readable, {} exact-duplicate groups, {} near-duplicate groups)",
        report.images_ok,
        report.exact_duplicates.len(),
        report.near_duplicates.len()
    );
    if args.no_reference {
        return Ok(());
    }

    // Reference: one thread, the same per-image work, then all-pairs near-duplicate search.
    let t = Instant::now();
    let mut ok = Vec::with_capacity(n);
    for e in &dataset.entries {
        if let Ok(bytes) = std::fs::read(&e.path) {
            if let Ok(img) = image::load_from_memory(&bytes) {
                ok.push(facts_of(&bytes, &img.to_rgb8()));
            }
        }
    }
    let mut pairs = 0usize;
    for i in 0..ok.len() {
        for j in i + 1..ok.len() {
            if hamming(ok[i].phash, ok[j].phash) <= graft_data::audit::DEFAULT_NEAR_DUP_THRESHOLD {
                pairs += 1;
            }
        }
    }
    let ref_s = t.elapsed().as_secs_f64();
    println!(
        "  reference (1 thread, all pairs) {ref_s:>8.2} s  {:>9.0} img/s  ({} readable, {pairs} near pairs)",
        n as f64 / ref_s,
        ok.len()
    );
    println!(
        "  speed-up graft / reference: {:.2}x   peak RSS after both: {:.0} MB",
        ref_s / graft_s,
        peak_rss_mb()
    );
    Ok(())
}
