//! Stage 1 of a run: audit the photo folder (audit.json, classes.png) and split it
//! (manifest.csv), from one scan.

use std::path::Path;

use graft_data::analyze::ImageFacts;
use graft_data::audit::AuditReport;
use graft_data::decode::DecodeError;
use graft_data::scan::Dataset;
use graft_data::split::{parse_ratios, plan_split, write_manifest, SplitOptions};

use crate::error::Context;
use crate::files::write_file;
use crate::report::{Event, Reporter};
use crate::settings::SplitConfig;
use crate::{RunDir, RunError};

/// What audit and split found.
#[derive(Debug)]
pub struct Prepared {
    pub audit: AuditReport,
    /// Images in train, val and test.
    pub totals: [usize; 3],
    /// Where the split was written.
    pub manifest: std::path::PathBuf,
}

/// Every image of `dir` with what decoding it showed, analysed in parallel.
pub fn scan_and_analyze(
    dir: &Path,
    reporter: &dyn Reporter,
) -> Result<(Dataset, Vec<Result<ImageFacts, DecodeError>>), RunError> {
    let dataset = graft_data::scan::scan(dir).context("scanning the dataset folder")?;
    tracing::info!(
        images = dataset.entries.len(),
        classes = dataset.classes.len(),
        "scanned"
    );
    let bar = reporter.bar("decode", dataset.entries.len() as u64);
    let facts = graft_data::analyze::analyze(&dataset, &|n| bar.inc(n));
    Ok((dataset, facts))
}

/// Audit `data` into the run folder and split it into its manifest.
pub fn prepare(
    data: &Path,
    run: &RunDir,
    settings: &SplitConfig,
    reporter: &dyn Reporter,
) -> Result<Prepared, RunError> {
    let (dataset, facts) = scan_and_analyze(data, reporter)?;
    let audit = graft_data::audit::build_report(&dataset, &facts, settings.near_dup_threshold);
    // The same bytes as `graft data audit --json` writes: the audit's own field order.
    let json = serde_json::to_string_pretty(&audit).map_err(|e| RunError::json(&run.audit(), e))?;
    write_file(&run.audit(), (json + "\n").as_bytes())?;
    if let Err(e) = graft_data::audit::plot_class_counts(&audit, &run.class_chart()) {
        reporter.event(Event::Note(format!("  note: class chart not drawn ({e})")));
    }
    let opts = SplitOptions {
        ratios: parse_ratios(&settings.ratios)?,
        seed: settings.seed,
        near_dup_threshold: settings.near_dup_threshold,
        val_from_train: settings.val_from_train.map(|p| p / 100.0),
    };
    let outcome = plan_split(&dataset, &facts, &opts)
        .with_context(|| format!("splitting {}", data.display()))?;
    let manifest = run.manifest();
    write_manifest(&manifest, &outcome.rows)?;
    let mut totals = [0usize; 3];
    for c in outcome.counts.values() {
        for (total, n) in totals.iter_mut().zip(c) {
            *total += n;
        }
    }
    Ok(Prepared {
        audit,
        totals,
        manifest,
    })
}

/// Images at most this many pixels on their longer median side count as small.
pub const SMALL_IMAGE_SIDE: f64 = 64.0;

/// A note when the dataset's images are mostly small (median side ≤ 64 px): ImageNet
/// encoders saw 224-pixel photos, and their frozen features may not transfer to 28- or
/// 32-pixel images, so a net trained from scratch is the baseline to beat.
pub fn small_images_note(audit: &AuditReport, run: &RunDir) -> Option<String> {
    let sizes = audit.sizes.as_ref()?;
    let side = sizes.width.median.max(sizes.height.median);
    (side > 0.0 && side <= SMALL_IMAGE_SIDE).then(|| {
        format!(
            "  note: the images are small (median {:.0}×{:.0} px); frozen ImageNet features may \
             not transfer to them. Compare with a net trained from scratch on the same split: \
             graft baseline {} --arch resnet20",
            sizes.width.median,
            sizes.height.median,
            run.root().display()
        )
    })
}
