//! The picture of one explanation: the crop the model saw, the heatmap, the two blended, the
//! top classes' probabilities, and under them the heatmap of each top class.

use std::path::Path;

use graft_explain::overlay::{heat_image, overlay};
use image::{Rgb, RgbImage};
use plotters::prelude::*;

use crate::plots::{err, short, tidy};
use crate::EvalError;

/// One explained image, ready to draw. Heatmaps are `S × S` over `crop`, scaled to `[0, 1]`.
pub struct Explained<'a> {
    pub crop: &'a RgbImage,
    pub heat: &'a [f32],
    /// First line of the title (file name, method), second (true and predicted class).
    pub title: [String; 2],
    /// Top classes with their probabilities, most probable first.
    pub top: &'a [(String, f32)],
    /// The heatmap for each of the top classes, same order as `top` (may be empty).
    pub class_heats: &'a [Vec<f32>],
    /// Metric lines under the bars.
    pub notes: &'a [String],
}

/// Draw [`Explained`] into one image.
pub fn figure(e: &Explained<'_>, out_for_errors: &Path) -> Result<RgbImage, EvalError> {
    let fail = err(out_for_errors);
    graft_data::audit::ensure_font().map_err(&fail)?;
    let t = 224u32;
    let gap = 12u32;
    let head = 56u32;
    let cols = 4u32;
    let second = !e.class_heats.is_empty();
    let w = cols * (t + gap) + gap;
    let h = head + t + 28 + if second { t + 40 } else { 0 } + gap;
    let mut canvas = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let crop = graft_data::preprocess::resize_bilinear(e.crop, t, t);
    let heat = resample(e.heat, e.crop.width(), t);
    let x_of = |i: u32| gap + i * (t + gap);
    image::imageops::overlay(&mut canvas, &crop, i64::from(x_of(0)), i64::from(head));
    image::imageops::overlay(
        &mut canvas,
        &heat_image(&heat, t),
        i64::from(x_of(1)),
        i64::from(head),
    );
    image::imageops::overlay(
        &mut canvas,
        &overlay(&crop, &heat),
        i64::from(x_of(2)),
        i64::from(head),
    );
    let row2 = head + t + 28 + 24;
    for (i, class_heat) in e.class_heats.iter().take(cols as usize).enumerate() {
        let hm = resample(class_heat, e.crop.width(), t);
        image::imageops::overlay(
            &mut canvas,
            &overlay(&crop, &hm),
            i64::from(x_of(i as u32)),
            i64::from(row2),
        );
    }
    {
        let root = BitMapBackend::with_buffer(canvas.as_mut(), (w, h)).into_drawing_area();
        let text = |s: &str, x: u32, y: u32, size: u32, colour: &RGBColor| {
            root.draw(&Text::new(
                s.to_string(),
                (x as i32, y as i32),
                ("sans-serif", size).into_font().color(colour),
            ))
            .map_err(|x| fail(x.to_string()))
        };
        text(&e.title[0], gap, 8, 18, &BLACK)?;
        text(&e.title[1], gap, 30, 15, &RGBColor(60, 60, 60))?;
        for (i, label) in ["image (model's crop)", "heatmap", "overlay"]
            .iter()
            .enumerate()
        {
            text(
                label,
                x_of(i as u32),
                head + t + 6,
                13,
                &RGBColor(90, 90, 90),
            )?;
        }
        // Top-k bars in the fourth panel.
        let (bx, by) = (x_of(3), head);
        let rows = e.top.len().max(1) as u32;
        let row_h = (t / 2 / rows).clamp(18, 36);
        for (i, (class, p)) in e.top.iter().enumerate() {
            let y = by + i as u32 * row_h;
            let len = (p.clamp(0.0, 1.0) * (t - 8) as f32) as u32;
            root.draw(&Rectangle::new(
                [
                    (bx as i32, (y + 14) as i32),
                    ((bx + len.max(1)) as i32, (y + row_h - 4) as i32),
                ],
                RGBColor(70, 110, 190).filled(),
            ))
            .map_err(|x| fail(x.to_string()))?;
            let label = format!("{} {:.1}%", short(&tidy(class), 18), p * 100.0);
            text(&label, bx, y, 12, &BLACK)?;
        }
        for (i, line) in e.notes.iter().enumerate() {
            let y = by + rows * row_h + 6 + 15 * i as u32;
            if y + 14 < head + t + 24 {
                text(&short(line, 34), bx, y, 12, &RGBColor(60, 60, 60))?;
            }
        }
        if second {
            text(
                "where the model looked for each top class",
                gap,
                head + t + 28,
                14,
                &BLACK,
            )?;
            for (i, (class, p)) in e.top.iter().take(cols as usize).enumerate() {
                let label = format!("{} {:.0}%", short(&tidy(class), 22), p * 100.0);
                text(
                    &label,
                    x_of(i as u32),
                    row2 + t + 4,
                    12,
                    &RGBColor(60, 60, 60),
                )?;
            }
        }
        root.present().map_err(|x| fail(x.to_string()))?;
    }
    Ok(canvas)
}

/// A `from × from` map resampled to `to × to` (nearest; both are already smooth).
fn resample(heat: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || from == 0 {
        return heat.to_vec();
    }
    let mut out = Vec::with_capacity((to * to) as usize);
    for y in 0..to {
        let sy = (y * from / to).min(from - 1);
        for x in 0..to {
            let sx = (x * from / to).min(from - 1);
            out.push(heat.get((sy * from + sx) as usize).copied().unwrap_or(0.0));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set GRAFT_KEEP_PLOTS=DIR to look at it.
    #[test]
    fn the_figure_draws_all_panels() {
        let crop = RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 90]));
        let heat: Vec<f32> = (0..64 * 64)
            .map(|i| {
                let (x, y) = ((i % 64) as f32, (i / 64) as f32);
                (-((x - 40.0).powi(2) + (y - 20.0).powi(2)) / 200.0).exp()
            })
            .collect();
        let top = [("shirt".to_string(), 0.7), ("T-shirt_top".to_string(), 0.2)];
        let heats = vec![heat.clone(), heat.iter().map(|v| 1.0 - v).collect()];
        let notes = ["deletion AUC 0.12".to_string()];
        let e = Explained {
            crop: &crop,
            heat: &heat,
            title: [
                "x.png · Grad-CAM".into(),
                "true shirt, predicted shirt".into(),
            ],
            top: &top,
            class_heats: &heats,
            notes: &notes,
        };
        let img = figure(&e, Path::new("x.png")).expect("draw");
        assert_eq!(img.width(), 4 * (224 + 12) + 12);
        // The hot spot of the heatmap panel (second panel) is red-ish.
        let (hx, hy) = (12 + 236 + 40 * 224 / 64, 56 + 20 * 224 / 64);
        let p = img.get_pixel(hx, hy);
        assert!(p[0] > 180 && p[2] < 80, "{p:?}");
        if let Ok(dir) = std::env::var("GRAFT_KEEP_PLOTS") {
            img.save(Path::new(&dir).join("explanation.png"))
                .expect("save");
        }
    }
}
