//! PNG figures of an evaluation, drawn with plotters (text needs a system TrueType font; see
//! `graft_data::audit::ensure_font`).

use std::path::Path;

use image::RgbImage;
use plotters::prelude::*;

use crate::calibration::Calibration;
use crate::EvalError;
use graft_train::Confusion;

pub(crate) fn err(path: &Path) -> impl Fn(String) -> EvalError + '_ {
    move |why| EvalError::Plot {
        path: path.to_path_buf(),
        why,
    }
}

/// Folder names as people read them: `Tomato___Late_blight` → `Tomato · Late blight`.
pub(crate) fn tidy(name: &str) -> String {
    name.replace("___", " · ").replace('_', " ")
}

pub(crate) fn short(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

/// Row-normalised confusion matrix as a heatmap: rows true class, columns predicted; cells
/// carry the share of the row (as a percentage) when there is room.
pub fn confusion_matrix(c: &Confusion, classes: &[String], out: &Path) -> Result<(), EvalError> {
    let e = err(out);
    graft_data::audit::ensure_font().map_err(&e)?;
    let n = classes.len().max(1);
    let cell = (600 / n).clamp(12, 48) as i32;
    // Past 20 classes, rotated names under the columns become unreadable: columns get numbers
    // and each row shows its number and name.
    let numbered = n > 20;
    let row_label = |t: usize| {
        if numbered {
            format!("{:>2} {}", t + 1, short(&tidy(&classes[t]), 28))
        } else {
            short(&tidy(&classes[t]), 18)
        }
    };
    let label_w = if numbered { 250 } else { 150 };
    // Column labels are written downwards: about 8 px per character, at most 18 characters.
    let longest = if numbered {
        3
    } else {
        classes
            .iter()
            .map(|c| tidy(c).chars().count().min(18))
            .max()
            .unwrap_or(4) as i32
    };
    let (w, h) = (
        label_w + cell * n as i32 + 40,
        70 + cell * n as i32 + 8 * longest,
    );
    let root = BitMapBackend::new(out, (w as u32, h as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let title = TextStyle::from(("sans-serif", 20).into_font());
    root.draw_text(
        &format!("Confusion matrix (row-normalised), {} images", c.total()),
        &title,
        (10, 10),
    )
    .map_err(|x| e(x.to_string()))?;
    let norm = c.row_normalised();
    let (x0, y0) = (label_w, 50);
    let small = ("sans-serif", (cell / 2).clamp(9, 14)).into_font();
    let label_font = ("sans-serif", 13).into_font();
    for t in 0..n {
        for p in 0..n {
            let v = norm[t * n + p];
            // White → dark blue.
            let shade = |lo: f64, hi: f64| (lo + (hi - lo) * v) as u8;
            let colour = RGBColor(shade(255.0, 8.0), shade(255.0, 48.0), shade(255.0, 107.0));
            let (x, y) = (x0 + p as i32 * cell, y0 + t as i32 * cell);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                colour.filled(),
            ))
            .map_err(|x| e(x.to_string()))?;
            if n <= 20 && v >= 0.005 {
                let text_colour = if v > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    format!("{:.0}", v * 100.0),
                    (x + 3, y + cell / 3),
                    small.clone().color(&text_colour),
                ))
                .map_err(|x| e(x.to_string()))?;
            }
        }
        let ty = y0 + t as i32 * cell + cell / 3;
        root.draw(&Text::new(row_label(t), (8, ty), label_font.clone()))
            .map_err(|x| e(x.to_string()))?;
    }
    let below = y0 + n as i32 * cell + 6;
    for (p, name) in classes.iter().enumerate() {
        let x = x0 + p as i32 * cell + cell / 3;
        let style = TextStyle::from(label_font.clone()).transform(FontTransform::Rotate90);
        let label = if numbered {
            (p + 1).to_string()
        } else {
            short(&tidy(name), 18)
        };
        root.draw_text(&label, &style, (x, below))
            .map_err(|x| e(x.to_string()))?;
    }
    root.draw_text(
        "true ↓   predicted →",
        &TextStyle::from(label_font),
        (8, y0 - 18),
    )
    .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}

/// Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration.
pub fn reliability(cal: &Calibration, out: &Path) -> Result<(), EvalError> {
    let e = err(out);
    graft_data::audit::ensure_font().map_err(&e)?;
    let root = BitMapBackend::new(out, (520, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Reliability (ECE {:.3})", cal.ece),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("confidence")
        .y_desc("accuracy")
        .disable_mesh()
        .draw()
        .map_err(|x| e(x.to_string()))?;
    chart
        .draw_series(cal.bins.iter().filter(|b| b.count > 0).map(|b| {
            Rectangle::new(
                [(b.lo + 0.004, 0.0), (b.hi - 0.004, b.accuracy)],
                RGBColor(49, 130, 189).filled(),
            )
        }))
        .map_err(|x| e(x.to_string()))?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            BLACK.stroke_width(1),
        ))
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}

/// One gallery tile: the image and its caption lines.
pub struct Tile {
    pub image: Option<RgbImage>,
    pub lines: Vec<String>,
    /// Red caption (a mistake) or green (right).
    pub wrong: bool,
    /// Attention weights over the model's input crop (`side × side`, row-major), drawn over the
    /// thumbnail; the image is then cut to that crop (`crop`: its share of the shorter side).
    pub heat: Option<Heat>,
}

/// Where an attention head looked, over the centre crop the encoder saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Heat {
    pub weights: Vec<f32>,
    pub side: usize,
    /// Crop side / shorter image side (224/256 for the usual preprocessing).
    pub crop: f32,
}

/// The centre square the encoder saw, with the heatmap blended in (red where the weight is
/// highest, fading to the untouched image where it is low).
fn with_heat(img: &RgbImage, heat: &Heat, thumb: u32) -> RgbImage {
    let short = img.width().min(img.height());
    let side = ((short as f32 * heat.crop).round() as u32).clamp(1, short);
    let (x0, y0) = ((img.width() - side) / 2, (img.height() - side) / 2);
    let crop = image::imageops::crop_imm(img, x0, y0, side, side).to_image();
    let mut small = graft_data::preprocess::resize_bilinear(&crop, thumb, thumb);
    // Min-max per image, as Grad-CAM pictures are drawn: the image's own hottest place is red.
    let max = heat.weights.iter().copied().fold(f32::MIN, f32::max);
    let min = heat.weights.iter().copied().fold(f32::MAX, f32::min);
    if max <= min || heat.side == 0 || heat.weights.len() != heat.side * heat.side {
        return small;
    }
    let n = heat.side as f32;
    let at = |gx: usize, gy: usize| {
        heat.weights[gy.min(heat.side - 1) * heat.side + gx.min(heat.side - 1)]
    };
    for (x, y, p) in small.enumerate_pixels_mut() {
        // Bilinear over cell centres.
        let fx = ((x as f32 + 0.5) / thumb as f32 * n - 0.5).max(0.0);
        let fy = ((y as f32 + 0.5) / thumb as f32 * n - 0.5).max(0.0);
        let (ix, iy) = (fx as usize, fy as usize);
        let (tx, ty) = (fx - ix as f32, fy - iy as f32);
        let v = (at(ix, iy) * (1.0 - tx) + at(ix + 1, iy) * tx) * (1.0 - ty)
            + (at(ix, iy + 1) * (1.0 - tx) + at(ix + 1, iy + 1) * tx) * ty;
        let r = ((v - min) / (max - min)).clamp(0.0, 1.0);
        let a = 0.6 * r;
        let warm = [255.0, 200.0 * (1.0 - r), 0.0];
        for (c, w) in p.0.iter_mut().zip(warm) {
            *c = (f32::from(*c) * (1.0 - a) + w * a).round() as u8;
        }
    }
    small
}

