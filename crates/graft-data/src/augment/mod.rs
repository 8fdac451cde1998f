//! Training-time augmentation on the CPU: per image random resized crop, flips, rotation,
//! colour jitter, Gaussian blur and random erasing; per batch MixUp or CutMix with soft labels;
//! and a bounded prefetch queue that prepares the next batches while the model trains.
//!
//! Every random draw of image `i` in epoch `e` comes from its own generator seeded by
//! (seed, e, i), so a batch is the same whatever the thread count and whether training was
//! interrupted and resumed.

mod mix;
mod ops;
mod prefetch;

use image::{Rgb, RgbImage};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use mix::{beta, mix_batch, one_hot, Mix};
pub use ops::{color_jitter, gaussian_blur, random_erase, random_resized_crop, rotate, Jitter};
pub use prefetch::Prefetch;

use crate::preprocess::Preprocess;
use crate::rng::SplitMix64;
use ops::uniform;

/// Which augmentations run and how strongly; each can be switched off on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Random resized crop: share of the area kept (0 disables; the eval centre crop is used).
    pub crop_scale: (f32, f32),
    pub crop_ratio: (f32, f32),
    /// Probabilities of a horizontal and a vertical flip (leaves have no "up"; faces do).
    pub hflip: f32,
    pub vflip: f32,
    /// Largest rotation, degrees either way.
    pub rotation: f32,
    /// Colour jitter strengths (torchvision's meaning: factor in [1−s, 1+s]; hue in turns).
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
    /// Probability of a Gaussian blur, and its sigma range in pixels of the output.
    pub blur: f32,
    pub blur_sigma: (f32, f32),
    /// Probability of erasing one rectangle (after normalisation) and its area share range.
    pub erase: f32,
    pub erase_scale: (f32, f32),
    /// Beta(α, α) of MixUp and CutMix (0 disables each); when both are on, each batch picks one.
    pub mixup: f32,
    pub cutmix: f32,
    /// Share of batches that are mixed at all.
    pub mix_prob: f32,
}

impl Default for AugmentConfig {
    /// A moderate recipe for transfer learning on photos.
    fn default() -> Self {
        AugmentConfig {
            crop_scale: (0.25, 1.0),
            crop_ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: 0.5,
            vflip: 0.0,
            rotation: 15.0,
            brightness: 0.2,
            contrast: 0.2,
            saturation: 0.2,
            hue: 0.02,
            blur: 0.1,
            blur_sigma: (0.1, 1.5),
            erase: 0.25,
            erase_scale: (0.02, 0.2),
            mixup: 0.2,
            cutmix: 1.0,
            mix_prob: 0.5,
        }
    }
}

impl AugmentConfig {
    /// No augmentation at all: every image gets the evaluation preprocessing.
    pub fn off() -> Self {
        AugmentConfig {
            crop_scale: (0.0, 0.0),
            hflip: 0.0,
            vflip: 0.0,
            rotation: 0.0,
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
            blur: 0.0,
            erase: 0.0,
            mixup: 0.0,
            cutmix: 0.0,
            mix_prob: 0.0,
            ..AugmentConfig::default()
        }
    }
}

