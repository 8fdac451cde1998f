//! Test doubles shared by the integration tests: tiny image folders and a deterministic encoder.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use graft_data::preprocess::Preprocess;
use graft_features::ExtractOptions;
use graft_model::arch::EncoderKind;
use graft_model::encoder::{EncoderError, EncoderOutput, ImageEncoder};

pub const SIZE: u32 = 8;

pub fn preprocess() -> Preprocess {
    Preprocess {
        size: SIZE,
        resize_shorter: SIZE,
        mean: [0.5; 3],
        std: [0.25; 3],
        filter: Default::default(),
    }
}

/// Chunks of 4 encoded in batches of 3, so batches end inside and at chunk boundaries.
pub fn options() -> ExtractOptions {
    let mut o = ExtractOptions::new(EncoderKind::MobileNetV2, "weights-v1", preprocess());
    o.chunk = 4;
    o.batch = 3;
    o
}

/// `n` PNGs in `classes` class folders; indices in `corrupt` are garbage `.jpg` files.
pub fn make_folder(dir: &Path, n: usize, classes: usize, corrupt: &[usize]) {
    for i in 0..n {
        let class = dir.join(format!("class{}", i % classes));
        std::fs::create_dir_all(&class).expect("mkdir");
        if corrupt.contains(&i) {
            std::fs::write(class.join(format!("img{i:03}.jpg")), b"not an image").expect("write");
            continue;
        }
        let (w, h) = (10 + (i % 5) as u32, 9 + (i % 3) as u32);
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let v = (x * 17 + y * 31 + i as u32 * 13) as u8;
            image::Rgb([v, v.wrapping_mul(3), 255 - v])
        });
        img.save(class.join(format!("img{i:03}.png")))
            .expect("save");
    }
}

/// Per-channel mean and standard deviation of the input tensor: feature_dim 6. With a feature
/// map, a 6×2×2 map of quadrant means (channels 3..5 scaled by 2).
pub struct MeanStd {
    /// Images encoded so far (all calls).
    pub images: usize,
    pub calls: usize,
    /// Sleep per call, to let a test kill a run half-way.
    pub delay: Duration,
}

impl MeanStd {
    pub fn new() -> Self {
        MeanStd {
            images: 0,
            calls: 0,
            delay: Duration::ZERO,
        }
    }
}

impl ImageEncoder for MeanStd {
    fn feature_dim(&self) -> usize {
        6
    }
    fn backend(&self) -> &'static str {
        "test"
    }
    fn encode(
        &mut self,
        input: &[f32],
        n: usize,
        want_feature_map: bool,
    ) -> Result<EncoderOutput, EncoderError> {
        let s = SIZE as usize;
        let plane = s * s;
        if input.len() != n * 3 * plane {
            return Err(EncoderError::BadInput {
                got: input.len(),
                expected: n * 3 * plane,
                n,
                size: SIZE,
            });
        }
        std::thread::sleep(self.delay);
        self.calls += 1;
        self.images += n;
        let mut features = Vec::new();
        let mut map = Vec::new();
        for img in input.chunks_exact(3 * plane) {
            let mut std = Vec::new();
            for ch in img.chunks_exact(plane) {
                let mean = ch.iter().sum::<f32>() / plane as f32;
                let var = ch.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / plane as f32;
                features.push(mean);
                std.push(var.sqrt());
            }
            features.extend(std);
            for c in 0..6 {
                let ch = &img[(c % 3) * plane..(c % 3 + 1) * plane];
                for q in 0..4 {
                    let (qy, qx) = (q / 2 * s / 2, q % 2 * s / 2);
                    let mut sum = 0.0;
                    for y in qy..qy + s / 2 {
                        sum += ch[y * s + qx..y * s + qx + s / 2].iter().sum::<f32>();
                    }
                    map.push(sum / (plane / 4) as f32 * (1 + c / 3) as f32);
                }
            }
        }
        Ok(EncoderOutput {
            features,
            logits: Vec::new(),
            feature_map: want_feature_map.then_some(map),
        })
    }
}

/// Every file of a folder, by name, for byte-for-byte comparisons; not the shard locks
/// (empty dot files, left by whichever processes extracted).
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".lock-") {
            continue;
        }
        out.insert(name, std::fs::read(e.path()).expect("read"));
    }
    out
}

/// Finished feature shards (names only: another process may be renaming files meanwhile).
pub fn shard_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("shard-") && n.ends_with(".f16")
                })
                .count()
        })
        .unwrap_or(0)
}
