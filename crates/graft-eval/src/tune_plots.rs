//! Pictures of a hyperparameter search: the objective over trials with the best so far, the
//! objective against each parameter, and the best objective over two parameters.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::plots::err;
use crate::EvalError;

/// A search as the pictures need it, free of the search's own types.
#[derive(Debug, Clone)]
pub struct TunePlot {
    pub names: Vec<String>,
    /// Per parameter: drawn on a log axis.
    pub log_scale: Vec<bool>,
    /// Per parameter: the entries of a choice (its values are indices); empty when numeric.
    pub labels: Vec<Vec<String>>,
    pub trials: Vec<PlotTrial>,
    /// A line to beat (the run's own sweep's best), drawn dashed.
    pub reference: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct PlotTrial {
    pub trial: usize,
    pub values: Vec<f64>,
    pub objective: f64,
}

const POINT: RGBColor = RGBColor(49, 130, 189);
const BEST: RGBColor = RGBColor(214, 39, 40);
const REFERENCE: RGBColor = RGBColor(120, 120, 120);

impl TunePlot {
    fn y_range(&self) -> (f64, f64) {
        let ys = self
            .trials
            .iter()
            .map(|t| t.objective)
            .chain(self.reference);
        let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
        let pad = ((hi - lo) * 0.08).max(0.005);
        (lo - pad, hi + pad)
    }

    fn best(&self) -> Option<&PlotTrial> {
        self.trials
            .iter()
            .reduce(|a, b| if b.objective > a.objective { b } else { a })
    }

    /// The axis coordinate of parameter `p`'s value `v`.
    fn x(&self, p: usize, v: f64) -> f64 {
        if self.log_scale[p] {
            v.log10()
        } else {
            v
        }
    }

    fn x_range(&self, p: usize) -> (f64, f64) {
        if !self.labels[p].is_empty() {
            return (-0.5, self.labels[p].len() as f64 - 0.5);
        }
        let (lo, hi) = self
            .trials
            .iter()
            .map(|t| self.x(p, t.values[p]))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(x), b.max(x))
            });
        let pad = ((hi - lo) * 0.06).max(1e-3);
        (lo - pad, hi + pad)
    }

    fn tick(&self, p: usize, v: f64) -> String {
        if !self.labels[p].is_empty() {
            let i = v.round();
            return if (v - i).abs() < 1e-6 && i >= 0.0 {
                self.labels[p].get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            };
        }
        if self.log_scale[p] {
            format!("{:.0e}", 10f64.powf(v))
        } else {
            format!("{v:.2}")
        }
    }
}

fn check(plot: &TunePlot, e: &dyn Fn(String) -> EvalError) -> Result<(), EvalError> {
    if plot.trials.is_empty() {
        return Err(e("no trials to draw".into()));
    }
    graft_data::audit::ensure_font().map_err(e)?;
    Ok(())
}

