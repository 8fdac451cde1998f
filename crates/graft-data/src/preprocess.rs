//! Turn a decoded photo into the tensor an encoder expects: resize the shorter side, centre
//! crop a square, scale to 0–1, normalise per channel, lay out as CHW `f32`.
//!
//! This mirrors the torchvision evaluation transform (`Resize(s)`, `CenterCrop(c)`, `ToTensor`,
//! `Normalize`): antialiased bilinear (or PIL-style bicubic) resizing, the new long side truncated like torchvision's
//! `int(s * long / short)`, and the crop offset rounded like `int(round((h - c) / 2))`.

use fast_image_resize as fr;
use image::RgbImage;
use serde::{Deserialize, Serialize};

/// Resize the shorter side to `resize_shorter`, centre-crop `size`×`size`, scale to 0–1, then
/// `(x - mean) / std` per channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    pub size: u32,
    pub resize_shorter: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Resampling filter of the resize; each encoder uses the one it was evaluated with.
    #[serde(default)]
    pub filter: Filter,
}

/// Antialiased resampling filters (support scaled by the reduction factor, as in PIL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Triangle filter: torchvision's default (`InterpolationMode.BILINEAR`).
    #[default]
    Bilinear,
    /// Cubic convolution with a = -0.5 (PIL `BICUBIC`, timm's EfficientNet evaluation).
    Bicubic,
}

impl Preprocess {
    /// Values per image in the output (`3 * size * size`).
    pub fn len(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The resized and cropped RGB image, before normalisation.
    pub fn resize_crop(&self, img: &RgbImage) -> RgbImage {
        let (nw, nh, left, top) = self.geometry(img.dimensions());
        let resized = resize(img, nw, nh, self.filter);
        let c = self.size;
        image::imageops::crop_imm(&resized, left, top, c, c).to_image()
    }

    /// For a `w × h` image: the resized size (shorter side `resize_shorter`) and the crop's
    /// top-left corner on it.
    fn geometry(&self, (w, h): (u32, u32)) -> (u32, u32, u32, u32) {
        let (w, h) = (w.max(1), h.max(1));
        let s = self.resize_shorter.max(self.size);
        let (nw, nh) = if w <= h {
            (s, ((s as u64 * h as u64) / w as u64).max(s as u64) as u32)
        } else {
            (((s as u64 * w as u64) / h as u64).max(s as u64) as u32, s)
        };
        let c = self.size;
        let left = ((nw - c) as f64 / 2.0).round() as u32;
        let top = ((nh - c) as f64 / 2.0).round() as u32;
        (nw, nh, left, top)
    }

    /// A point of the crop (`x`, `y` in crop pixels, a pixel's centre at +0.5) on the original
    /// `w × h` image, in its pixels: where a heatmap's peak lies on the photo the user sent.
    pub fn crop_to_original(&self, x: f32, y: f32, (w, h): (u32, u32)) -> (f32, f32) {
        let (nw, nh, left, top) = self.geometry((w, h));
        let ox = (x + left as f32) * w as f32 / nw as f32;
        let oy = (y + top as f32) * h as f32 / nh as f32;
        (
            ox.clamp(0.0, w.saturating_sub(1) as f32),
            oy.clamp(0.0, h.saturating_sub(1) as f32),
        )
    }

    /// Black, per channel, in normalised units: what a pixel removed from the model's view
    /// becomes (the explanation metrics' deletions, Score-CAM's masks).
    pub fn black(&self) -> [f32; 3] {
        std::array::from_fn(|c| -self.mean[c] / self.std[c])
    }

    /// Write the normalised CHW tensor of `img` into `out` (length [`Preprocess::len`]).
    pub fn apply_into(&self, img: &RgbImage, out: &mut [f32]) {
        let crop = self.resize_crop(img);
        let plane = (self.size * self.size) as usize;
        let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * self.std[c]));
        let shift: [f32; 3] = std::array::from_fn(|c| self.mean[c] / self.std[c]);
        for (i, p) in crop.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = p[c] as f32 * scale[c] - shift[c];
            }
        }
    }

    /// The normalised CHW tensor of `img`.
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        self.apply_into(img, &mut out);
        out
    }
}

/// Antialiased bilinear (triangle filter scaled to the reduction), as PIL and torchvision do.
pub fn resize_bilinear(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize(img, width, height, Filter::Bilinear)
}

