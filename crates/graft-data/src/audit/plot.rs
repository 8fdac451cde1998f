//! Class-distribution bar chart (PNG). Text needs a TrueType font: we use the system's
//! (DejaVu/Liberation/…) or `GRAFT_FONT`, since we ship none.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::AuditReport;
use crate::DataError;

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Register a sans-serif font with plotters once per process.
pub fn ensure_font() -> Result<(), String> {
    static RESULT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    RESULT
        .get_or_init(|| {
            let mut candidates: Vec<PathBuf> = Vec::new();
            if let Some(p) = std::env::var_os("GRAFT_FONT") {
                candidates.push(p.into());
            }
            candidates.extend(FONT_CANDIDATES.iter().map(PathBuf::from));
            for path in candidates {
                if let Ok(bytes) = std::fs::read(&path) {
                    // Leaked once: plotters keeps fonts for the life of the process.
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                        .is_ok()
                    {
                        tracing::debug!(font = %path.display(), "registered plot font");
                        return Ok(());
                    }
                }
            }
            Err("no TrueType font found; install fonts-dejavu-core or set GRAFT_FONT=/path/to/font.ttf".into())
        })
        .clone()
}

/// Horizontal bar chart of readable images per class.
pub fn plot_class_counts(report: &AuditReport, out: &Path) -> Result<(), DataError> {
    let err = |why: String| DataError::Plot {
        path: out.to_path_buf(),
        why,
    };
    ensure_font().map_err(err)?;
    let n = report.classes.len().max(1);
    let height = (80 + 26 * n) as u32;
    let max = report
        .classes
        .iter()
        .map(|c| c.images)
        .max()
        .unwrap_or(1)
        .max(1);
    let root = BitMapBackend::new(out, (900, height.max(200))).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let caption = match &report.imbalance {
        Some(im) => format!(
            "Images per class ({} total, imbalance {:.1}:1)",
            report.images_ok, im.ratio
        ),
        None => format!("Images per class ({} total)", report.images_ok),
    };
    let label_w = report
        .classes
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(5) as u32
        * 8
        + 20;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(label_w.clamp(60, 320))
        .build_cartesian_2d(0usize..(max + max / 8 + 1), (0..n).into_segmented())
        .map_err(|e| err(e.to_string()))?;
    let names: Vec<String> = report.classes.iter().map(|c| c.name.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            // First class at the top.
            SegmentValue::CenterOf(i) if *i < n => {
                names.get(n - 1 - *i).cloned().unwrap_or_default()
            }
            _ => String::new(),
        })
        .x_desc("images")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let bars = report.classes.iter().enumerate().map(|(i, c)| {
        let mut bar = Rectangle::new(
            [
                (0, SegmentValue::Exact(n - 1 - i)),
                (c.images, SegmentValue::Exact(n - i)),
            ],
            RGBColor(70, 130, 180).filled(),
        );
        bar.set_margin(3, 3, 0, 0);
        bar
    });
    chart.draw_series(bars).map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(report.classes.iter().enumerate().map(|(i, c)| {
            Text::new(
                format!(" {}", c.images),
                (c.images, SegmentValue::CenterOf(n - 1 - i)),
                ("sans-serif", 13).into_font(),
            )
        }))
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