/// A grid of thumbnails with captions under a title.
pub fn gallery(title: &str, tiles: &[Tile], out: &Path) -> Result<(), EvalError> {
    let e = err(out);
    graft_data::audit::ensure_font().map_err(&e)?;
    let (thumb, cols) = (128u32, 6u32);
    let cap = 40u32;
    let rows = (tiles.len() as u32).div_ceil(cols).max(1);
    let (w, h) = (cols * (thumb + 12) + 12, 44 + rows * (thumb + cap + 12));
    let mut canvas = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (i, t) in tiles.iter().enumerate() {
        let (cx, cy) = (
            12 + (i as u32 % cols) * (thumb + 12),
            44 + (i as u32 / cols) * (thumb + cap + 12),
        );
        if let Some(img) = &t.image {
            let small = match &t.heat {
                Some(heat) => with_heat(img, heat, thumb),
                None => graft_data::preprocess::resize_bilinear(img, thumb, thumb),
            };
            image::imageops::overlay(&mut canvas, &small, i64::from(cx), i64::from(cy));
        }
    }
    {
        let root = BitMapBackend::with_buffer(canvas.as_mut(), (w, h)).into_drawing_area();
        root.draw_text(
            title,
            &TextStyle::from(("sans-serif", 20).into_font()),
            (12, 12),
        )
        .map_err(|x| e(x.to_string()))?;
        for (i, t) in tiles.iter().enumerate() {
            let (cx, cy) = (
                12 + (i as u32 % cols) * (thumb + 12),
                44 + (i as u32 / cols) * (thumb + cap + 12),
            );
            let colour = if t.wrong {
                RGBColor(190, 30, 30)
            } else {
                RGBColor(30, 120, 40)
            };
            for (k, line) in t.lines.iter().take(2).enumerate() {
                root.draw(&Text::new(
                    short(line, 20),
                    (cx as i32, (cy + thumb + 4 + 17 * k as u32) as i32),
                    ("sans-serif", 13).into_font().color(&colour),
                ))
                .map_err(|x| e(x.to_string()))?;
            }
        }
        root.present().map_err(|x| e(x.to_string()))?;
    }
    canvas.save(out).map_err(|x| e(x.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_reddens_where_the_weight_is() {
        // A grey 200×100 image; all weight on the top-left cell of a 2×2 map.
        let img = RgbImage::from_pixel(200, 100, image::Rgb([128, 128, 128]));
        let heat = Heat {
            weights: vec![1.0, 0.0, 0.0, 0.0],
            side: 2,
            crop: 0.875,
        };
        let out = with_heat(&img, &heat, 64);
        assert_eq!(out.dimensions(), (64, 64));
        let (hot, cold) = (out.get_pixel(4, 4), out.get_pixel(60, 60));
        assert!(hot[0] > 200 && hot[2] < 80, "{hot:?}");
        assert_eq!(cold, &image::Rgb([128, 128, 128]));
    }

    /// 38 PlantVillage-style classes: the figure stays a readable size, names are tidied and
    /// columns numbered. Set GRAFT_KEEP_PLOTS=DIR to look at it.
    #[test]
    fn a_38_class_confusion_matrix_stays_legible() {
        let crops = [
            "Apple",
            "Corn_(maize)",
            "Grape",
            "Potato",
            "Tomato",
            "Pepper,_bell",
        ];
        let classes: Vec<String> = (0..38)
            .map(|i| {
                format!(
                    "{}___{}",
                    crops[i % crops.len()],
                    [
                        "healthy",
                        "Late_blight",
                        "Spider_mites Two-spotted_spider_mite"
                    ][i % 3]
                ) + &format!("_{i}")
            })
            .collect();
        let mut y = Vec::new();
        let mut p = Vec::new();
        for t in 0..38 {
            // 35:1 imbalance, and some confusion with the neighbour.
            let count = if t == 0 { 70 } else { 2 + t % 5 };
            for k in 0..count {
                y.push(t);
                p.push(if k % 4 == 0 { (t + 1) % 38 } else { t });
            }
        }
        let conf = Confusion::from_pairs(38, &y, &p);
        let dir = tempfile::tempdir().expect("tmp");
        let keep = std::env::var_os("GRAFT_KEEP_PLOTS").map(std::path::PathBuf::from);
        let out = keep
            .unwrap_or_else(|| dir.path().to_path_buf())
            .join("confusion38.png");
        confusion_matrix(&conf, &classes, &out).expect("render");
        let img = image::open(&out).expect("png");
        assert!(
            img.width() <= 1000 && img.height() <= 800,
            "{}×{}",
            img.width(),
            img.height()
        );
        assert_eq!(tidy("Tomato___Late_blight"), "Tomato · Late blight");
    }
}