/// Every trial's val macro-F1 in trial order, the best so far as a step line, and the
/// reference as a dashed line.
pub fn objective(plot: &TunePlot, out: &Path) -> Result<(), EvalError> {
    let e = err(out);
    check(plot, &e)?;
    let last = plot.trials.iter().map(|t| t.trial).max().unwrap_or(0) as f64;
    let (y0, y1) = plot.y_range();
    let root = BitMapBackend::new(out, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Search: val macro-F1 per trial", ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5..last + 0.5, y0..y1)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("trial")
        .y_desc("val macro-F1")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    chart
        .draw_series(
            plot.trials
                .iter()
                .map(|t| Circle::new((t.trial as f64, t.objective), 3, POINT.filled())),
        )
        .map_err(|x| e(x.to_string()))?
        .label("trial")
        .legend(|(x, y)| Circle::new((x + 8, y), 3, POINT.filled()));
    let mut sorted: Vec<&PlotTrial> = plot.trials.iter().collect();
    sorted.sort_by_key(|t| t.trial);
    let mut steps = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for t in sorted {
        if t.objective > best {
            if best.is_finite() {
                steps.push((t.trial as f64, best));
            }
            best = t.objective;
        }
        steps.push((t.trial as f64, best));
    }
    chart
        .draw_series(LineSeries::new(steps, BEST.stroke_width(2)))
        .map_err(|x| e(x.to_string()))?
        .label("best so far")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BEST.stroke_width(2)));
    if let Some(r) = plot.reference {
        chart
            .draw_series(DashedLineSeries::new(
                [(-0.5, r), (last + 0.5, r)],
                6,
                4,
                REFERENCE.stroke_width(2),
            ))
            .map_err(|x| e(x.to_string()))?
            .label(format!("the run's sweep: {r:.4}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], REFERENCE.stroke_width(2)));
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

/// One panel per parameter: val macro-F1 against its value (log axes for log parameters,
/// one column per entry of a choice), the best trial in red.
pub fn parameters(plot: &TunePlot, out: &Path) -> Result<(), EvalError> {
    let e = err(out);
    check(plot, &e)?;
    let n = plot.names.len().max(1);
    let cols = n.min(3);
    let rows = n.div_ceil(cols);
    let root =
        BitMapBackend::new(out, (320 * cols as u32, 260 * rows as u32 + 36)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    root.draw_text(
        "Val macro-F1 against each parameter (red: the best trial)",
        &TextStyle::from(("sans-serif", 18).into_font()),
        (12, 10),
    )
    .map_err(|x| e(x.to_string()))?;
    let body = root.margin(36, 0, 0, 0);
    let panels = body.split_evenly((rows, cols));
    let best = plot.best().map(|b| b.trial);
    for (p, area) in panels.iter().enumerate().take(plot.names.len()) {
        panel(plot, p, best, area).map_err(|x| e(x.to_string()))?;
    }
    root.present().map_err(|x| e(x.to_string()))
}

fn panel(
    plot: &TunePlot,
    p: usize,
    best: Option<usize>,
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (x0, x1) = plot.x_range(p);
    let (y0, y1) = plot.y_range();
    let categorical = !plot.labels[p].is_empty();
    let mut chart = ChartBuilder::on(area)
        .caption(&plot.names[p], ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(44)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let ticks = if categorical { plot.labels[p].len() } else { 5 };
    chart
        .configure_mesh()
        .x_labels(ticks.max(2))
        .y_labels(5)
        .x_label_formatter(&|v| plot.tick(p, *v))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;
    // A choice's trials are spread a little sideways so that they do not hide each other.
    let jitter = |t: &PlotTrial| {
        if categorical {
            ((t.trial * 37 % 11) as f64 / 10.0 - 0.5) * 0.4
        } else {
            0.0
        }
    };
    chart.draw_series(plot.trials.iter().map(|t| {
        let colour = if Some(t.trial) == best { BEST } else { POINT };
        let size = if Some(t.trial) == best { 5 } else { 3 };
        Circle::new(
            (plot.x(p, t.values[p]) + jitter(t), t.objective),
            size,
            colour.filled(),
        )
    }))?;
    Ok(())
}

/// The best val macro-F1 in each cell of a grid over parameters `a` and `b` (8 bins a side for
/// numeric ones, a column per choice), white where no trial fell, trials as dots.
pub fn heatmap(plot: &TunePlot, a: usize, b: usize, out: &Path) -> Result<(), EvalError> {
    let e = err(out);
    check(plot, &e)?;
    if a >= plot.names.len() || b >= plot.names.len() || a == b {
        return Err(e(
            "the heatmap needs two different parameters of the space".into()
        ));
    }
    let bins = |p: usize| {
        if plot.labels[p].is_empty() {
            8
        } else {
            plot.labels[p].len()
        }
    };
    let (na, nb) = (bins(a), bins(b));
    let (ax0, ax1) = plot.x_range(a);
    let (bx0, bx1) = plot.x_range(b);
    let cell = |v: f64, lo: f64, hi: f64, n: usize| {
        (((v - lo) / (hi - lo) * n as f64).floor().max(0.0) as usize).min(n - 1)
    };
    let mut best = vec![f64::NAN; na * nb];
    for t in &plot.trials {
        let i = cell(plot.x(a, t.values[a]), ax0, ax1, na);
        let j = cell(plot.x(b, t.values[b]), bx0, bx1, nb);
        let c = &mut best[j * na + i];
        if c.is_nan() || t.objective > *c {
            *c = t.objective;
        }
    }
    let (lo, hi) = best
        .iter()
        .filter(|v| !v.is_nan())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    let root = BitMapBackend::new(out, (640, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "Best val macro-F1 by {} and {} ({lo:.3} pale → {hi:.3} dark)",
                plot.names[a], plot.names[b]
            ),
            ("sans-serif", 16),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(ax0..ax1, bx0..bx1)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(plot.names[a].as_str())
        .y_desc(plot.names[b].as_str())
        .x_labels(if plot.labels[a].is_empty() { 6 } else { na })
        .y_labels(if plot.labels[b].is_empty() { 6 } else { nb })
        .x_label_formatter(&|v| plot.tick(a, *v))
        .y_label_formatter(&|v| plot.tick(b, *v))
        .disable_mesh()
        .draw()
        .map_err(|x| e(x.to_string()))?;
    let span = (hi - lo).max(1e-9);
    let (wa, wb) = ((ax1 - ax0) / na as f64, (bx1 - bx0) / nb as f64);
    chart
        .draw_series((0..na * nb).filter(|k| !best[*k].is_nan()).map(|k| {
            let (i, j) = (k % na, k / na);
            let v = (best[k] - lo) / span;
            // Pale yellow → dark green.
            let shade = |from: f64, to: f64| (from + (to - from) * v) as u8;
            let colour = RGBColor(shade(255.0, 0.0), shade(247.0, 104.0), shade(188.0, 55.0));
            let x = ax0 + i as f64 * wa;
            let y = bx0 + j as f64 * wb;
            Rectangle::new([(x, y), (x + wa, y + wb)], colour.filled())
        }))
        .map_err(|x| e(x.to_string()))?;
    chart
        .draw_series(plot.trials.iter().map(|t| {
            Circle::new(
                (plot.x(a, t.values[a]), plot.x(b, t.values[b])),
                2,
                BLACK.mix(0.6).filled(),
            )
        }))
        .map_err(|x| e(x.to_string()))?;
    if let Some(t) = plot.best() {
        chart
            .draw_series([Cross::new(
                (plot.x(a, t.values[a]), plot.x(b, t.values[b])),
                6,
                BEST.stroke_width(3),
            )])
            .map_err(|x| e(x.to_string()))?;
    }
    root.present().map_err(|x| e(x.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot() -> TunePlot {
        TunePlot {
            names: vec!["head".into(), "lr".into(), "dropout".into()],
            log_scale: vec![false, true, false],
            labels: vec![vec!["linear".into(), "mlp".into()], vec![], vec![]],
            trials: (0..20)
                .map(|i| PlotTrial {
                    trial: i,
                    values: vec![
                        (i % 2) as f64,
                        10f64.powf(-4.0 + i as f64 / 8.0),
                        i as f64 / 40.0,
                    ],
                    objective: 0.5 + 0.02 * i as f64 - 0.001 * (i * i) as f64,
                })
                .collect(),
            reference: Some(0.6),
        }
    }

    #[test]
    fn the_three_pictures_are_drawn() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = plot();
        for (name, r) in [
            (
                "objective.png",
                objective(&p, &dir.path().join("objective.png")),
            ),
            (
                "parameters.png",
                parameters(&p, &dir.path().join("parameters.png")),
            ),
            (
                "heatmap.png",
                heatmap(&p, 1, 0, &dir.path().join("heatmap.png")),
            ),
        ] {
            r.unwrap_or_else(|e| panic!("{name}: {e}"));
            let img = image::open(dir.path().join(name)).expect("png");
            assert!(img.width() >= 600, "{name}");
        }
        assert!(heatmap(&p, 1, 1, &dir.path().join("x.png")).is_err());
        let empty = TunePlot {
            trials: vec![],
            ..plot()
        };
        assert!(objective(&empty, &dir.path().join("y.png")).is_err());
    }
}