/// The generator of image `index` in `epoch`.
fn image_rng(seed: u64, epoch: u64, index: u64) -> SplitMix64 {
    let mut r = SplitMix64::new(seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    SplitMix64::new(r.next_u64() ^ index.wrapping_mul(0xbf58_476d_1ce4_e5b9))
}

/// One augmented image as the RGB picture the encoder sees (`size × size`), before
/// normalisation.
pub fn augment_rgb(
    img: &RgbImage,
    cfg: &AugmentConfig,
    pre: &Preprocess,
    rng: &mut SplitMix64,
) -> RgbImage {
    let size = pre.size;
    let mut out = if cfg.crop_scale.1 > 0.0 {
        random_resized_crop(img, size, cfg.crop_scale, cfg.crop_ratio, rng)
    } else {
        pre.resize_crop(img)
    };
    if rng.next_f64() < f64::from(cfg.hflip) {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    if rng.next_f64() < f64::from(cfg.vflip) {
        image::imageops::flip_vertical_in_place(&mut out);
    }
    if cfg.rotation > 0.0 {
        let deg = uniform(rng, -cfg.rotation, cfg.rotation);
        // Corners take the dataset mean colour, which normalises to 0.
        let fill = Rgb(std::array::from_fn(|c| (pre.mean[c] * 255.0).round() as u8));
        out = rotate(&out, deg, fill);
    }
    let factor = |rng: &mut SplitMix64, s: f32| uniform(rng, (1.0 - s).max(0.0), 1.0 + s);
    let jitter = Jitter {
        brightness: factor(rng, cfg.brightness),
        contrast: factor(rng, cfg.contrast),
        saturation: factor(rng, cfg.saturation),
        hue: uniform(rng, -cfg.hue, cfg.hue),
    };
    if cfg.brightness > 0.0 || cfg.contrast > 0.0 || cfg.saturation > 0.0 || cfg.hue > 0.0 {
        color_jitter(&mut out, jitter);
    }
    if rng.next_f64() < f64::from(cfg.blur) {
        out = gaussian_blur(&out, uniform(rng, cfg.blur_sigma.0, cfg.blur_sigma.1));
    }
    out
}

/// Normalised CHW tensor of an RGB picture already at the encoder's size.
fn normalise(img: &RgbImage, pre: &Preprocess, out: &mut [f32]) {
    let plane = (pre.size * pre.size) as usize;
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(p[c]) / 255.0 - pre.mean[c]) / pre.std[c];
        }
    }
}

/// An augmented batch: normalised CHW images and soft targets (`n × classes`).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub x: Vec<f32>,
    pub targets: Vec<f32>,
    pub labels: Vec<usize>,
    pub mix: Mix,
}

/// Augment `images` (the batch's images, in order; `indices` are their dataset positions, which
/// seed their draws) for `epoch`, in parallel, then mix the batch.
#[allow(clippy::too_many_arguments)]
pub fn augment_batch(
    images: &[&RgbImage],
    indices: &[usize],
    labels: &[usize],
    classes: usize,
    cfg: &AugmentConfig,
    pre: &Preprocess,
    seed: u64,
    epoch: u64,
) -> Batch {
    let per = pre.len();
    let mut x = vec![0.0f32; images.len() * per];
    x.par_chunks_mut(per.max(1))
        .zip(images.par_iter().zip(indices))
        .for_each(|(out, (img, &index))| {
            let mut rng = image_rng(seed, epoch, index as u64);
            let rgb = augment_rgb(img, cfg, pre, &mut rng);
            normalise(&rgb, pre, out);
            if rng.next_f64() < f64::from(cfg.erase) {
                random_erase(
                    out,
                    pre.size as usize,
                    cfg.erase_scale,
                    (0.3, 3.3),
                    &mut rng,
                );
            }
        });
    // The batch's own draws: seeded by its first image, so they too survive a resume.
    let mut rng = image_rng(
        seed ^ 0x006d_6978,
        epoch,
        indices.first().copied().unwrap_or(0) as u64,
    );
    let mix = if rng.next_f64() >= f64::from(cfg.mix_prob) {
        Mix::None
    } else {
        match (cfg.mixup > 0.0, cfg.cutmix > 0.0) {
            (true, true) if rng.next_f64() < 0.5 => Mix::MixUp,
            (true, true) | (false, true) => Mix::CutMix,
            (true, false) => Mix::MixUp,
            (false, false) => Mix::None,
        }
    };
    let alpha = match mix {
        Mix::MixUp => cfg.mixup,
        Mix::CutMix => cfg.cutmix,
        Mix::None => 0.0,
    };
    let targets = mix_batch(
        &mut x,
        labels,
        classes,
        pre.size as usize,
        mix,
        alpha,
        &mut rng,
    );
    Batch {
        x,
        targets,
        labels: labels.to_vec(),
        mix,
    }
}

