//! Learning curves of several runs in one PNG: a panel per metric, a coloured line per run,
//! so `graft runs compare` shows how runs trained, not only where they ended.

use std::path::Path;

use plotters::prelude::*;

use crate::error::TrackError;
use crate::store::Metric;

/// One run's line in a panel.
pub struct Curve<'a> {
    /// The legend: the run's short id and name.
    pub label: String,
    pub points: &'a [Metric],
}

/// One panel: a metric and its curves.
pub struct Panel<'a> {
    pub metric: String,
    pub curves: Vec<Curve<'a>>,
}

/// A colour per run, distinct on white and for the common colour-vision deficiencies
/// (Okabe and Ito's palette).
const COLOURS: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// Draw `panels` side by side into `out`.
pub fn draw(panels: &[Panel<'_>], out: &Path) -> Result<(), TrackError> {
    let e = |message: String| TrackError::Plot {
        path: out.to_path_buf(),
        message,
    };
    graft_data::audit::ensure_font().map_err(e)?;
    let n = panels.len().max(1);
    let root = BitMapBackend::new(out, (460 * n as u32, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let areas = root.split_evenly((1, n));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        let points = panel.curves.iter().flat_map(|c| c.points.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (i64::MAX, i64::MIN, f64::MAX, f64::MIN);
        for p in points {
            x0 = x0.min(p.step);
            x1 = x1.max(p.step);
            y0 = y0.min(p.value);
            y1 = y1.max(p.value);
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0, 1, 0.0, 1.0);
        }
        if x1 == x0 {
            x1 = x0 + 1;
        }
        let pad = ((y1 - y0) * 0.08).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.metric, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0 as f64..x1 as f64, (y0 - pad)..(y1 + pad))
            .map_err(|x| e(x.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|x| e(x.to_string()))?;
        for (i, curve) in panel.curves.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    curve.points.iter().map(|p| (p.step as f64, p.value)),
                    colour.stroke_width(2),
                ))
                .map_err(|x| e(x.to_string()))?
                .label(curve.label.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|x| e(x.to_string()))?;
    }
    root.present().map_err(|x| e(x.to_string()))
}
