//! One parallel pass over a dataset that gathers every per-image fact the audit and the
//! split need: content hash, perceptual hash, size, channel sums and border colour.
//! Each image is decoded once and dropped straight away, so memory stays flat however
//! large the dataset.

use image::RgbImage;
use rayon::prelude::*;
use serde::Serialize;

use crate::decode::{read_and_decode, DecodeError};
use crate::hash::{content_hash, perceptual_hash};
use crate::scan::Dataset;

#[derive(Debug, Clone, Serialize)]
pub struct ImageFacts {
    pub content_hash: String,
    pub phash: u64,
    pub width: u32,
    pub height: u32,
    /// Per-channel sum and sum of squares of the 0–255 values, for mean/std.
    pub channel_sum: [u64; 3],
    pub channel_sumsq: [u64; 3],
    /// Mean and standard deviation (0–255) per channel of the border ring.
    pub border: [f32; 6],
}

/// Facts for each dataset entry, in entry order; unreadable files give their decode error.
pub fn analyze(
    dataset: &Dataset,
    on_progress: &(dyn Fn(u64) + Sync),
) -> Vec<Result<ImageFacts, DecodeError>> {
    dataset
        .entries
        .par_iter()
        .map(|e| {
            let r = read_and_decode(&e.path).map(|(bytes, img)| facts_of(&bytes, &img));
            on_progress(1);
            r
        })
        .collect()
}

pub fn facts_of(bytes: &[u8], img: &RgbImage) -> ImageFacts {
    let mut sum = [0u64; 3];
    let mut sumsq = [0u64; 3];
    for p in img.as_raw().chunks_exact(3) {
        for c in 0..3 {
            let v = p[c] as u64;
            sum[c] += v;
            sumsq[c] += v * v;
        }
    }
    ImageFacts {
        content_hash: content_hash(bytes),
        phash: perceptual_hash(img),
        width: img.width(),
        height: img.height(),
        channel_sum: sum,
        channel_sumsq: sumsq,
        border: border_stats(img),
    }
}

/// Width of the border ring: 5% of the shorter side, at least one pixel.
pub fn border_width(w: u32, h: u32) -> u32 {
    ((w.min(h) as f32 * 0.05).round() as u32).max(1)
}

fn border_stats(img: &RgbImage) -> [f32; 6] {
    let (w, h) = img.dimensions();
    let b = border_width(w, h);
    let mut sum = [0f64; 3];
    let mut sumsq = [0f64; 3];
    let mut n = 0f64;
    for y in 0..h {
        let in_band = y < b || y + b >= h;
        let mut x = 0;
        while x < w {
            if !in_band && x == b && w > 2 * b {
                // Skip the interior of this row.
                x = w - b;
                continue;
            }
            let p = img.get_pixel(x, y);
            for c in 0..3 {
                let v = p[c] as f64;
                sum[c] += v;
                sumsq[c] += v * v;
            }
            n += 1.0;
            x += 1;
        }
    }
    let mut out = [0f32; 6];
    for c in 0..3 {
        let mean = sum[c] / n;
        out[c] = mean as f32;
        out[3 + c] = (sumsq[c] / n - mean * mean).max(0.0).sqrt() as f32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn border_stats_see_only_the_ring() {
        // 40x40 green with a red 2px frame (border width = 2 at 5% of 40).
        let img = RgbImage::from_fn(40, 40, |x, y| {
            if x < 2 || y < 2 || x >= 38 || y >= 38 {
                image::Rgb([200, 0, 0])
            } else {
                image::Rgb([0, 200, 0])
            }
        });
        let s = border_stats(&img);
        assert_eq!(&s[..3], &[200.0, 0.0, 0.0]);
        assert_eq!(&s[3..], &[0.0, 0.0, 0.0]);
        let one = RgbImage::from_pixel(1, 1, image::Rgb([7, 8, 9]));
        assert_eq!(&border_stats(&one)[..3], &[7.0, 8.0, 9.0]);
    }

    #[test]
    fn channel_sums() {
        let img = RgbImage::from_fn(2, 1, |x, _| image::Rgb([x as u8 * 10, 1, 2]));
        let f = facts_of(b"abc", &img);
        assert_eq!(f.channel_sum, [10, 2, 4]);
        assert_eq!(f.channel_sumsq, [100, 2, 8]);
    }
}
