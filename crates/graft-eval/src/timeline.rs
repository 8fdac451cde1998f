//! Figures over time for `graft monitor`'s page: one small line chart per quantity (requests,
//! confidence, brightness, latency, errors…), side by side in one PNG, each with what it is
//! held against (the training value as a dashed line, or the training range as a band).

use std::path::PathBuf;

use plotters::prelude::*;

use crate::EvalError;

/// One chart: a quantity per time bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    /// (bucket start, in minutes from the window's start; value). Buckets without requests
    /// are left out, so the line breaks nowhere and jumps over them.
    pub points: Vec<(f64, f64)>,
    /// What the value is held against (a horizontal dashed line).
    pub reference: Option<f64>,
    /// A range the value should stay in (shaded), e.g. the training images' 5–95th percentiles.
    pub band: Option<(f64, f64)>,
}

/// Panels per row of the figure.
const COLUMNS: usize = 2;
const PANEL: (u32, u32) = (460, 240);

/// The panels as one PNG, `COLUMNS` to a row; `span_min` is the window's length in minutes.
pub fn timeline_png(panels: &[Panel], span_min: f64) -> Result<Vec<u8>, EvalError> {
    let e = |why: String| EvalError::Plot {
        path: PathBuf::from("monitor timeline"),
        why,
    };
    graft_data::audit::ensure_font().map_err(e)?;
    let rows = panels.len().div_ceil(COLUMNS).max(1);
    let (w, h) = (PANEL.0 * COLUMNS as u32, PANEL.1 * rows as u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
        let areas = root.split_evenly((rows, COLUMNS));
        let x_max = span_min.max(1.0);
        for (panel, area) in panels.iter().zip(&areas) {
            let values = panel
                .points
                .iter()
                .map(|p| p.1)
                .chain(panel.reference)
                .chain(panel.band.into_iter().flat_map(|(a, b)| [a, b]));
            let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
            let (lo, hi) = if lo > hi {
                (0.0, 1.0)
            } else {
                let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.05).max(1e-6);
                (lo - pad, hi + pad)
            };
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 16))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(52)
                .build_cartesian_2d(0f64..x_max, lo..hi)
                .map_err(|x| e(x.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("minutes")
                .x_labels(6)
                .y_labels(5)
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(|x| e(x.to_string()))?;
            if let Some((a, b)) = panel.band {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, a), (x_max, b)],
                        RGBColor(49, 163, 84).mix(0.15).filled(),
                    )))
                    .map_err(|x| e(x.to_string()))?;
            }
            if let Some(r) = panel.reference {
                chart
                    .draw_series(DashedLineSeries::new(
                        [(0.0, r), (x_max, r)],
                        6,
                        4,
                        RGBColor(49, 163, 84).stroke_width(2),
                    ))
                    .map_err(|x| e(x.to_string()))?;
            }
            let blue = RGBColor(49, 130, 189);
            chart
                .draw_series(LineSeries::new(
                    panel.points.iter().copied(),
                    blue.stroke_width(2),
                ))
                .map_err(|x| e(x.to_string()))?;
            chart
                .draw_series(
                    panel
                        .points
                        .iter()
                        .map(|&p| Circle::new(p, 2, blue.filled())),
                )
                .map_err(|x| e(x.to_string()))?;
        }
        root.present().map_err(|x| e(x.to_string()))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).ok_or_else(|| e("buffer size".into()))?;
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|x| e(x.to_string()))?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_draw_into_one_png() {
        let panel = |title: &str| Panel {
            title: title.into(),
            points: (0..10)
                .map(|i| (f64::from(i) * 3.0, f64::from(i % 3)))
                .collect(),
            reference: Some(1.0),
            band: Some((0.5, 1.5)),
        };
        let png = timeline_png(&[panel("a"), panel("b"), panel("c")], 30.0).expect("png");
        let img = image::load_from_memory(&png).expect("decodes").to_rgb8();
        assert_eq!(img.dimensions(), (2 * PANEL.0, 2 * PANEL.1));
        // Something was drawn in the blue of the lines.
        assert!(img.pixels().any(|p| p.0 == [49, 130, 189]));
        // No panels still gives a picture (an empty window).
        assert!(timeline_png(&[], 0.0).is_ok());
    }
}
