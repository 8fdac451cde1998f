//! An ablation as a picture: one horizontal bar per cell (its mean), a whisker for its 95%
//! confidence interval, the reference row in grey and the cells that differ from it (paired
//! test, p < 0.05) in a darker colour.

use std::path::Path;

use plotters::prelude::*;

use crate::plots::{err, short};
use crate::EvalError;

#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub mean: f64,
    pub ci95: f64,
    pub reference: bool,
    /// Differs from the reference at p < 0.05.
    pub significant: bool,
}

pub fn chart(bars: &[Bar], title: &str, out: &Path) -> Result<(), EvalError> {
    let e = err(out);
    if bars.is_empty() {
        return Err(e("no cells to draw".into()));
    }
    graft_data::audit::ensure_font().map_err(&e)?;
    let lo = bars
        .iter()
        .map(|b| b.mean - b.ci95)
        .fold(f64::INFINITY, f64::min);
    let hi = bars
        .iter()
        .map(|b| b.mean + b.ci95)
        .fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.15).max(0.005);
    let (x0, x1) = ((lo - pad).max(0.0), (hi + pad).min(1.0).max(lo + pad));
    let n = bars.len();
    let height = (90 + 34 * n) as u32;
    let root = BitMapBackend::new(out, (940, height.max(220))).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 17))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(400)
        .build_cartesian_2d(x0..x1, -0.5..n as f64 - 0.5)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                // Top to bottom in the table's order.
                short(&bars[n - 1 - i as usize].label, 60)
            } else {
                String::new()
            }
        })
        .x_label_formatter(&|v| format!("{v:.3}"))
        .disable_y_mesh()
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    for (i, b) in bars.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        let colour = if b.reference {
            RGBColor(150, 150, 150)
        } else if b.significant {
            RGBColor(8, 81, 156)
        } else {
            RGBColor(107, 174, 214)
        };
        chart
            .draw_series([Rectangle::new(
                [(x0, y - 0.32), (b.mean, y + 0.32)],
                colour.filled(),
            )])
            .map_err(|x| e(x.to_string()))?;
        let (a, z) = (b.mean - b.ci95, b.mean + b.ci95);
        let whisker = BLACK.stroke_width(2);
        chart
            .draw_series([
                PathElement::new([(a, y), (z, y)], whisker),
                PathElement::new([(a, y - 0.15), (a, y + 0.15)], whisker),
                PathElement::new([(z, y - 0.15), (z, y + 0.15)], whisker),
            ])
            .map_err(|x| e(x.to_string()))?;
    }
    root.present().map_err(|x| e(x.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_with_whiskers_are_drawn() {
        let dir = tempfile::tempdir().expect("tmp");
        let bars = vec![
            Bar {
                label: "head=mlp".into(),
                mean: 0.82,
                ci95: 0.01,
                reference: true,
                significant: false,
            },
            Bar {
                label: "head=linear".into(),
                mean: 0.78,
                ci95: 0.02,
                reference: false,
                significant: true,
            },
        ];
        let out = dir.path().join("a.png");
        chart(&bars, "test macro-F1", &out).expect("chart");
        let img = image::open(&out).expect("png");
        assert!(img.width() >= 700 && img.height() >= 150);
        assert!(chart(&[], "x", &out).is_err());
    }
}
