//! A heatmap in colour: the ramp, the map alone, the map blended over the photo.

use image::{Rgb, RgbImage};

/// A colour ramp from dark blue (0) through cyan, green and yellow to red (1): cold and hot
/// read at a glance, and it stays ordered in greyscale print.
pub fn ramp(v: f32) -> [u8; 3] {
    const STOPS: [[f32; 3]; 5] = [
        [20.0, 30.0, 110.0],
        [20.0, 170.0, 220.0],
        [60.0, 200.0, 80.0],
        [250.0, 220.0, 40.0],
        [220.0, 30.0, 20.0],
    ];
    let t = v.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (t as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    let mut out = [0u8; 3];
    for (c, o) in out.iter_mut().enumerate() {
        *o = (STOPS[i][c] * (1.0 - f) + STOPS[i + 1][c] * f).round() as u8;
    }
    out
}

/// The heatmap alone, in [`ramp`] colours.
pub fn heat_image(heat: &[f32], side: u32) -> RgbImage {
    RgbImage::from_fn(side, side, |x, y| {
        Rgb(ramp(
            heat.get((y * side + x) as usize).copied().unwrap_or(0.0),
        ))
    })
}

/// The heatmap over the image: cold places keep the photo, hot ones take the ramp's colour.
pub fn overlay(crop: &RgbImage, heat: &[f32]) -> RgbImage {
    let side = crop.width();
    let mut out = crop.clone();
    for (x, y, p) in out.enumerate_pixels_mut() {
        let v = heat
            .get((y * side + x) as usize)
            .copied()
            .unwrap_or(0.0)
            .clamp(0.0, 1.0);
        let a = 0.25 + 0.5 * v;
        let warm = ramp(v);
        for (c, w) in p.0.iter_mut().zip(warm) {
            *c = (f32::from(*c) * (1.0 - a) + f32::from(w) * a).round() as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_runs_cold_to_hot_and_overlay_warms_the_hot_corner() {
        let (cold, hot) = (ramp(0.0), ramp(1.0));
        assert!(cold[2] > cold[0] && hot[0] > hot[2], "{cold:?} {hot:?}");
        let crop = RgbImage::from_pixel(8, 8, Rgb([128, 128, 128]));
        let mut heat = vec![0.0; 64];
        heat[0] = 1.0;
        let o = overlay(&crop, &heat);
        assert!(o.get_pixel(0, 0)[0] > 150, "{:?}", o.get_pixel(0, 0));
        assert!(o.get_pixel(7, 7)[2] > o.get_pixel(7, 7)[0]);
    }
}