/// A grid of a batch's images (denormalised), `cols` wide: what the model was shown.
pub fn batch_grid(batch: &Batch, pre: &Preprocess, cols: usize) -> RgbImage {
    let size = pre.size as usize;
    let per = pre.len();
    let n = batch.labels.len();
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let gap = 4;
    let (w, h) = (cols * (size + gap) + gap, rows * (size + gap) + gap);
    let mut grid = RgbImage::from_pixel(w as u32, h as u32, Rgb([255, 255, 255]));
    let plane = size * size;
    for i in 0..n {
        let img = &batch.x[i * per..(i + 1) * per];
        let (ox, oy) = (
            gap + (i % cols) * (size + gap),
            gap + (i / cols) * (size + gap),
        );
        for p in 0..plane {
            let px = Rgb(std::array::from_fn(|c| {
                ((img[c * plane + p] * pre.std[c] + pre.mean[c]) * 255.0)
                    .round()
                    .clamp(0.0, 255.0) as u8
            }));
            grid.put_pixel((ox + p % size) as u32, (oy + p / size) as u32, px);
        }
    }
    grid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(size: u32) -> Preprocess {
        Preprocess {
            size,
            resize_shorter: size + size / 8,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            filter: Default::default(),
        }
    }

    fn pictures(n: usize) -> Vec<RgbImage> {
        (0..n)
            .map(|k| {
                RgbImage::from_fn(50 + k as u32, 40, |x, y| {
                    Rgb([(x * 5) as u8, (y * 6) as u8, (k * 40) as u8])
                })
            })
            .collect()
    }

    #[test]
    fn batches_are_reproducible_whatever_the_thread_count() {
        let imgs = pictures(6);
        let refs: Vec<&RgbImage> = imgs.iter().collect();
        let idx = [10, 11, 12, 13, 14, 15];
        let labels = [0, 1, 2, 0, 1, 2];
        let cfg = AugmentConfig {
            mix_prob: 1.0,
            ..AugmentConfig::default()
        };
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| augment_batch(&refs, &idx, &labels, 3, &cfg, &pre(32), 7, 2))
        };
        let (a, b) = (run(1), run(2));
        assert_eq!(a, b);
        assert_ne!(a.mix, Mix::None);
        // Another epoch draws differently.
        let c = augment_batch(&refs, &idx, &labels, 3, &cfg, &pre(32), 7, 3);
        assert_ne!(a.x, c.x);
        for row in a.targets.chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn switched_off_it_is_the_evaluation_preprocessing() {
        let imgs = pictures(2);
        let refs: Vec<&RgbImage> = imgs.iter().collect();
        let p = pre(24);
        let b = augment_batch(&refs, &[0, 1], &[1, 0], 2, &AugmentConfig::off(), &p, 1, 0);
        let want: Vec<f32> = imgs.iter().flat_map(|i| p.apply(i)).collect();
        let worst =
            b.x.iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
        assert!(worst < 1e-5, "{worst}");
        assert_eq!(b.targets, one_hot(&[1, 0], 2));
        let grid = batch_grid(&b, &p, 2);
        assert_eq!(grid.dimensions(), (2 * 28 + 4, 28 + 4));
    }

    #[test]
    fn config_reads_partial_toml_and_rejects_typos() {
        let c: AugmentConfig = toml_like(r#"{"hflip": 0.0, "cutmix": 0.0}"#).expect("parses");
        assert_eq!(c.hflip, 0.0);
        assert_eq!(c.rotation, AugmentConfig::default().rotation);
        assert!(toml_like(r#"{"hflp": 0.5}"#).is_err());
    }

    fn toml_like(s: &str) -> Result<AugmentConfig, serde_json::Error> {
        serde_json::from_str(s)
    }
}