/// Antialiased resize with `filter`, as PIL does it.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    if img.dimensions() == (width, height) {
        return img.clone();
    }
    let src =
        fr::images::ImageRef::new(img.width(), img.height(), img.as_raw(), fr::PixelType::U8x3);
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    let kernel = match filter {
        Filter::Bilinear => fr::FilterType::Bilinear,
        // Catmull-Rom is the a = -0.5 cubic that PIL calls BICUBIC.
        Filter::Bicubic => fr::FilterType::CatmullRom,
    };
    let opts = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(kernel));
    let done = src
        .ok()
        .and_then(|src| fr::Resizer::new().resize(&src, &mut dst, &opts).ok());
    match done.and_then(|_| RgbImage::from_raw(width, height, dst.into_vec())) {
        Some(out) => out,
        // Unreachable with a well-formed RgbImage; keep the pipeline alive regardless.
        None => RgbImage::new(width, height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGENET: Preprocess = Preprocess {
        size: 224,
        resize_shorter: 256,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        filter: Filter::Bilinear,
    };

    #[test]
    fn crop_points_land_where_the_crop_took_them() {
        // 400×300 → 341×256, crop from (59, 16): the crop's centre is the photo's centre
        // (within the one-pixel rounding of the offset), its corner is (59, 16)·(400/341, 300/256).
        let (cx, cy) = IMAGENET.crop_to_original(112.0, 112.0, (400, 300));
        assert!(
            (cx - 200.0).abs() < 1.5 && (cy - 150.0).abs() < 1.5,
            "{cx} {cy}"
        );
        let (x0, y0) = IMAGENET.crop_to_original(0.0, 0.0, (400, 300));
        assert!((x0 - 59.0 * 400.0 / 341.0).abs() < 1e-3, "{x0}");
        assert!((y0 - 16.0 * 300.0 / 256.0).abs() < 1e-3, "{y0}");
        // A marked pixel of the photo is found again through the crop.
        let mut img = RgbImage::from_pixel(400, 300, image::Rgb([0, 0, 0]));
        for y in 60..70 {
            for x in 300..310 {
                img.put_pixel(x, y, image::Rgb([255, 255, 255]));
            }
        }
        let crop = IMAGENET.resize_crop(&img);
        let (bx, by) = crop
            .enumerate_pixels()
            .max_by_key(|(_, _, p)| p[0])
            .map(|(x, y, _)| (x, y))
            .expect("pixels");
        let (ox, oy) = IMAGENET.crop_to_original(bx as f32 + 0.5, by as f32 + 0.5, (400, 300));
        assert!(
            (300.0..311.0).contains(&ox) && (59.0..71.0).contains(&oy),
            "{ox} {oy}"
        );
    }

    #[test]
    fn shapes_and_normalisation() {
        let img = RgbImage::from_pixel(451, 300, image::Rgb([255, 128, 0]));
        let crop = IMAGENET.resize_crop(&img);
        assert_eq!(crop.dimensions(), (224, 224));
        let t = IMAGENET.apply(&img);
        assert_eq!(t.len(), 3 * 224 * 224);
        let plane = 224 * 224;
        assert!((t[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((t[plane] - (128.0 / 255.0 - 0.456) / 0.224).abs() < 1e-5);
        assert!((t[2 * plane + 500] - (0.0 - 0.406) / 0.225).abs() < 1e-5);
    }

    #[test]
    fn small_and_portrait_images_are_enlarged_and_centred() {
        // 28x56 portrait: resized to 256x512, crop centred vertically.
        let img = RgbImage::from_fn(28, 56, |_, y| {
            image::Rgb(if y < 28 { [0, 0, 0] } else { [255, 255, 255] })
        });
        let crop = IMAGENET.resize_crop(&img);
        assert_eq!(crop.dimensions(), (224, 224));
        // Top of the crop is in the dark half, bottom in the light half.
        assert!(crop.get_pixel(100, 5)[0] < 10);
        assert!(crop.get_pixel(100, 218)[0] > 245);
    }

    #[test]
    fn bicubic_overshoots_at_edges_where_bilinear_does_not() {
        // A hard step, enlarged: the cubic kernel's negative lobes ring, the triangle does not.
        let img = RgbImage::from_fn(8, 8, |x, _| {
            image::Rgb(if x < 4 { [60; 3] } else { [200; 3] })
        });
        let lin = resize(&img, 32, 32, Filter::Bilinear);
        let cub = resize(&img, 32, 32, Filter::Bicubic);
        let row = |im: &RgbImage| (0..32).map(|x| im.get_pixel(x, 16)[0]).collect::<Vec<_>>();
        assert!(row(&lin).iter().all(|&v| (60..=200).contains(&v)));
        assert!(
            row(&cub).iter().any(|&v| !(60..=200).contains(&v)),
            "{:?}",
            row(&cub)
        );
    }
}
