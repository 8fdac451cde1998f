//! What a photo looks like in a few numbers — size, per-channel mean and spread, brightness
//! and sharpness — computed the same way for the training images and for what a deployed
//! model is sent, so drift in the field (darker, blurrier, other cameras) can be measured.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::decode::{resize_gray, to_gray};

/// Summary statistics of one decoded image (channels in 0–1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageStats {
    pub width: u32,
    pub height: u32,
    /// Mean of R, G, B.
    pub mean: [f32; 3],
    /// Standard deviation of R, G, B.
    pub std: [f32; 3],
    /// Mean luma (ITU-R BT.601 weights).
    pub brightness: f32,
    /// Variance of the 4-neighbour Laplacian of the grey image, brought down to [`BLUR_SIDE`]
    /// pixels on its longer side when larger: low for blurred photos. Measured at one size
    /// so phones of any resolution compare (smaller images are measured as they are).
    pub blur: f32,
}

impl ImageStats {
    /// Each statistic with its name, as drift checks compare them one by one.
    pub fn named(&self) -> [(&'static str, f64); 10] {
        [
            ("width", f64::from(self.width)),
            ("height", f64::from(self.height)),
            ("mean_r", f64::from(self.mean[0])),
            ("mean_g", f64::from(self.mean[1])),
            ("mean_b", f64::from(self.mean[2])),
            ("std_r", f64::from(self.std[0])),
            ("std_g", f64::from(self.std[1])),
            ("std_b", f64::from(self.std[2])),
            ("brightness", f64::from(self.brightness)),
            ("blur", f64::from(self.blur)),
        ]
    }
}

/// The longer side the sharpness measure works at.
pub const BLUR_SIDE: u32 = 256;

/// Pixels sampled for the means, at most (an even grid: a 12-megapixel photo needs no more).
const SAMPLES: u64 = 1 << 16;

/// The statistics of `img`.
pub fn image_stats(img: &RgbImage) -> ImageStats {
    let (w, h) = img.dimensions();
    let n = u64::from(w) * u64::from(h);
    let step = (n / SAMPLES).max(1);
    let mut sum = [0f64; 3];
    let mut sq = [0f64; 3];
    let mut count = 0f64;
    let raw = img.as_raw();
    let mut i = 0u64;
    while i < n {
        let p = &raw[(i * 3) as usize..(i * 3 + 3) as usize];
        for c in 0..3 {
            let v = f64::from(p[c]) / 255.0;
            sum[c] += v;
            sq[c] += v * v;
        }
        count += 1.0;
        i += step;
    }
    let count = count.max(1.0);
    let mean = sum.map(|s| s / count);
    let std = [0, 1, 2].map(|c| ((sq[c] / count - mean[c] * mean[c]).max(0.0)).sqrt() as f32);
    let brightness = (0.299 * mean[0] + 0.587 * mean[1] + 0.114 * mean[2]) as f32;
    ImageStats {
        width: w,
        height: h,
        mean: mean.map(|m| m as f32),
        std,
        brightness,
        blur: laplacian_variance(img),
    }
}

fn laplacian_variance(img: &RgbImage) -> f32 {
    let (w, h) = img.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let scale = (f64::from(BLUR_SIDE) / f64::from(w.max(h))).min(1.0);
    let (sw, sh) = (
        ((f64::from(w) * scale).round() as u32).max(3),
        ((f64::from(h) * scale).round() as u32).max(3),
    );
    let grey = resize_gray(&to_gray(img), w, h, sw, sh);
    let (sw, sh) = (sw as usize, sh as usize);
    let mut sum = 0f64;
    let mut sq = 0f64;
    let mut n = 0f64;
    for y in 1..sh - 1 {
        for x in 1..sw - 1 {
            let at = |dx: isize, dy: isize| {
                let yy = (y as isize + dy) as usize;
                let xx = (x as isize + dx) as usize;
                f64::from(grey[yy * sw + xx]) / 255.0
            };
            let l = at(-1, 0) + at(1, 0) + at(0, -1) + at(0, 1) - 4.0 * at(0, 0);
            sum += l;
            sq += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    (sq / n - mean * mean).max(0.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_grey_has_its_value_no_spread_and_no_edges() {
        let img = RgbImage::from_pixel(64, 32, image::Rgb([51, 102, 204]));
        let s = image_stats(&img);
        assert_eq!((s.width, s.height), (64, 32));
        for (m, want) in s.mean.iter().zip([0.2, 0.4, 0.8]) {
            assert!((m - want).abs() < 1e-6, "{m} vs {want}");
        }
        assert!(s.std.iter().all(|&d| d < 1e-3));
        assert!(s.blur < 1e-9);
        let want = 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.8;
        assert!((s.brightness - want).abs() < 1e-6);
    }

    #[test]
    fn darker_and_blurrier_images_read_so() {
        // A checkerboard: sharp edges everywhere.
        let sharp = RgbImage::from_fn(128, 128, |x, y| {
            if (x / 4 + y / 4) % 2 == 0 {
                image::Rgb([230, 230, 230])
            } else {
                image::Rgb([20, 20, 20])
            }
        });
        let dark = RgbImage::from_fn(128, 128, |x, y| {
            let p = sharp.get_pixel(x, y).0;
            image::Rgb(p.map(|v| (f32::from(v) * 0.6) as u8))
        });
        let blurred = image::imageops::blur(&sharp, 3.0);
        let (s, d, b) = (
            image_stats(&sharp),
            image_stats(&dark),
            image_stats(&blurred),
        );
        assert!(d.brightness < 0.65 * s.brightness && d.brightness > 0.55 * s.brightness);
        assert!(b.blur < 0.2 * s.blur, "blur {} vs sharp {}", b.blur, s.blur);
    }
}
