//! A from-scratch baseline's learning curve: validation macro-F1 per epoch for each net,
//! against a dashed line at the frozen-encoder run's validation macro-F1.

use std::path::Path;

use plotters::prelude::*;

use crate::plots::err;
use crate::EvalError;

/// Draw each `(label, val macro-F1 per epoch)` series and `reference` (label, value) into
/// `out` (PNG).
pub fn curve(
    series: &[(String, Vec<f64>)],
    reference: Option<(&str, f64)>,
    out: &Path,
) -> Result<(), EvalError> {
    let e = err(out);
    let epochs = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    if epochs == 0 {
        return Err(e("no epochs to draw".into()));
    }
    graft_data::audit::ensure_font().map_err(&e)?;
    let values = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .chain(reference.map(|r| r.1));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let pad = ((hi - lo) * 0.1).max(0.01);
    let (y0, y1) = ((lo - pad).max(0.0), (hi + pad).min(1.0));
    let root = BitMapBackend::new(out, (640, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Trained from scratch: validation macro-F1",
            ("sans-serif", 19),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.5..epochs as f64 + 0.5, y0..y1)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("val macro-F1")
        .x_labels(epochs.clamp(2, 15))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    let colours = [
        RGBColor(49, 130, 189),
        RGBColor(230, 85, 13),
        RGBColor(49, 163, 84),
    ];
    for (i, (label, v)) in series.iter().enumerate() {
        let c = colours[i % colours.len()];
        let points: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .map(|(k, f)| ((k + 1) as f64, *f))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(|x| e(x.to_string()))?;
    }
    if let Some((label, v)) = reference {
        let grey = RGBColor(90, 90, 90);
        // Dashes by hand: 40 segments across the axis, each over half its slot.
        let slot = epochs as f64 / 40.0;
        let dashes = (0..40).map(|k| {
            let x = 0.5 + k as f64 * slot;
            PathElement::new([(x, v), (x + slot * 0.5, v)], grey.stroke_width(2))
        });
        chart
            .draw_series(dashes)
            .map_err(|x| e(x.to_string()))?
            .label(label.to_string())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], grey.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}
