//! The learning-rate range test as a picture: the loss against the rate on a log axis, raw and
//! smoothed, with the suggested rates marked.

use std::path::Path;

use graft_train::lr_find::LrCurve;
use plotters::prelude::*;

use crate::plots::err;
use crate::EvalError;

/// Draw `curve` with a vertical line at each of `marks` (label, rate) into `out` (PNG).
pub fn lr_curve(curve: &LrCurve, marks: &[(&str, f32)], out: &Path) -> Result<(), EvalError> {
    let e = err(out);
    if curve.lrs.len() < 2 {
        return Err(e("fewer than two points to draw".into()));
    }
    graft_data::audit::ensure_font().map_err(&e)?;
    let x: Vec<f64> = curve.lrs.iter().map(|r| f64::from(*r).log10()).collect();
    let (x0, x1) = (x[0], x[x.len() - 1]);
    // The y range from the smoothed curve: the raw losses of the blow-up would squash it.
    let lo = curve.smoothed.iter().copied().fold(f32::INFINITY, f32::min);
    let first = curve.smoothed[0];
    let hi = curve
        .smoothed
        .iter()
        .copied()
        .fold(first, f32::max)
        .min(2.0 * first.max(lo));
    let pad = f64::from((hi - lo).max(1e-3)) * 0.08;
    let (y0, y1) = (f64::from(lo) - pad, f64::from(hi) + pad);
    let root = BitMapBackend::new(out, (640, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Learning-rate range test", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("learning rate")
        .y_desc("training loss")
        .x_label_formatter(&|v| format!("1e{:.0}", v.round()))
        .x_labels(((x1 - x0).round() as usize + 1).clamp(2, 12))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    let inside = |v: f64| v.clamp(y0, y1);
    chart
        .draw_series(x.iter().zip(&curve.losses).map(|(a, l)| {
            Circle::new(
                (*a, inside(f64::from(*l))),
                2,
                RGBColor(190, 190, 190).filled(),
            )
        }))
        .map_err(|x| e(x.to_string()))?;
    chart
        .draw_series(LineSeries::new(
            x.iter()
                .zip(&curve.smoothed)
                .map(|(a, l)| (*a, inside(f64::from(*l)))),
            RGBColor(49, 130, 189).stroke_width(2),
        ))
        .map_err(|x| e(x.to_string()))?
        .label("smoothed loss")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RGBColor(49, 130, 189)));
    let colours = [
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(120, 120, 120),
    ];
    for (i, (label, rate)) in marks.iter().enumerate() {
        let c = colours[i % colours.len()];
        let at = f64::from(*rate).log10();
        chart
            .draw_series(LineSeries::new([(at, y0), (at, y1)], c.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(format!("{label} {rate:.1e}"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}
