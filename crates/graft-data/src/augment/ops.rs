//! Augmentations of one image: geometry and colour on the RGB image, erasing on the normalised
//! tensor (after normalisation 0 is the dataset mean, the fill torchvision uses by default).

use image::{Rgb, RgbImage};

use crate::preprocess::resize_bilinear;
use crate::rng::SplitMix64;

/// Uniform in `[lo, hi)`.
pub(crate) fn uniform(rng: &mut SplitMix64, lo: f32, hi: f32) -> f32 {
    lo + (hi - lo) * rng.next_f64() as f32
}

/// A crop covering a random share `scale` of the area with aspect ratio (log-uniform) in
/// `ratio`, resized to `size × size`; after 10 misses, the centre crop of the largest allowed
/// aspect. (The Inception-style crop that torchvision's RandomResizedCrop also implements.)
pub fn random_resized_crop(
    img: &RgbImage,
    size: u32,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut SplitMix64,
) -> RgbImage {
    let (w, h) = img.dimensions();
    let area = (w * h) as f32;
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = area * uniform(rng, scale.0, scale.1);
        let r = uniform(rng, lr0, lr1).exp();
        let cw = (target * r).sqrt().round() as u32;
        let ch = (target / r).sqrt().round() as u32;
        if cw >= 1 && ch >= 1 && cw <= w && ch <= h {
            let x = rng.below((w - cw + 1) as usize) as u32;
            let y = rng.below((h - ch + 1) as usize) as u32;
            let crop = image::imageops::crop_imm(img, x, y, cw, ch).to_image();
            return resize_bilinear(&crop, size, size);
        }
    }
    // Fallback: the whole image's centre at an aspect within `ratio`.
    let aspect = w as f32 / h as f32;
    let (cw, ch) = if aspect < ratio.0 {
        (w, ((w as f32 / ratio.0).round() as u32).clamp(1, h))
    } else if aspect > ratio.1 {
        (((h as f32 * ratio.1).round() as u32).clamp(1, w), h)
    } else {
        (w, h)
    };
    let crop = image::imageops::crop_imm(img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image();
    resize_bilinear(&crop, size, size)
}

/// Rotation by `degrees` about the centre, bilinear, corners filled with `fill`.
pub fn rotate(img: &RgbImage, degrees: f32, fill: Rgb<u8>) -> RgbImage {
    if degrees == 0.0 {
        return img.clone();
    }
    let (w, h) = img.dimensions();
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    RgbImage::from_fn(w, h, |x, y| {
        // Inverse map: where in the source this output pixel comes from.
        let (dx, dy) = (x as f32 - cx, y as f32 - cy);
        let sx = c * dx + s * dy + cx;
        let sy = -s * dx + c * dy + cy;
        // A thousandth of a pixel of slack: rounding in sin/cos must not eat the border.
        let (mx, my) = ((w - 1) as f32, (h - 1) as f32);
        if sx < -1e-3 || sy < -1e-3 || sx > mx + 1e-3 || sy > my + 1e-3 {
            return fill;
        }
        let (sx, sy) = (sx.clamp(0.0, mx), sy.clamp(0.0, my));
        let (x0, y0) = (sx as u32, sy as u32);
        let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
        let (tx, ty) = (sx - x0 as f32, sy - y0 as f32);
        let px = |x, y| img.get_pixel(x, y).0;
        let (a, b, cc, d) = (px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1));
        Rgb(std::array::from_fn(|k| {
            let top = f32::from(a[k]) * (1.0 - tx) + f32::from(b[k]) * tx;
            let bottom = f32::from(cc[k]) * (1.0 - tx) + f32::from(d[k]) * tx;
            (top * (1.0 - ty) + bottom * ty).round() as u8
        }))
    })
}

/// Brightness, contrast and saturation factors (1 = unchanged) and a hue shift in turns
/// (−0.5..0.5), applied in that order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

fn luma(p: [f32; 3]) -> f32 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

pub fn color_jitter(img: &mut RgbImage, j: Jitter) {
    let n = (img.width() * img.height()).max(1) as f32;
    // Contrast pulls towards the mean grey of the brightened image.
    let mean = img.pixels().map(|p| luma(p.0.map(f32::from))).sum::<f32>() / n * j.brightness;
    for p in img.pixels_mut() {
        let mut v = p.0.map(|c| f32::from(c) * j.brightness);
        v = v.map(|c| (c - mean) * j.contrast + mean);
        let g = luma(v);
        v = v.map(|c| (c - g) * j.saturation + g);
        if j.hue != 0.0 {
            v = shift_hue(v, j.hue);
        }
        p.0 = v.map(|c| c.round().clamp(0.0, 255.0) as u8);
    }
}

/// Rotate the hue of an RGB value (0..255 floats) by `turns` of the colour wheel.
fn shift_hue(rgb: [f32; 3], turns: f32) -> [f32; 3] {
    let [r, g, b] = rgb.map(|c| c.clamp(0.0, 255.0) / 255.0);
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let d = max - min;
    if d <= 0.0 {
        return rgb;
    }
    let h = if max == r {
        ((g - b) / d).rem_euclid(6.0)
    } else if max == g {
        (b - r) / d + 2.0
    } else {
        (r - g) / d + 4.0
    };
    let h = (h / 6.0 + turns).rem_euclid(1.0) * 6.0;
    let (s, v) = (d / max, max);
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let m = v - c;
    let (r1, g1, b1) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    [(r1 + m) * 255.0, (g1 + m) * 255.0, (b1 + m) * 255.0]
}

/// Separable Gaussian blur with standard deviation `sigma` pixels (edges clamped).
pub fn gaussian_blur(img: &RgbImage, sigma: f32) -> RgbImage {
    if sigma <= 0.0 {
        return img.clone();
    }
    let radius = (3.0 * sigma).ceil() as i64;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = img.dimensions();
    let pass = |src: &RgbImage, horizontal: bool| {
        RgbImage::from_fn(w, h, |x, y| {
            let mut acc = [0f32; 3];
            for (k, &kv) in kernel.iter().enumerate() {
                let o = k as i64 - radius;
                let (sx, sy) = if horizontal {
                    ((x as i64 + o).clamp(0, w as i64 - 1) as u32, y)
                } else {
                    (x, (y as i64 + o).clamp(0, h as i64 - 1) as u32)
                };
                let p = src.get_pixel(sx, sy).0;
                for c in 0..3 {
                    acc[c] += kv * f32::from(p[c]);
                }
            }
            Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8))
        })
    };
    pass(&pass(img, true), false)
}

/// A random rectangle (area share in `scale`, aspect log-uniform in `ratio`) of a normalised
/// CHW tensor set to 0; returns it as (x, y, w, h), or `None` when no rectangle fitted.
pub fn random_erase(
    x: &mut [f32],
    size: usize,
    scale: (f32, f32),
    ratio: (f32, f32),
    rng: &mut SplitMix64,
) -> Option<(usize, usize, usize, usize)> {
    let area = (size * size) as f32;
    for _ in 0..10 {
        let target = area * uniform(rng, scale.0, scale.1);
        let r = uniform(rng, ratio.0.ln(), ratio.1.ln()).exp();
        let (ew, eh) = (
            (target * r).sqrt().round() as usize,
            (target / r).sqrt().round() as usize,
        );
        if ew == 0 || eh == 0 || ew >= size || eh >= size {
            continue;
        }
        let x0 = rng.below(size - ew + 1);
        let y0 = rng.below(size - eh + 1);
        for plane in x.chunks_exact_mut(size * size) {
            for row in y0..y0 + eh {
                plane[row * size + x0..row * size + x0 + ew].fill(0.0);
            }
        }
        return Some((x0, y0, ew, eh));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 90])
        })
    }

    #[test]
    fn crops_have_the_asked_size_and_come_from_the_image() {
        let img = RgbImage::from_pixel(90, 60, Rgb([10, 200, 30]));
        let mut rng = SplitMix64::new(1);
        for _ in 0..20 {
            let c = random_resized_crop(&img, 32, (0.08, 1.0), (0.75, 4.0 / 3.0), &mut rng);
            assert_eq!(c.dimensions(), (32, 32));
            assert!(c.pixels().all(|p| p.0 == [10, 200, 30]));
        }
        // An impossible scale falls back to the centre.
        let c = random_resized_crop(&img, 16, (5.0, 6.0), (0.75, 4.0 / 3.0), &mut rng);
        assert_eq!(c.dimensions(), (16, 16));
    }

    #[test]
    fn rotation_by_zero_or_a_full_turn_keeps_the_image_and_fills_corners() {
        let img = gradient(20, 20);
        assert_eq!(rotate(&img, 0.0, Rgb([0, 0, 0])), img);
        let turned = rotate(&img, 45.0, Rgb([1, 2, 3]));
        assert_eq!(turned.get_pixel(0, 0).0, [1, 2, 3]);
        let full = rotate(&img, 360.0, Rgb([0, 0, 0]));
        let diff = full
            .pixels()
            .zip(img.pixels())
            .map(|(a, b)| (i16::from(a[0]) - i16::from(b[0])).abs())
            .max()
            .unwrap_or(0);
        assert!(diff <= 1, "{diff}");
    }

    #[test]
    fn neutral_jitter_is_identity_and_hue_turns_red_to_green() {
        let mut img = gradient(8, 8);
        let before = img.clone();
        let none = Jitter {
            brightness: 1.0,
            contrast: 1.0,
            saturation: 1.0,
            hue: 0.0,
        };
        color_jitter(&mut img, none);
        assert_eq!(img, before);
        let mut red = RgbImage::from_pixel(2, 2, Rgb([200, 0, 0]));
        color_jitter(
            &mut red,
            Jitter {
                hue: 1.0 / 3.0,
                ..none
            },
        );
        assert_eq!(red.get_pixel(0, 0).0, [0, 200, 0]);
        let mut grey = RgbImage::from_pixel(2, 2, Rgb([100, 100, 100]));
        color_jitter(
            &mut grey,
            Jitter {
                saturation: 0.0,
                brightness: 1.5,
                ..none
            },
        );
        assert_eq!(grey.get_pixel(1, 1).0, [150, 150, 150]);
    }

    #[test]
    fn blur_keeps_flat_images_and_softens_edges() {
        let flat = RgbImage::from_pixel(9, 9, Rgb([50, 60, 70]));
        assert_eq!(gaussian_blur(&flat, 1.5), flat);
        let edge = RgbImage::from_fn(
            10,
            1,
            |x, _| if x < 5 { Rgb([0; 3]) } else { Rgb([255; 3]) },
        );
        let b = gaussian_blur(&edge, 1.0);
        assert!(b.get_pixel(4, 0)[0] > 0 && b.get_pixel(5, 0)[0] < 255);
    }

    #[test]
    fn erasing_zeroes_one_rectangle_in_every_channel() {
        let size = 16;
        let mut x = vec![1.0f32; 3 * size * size];
        let mut rng = SplitMix64::new(3);
        let (x0, y0, w, h) =
            random_erase(&mut x, size, (0.1, 0.2), (0.5, 2.0), &mut rng).expect("fits");
        let zeros = x.iter().filter(|v| **v == 0.0).count();
        assert_eq!(zeros, 3 * w * h);
        assert!(x0 + w <= size && y0 + h <= size);
        assert_eq!(x[y0 * size + x0], 0.0);
    }
}
