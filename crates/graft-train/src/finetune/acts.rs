//! Cached activations at the cut (the input of the first trained block), in f16: the frozen
//! lower encoder runs once per image, and stages 1–2 train on the cache in seconds per
//! thousand images instead of running the whole network every step.
//!
//! On disk: `DIR/meta.json` plus chunk files `SPLIT-NNNNN.f16` of [`CHUNK`] images, each
//! written atomically (temporary file, then rename). A killed build resumes at the first
//! missing chunk; a cache made for other images, weights or cut is rebuilt.

use std::path::{Path, PathBuf};

use graft_data::preprocess::Preprocess;
use half::f16;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::model::write_atomic;
use crate::TrainError;

/// Images per chunk file (about 16 MB at 160×7×7).
pub const CHUNK: usize = 1024;

/// Activations of one split in memory.
#[derive(Debug, Clone, Default)]
pub struct Acts {
    /// `[c, h, w]` of one activation.
    pub shape: [usize; 3],
    x: Vec<f16>,
    pub labels: Vec<usize>,
}

impl Acts {
    pub fn new(shape: [usize; 3], x: &[f32], labels: Vec<usize>) -> Acts {
        Acts {
            shape,
            x: x.iter().map(|&v| f16::from_f32(v)).collect(),
            labels,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn row_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Rows `idx`, as f32, one after another.
    pub fn gather(&self, idx: &[usize]) -> Vec<f32> {
        let d = self.row_len();
        let mut out = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            out.extend(self.x[i * d..(i + 1) * d].iter().map(|v| v.to_f32()));
        }
        out
    }

    /// Rows `idx`, as a new set.
    pub fn select(&self, idx: &[usize]) -> Acts {
        let d = self.row_len();
        let mut x = Vec::with_capacity(idx.len() * d);
        for &i in idx {
            x.extend_from_slice(&self.x[i * d..(i + 1) * d]);
        }
        Acts {
            shape: self.shape,
            x,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    pub fn bytes(&self) -> usize {
        self.x.len() * 2
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    /// What the activations depend on: image list, encoder weights, cut.
    fingerprint: String,
    shape: [usize; 3],
}

/// One image to cache: its file and class index.
#[derive(Debug, Clone)]
pub struct Item {
    pub path: PathBuf,
    pub label: usize,
}

impl Item {
    /// The image, or an error naming the file and the fix.
    pub fn decode(&self) -> Result<image::RgbImage, TrainError> {
        graft_data::decode::read_and_decode(&self.path)
            .map(|(_, img)| img)
            .map_err(|e| {
                TrainError::Finetune(format!(
                    "{}: {e}; remove the file or rerun `graft split` so it is left out",
                    self.path.display()
                ))
            })
    }
}

/// Runs the frozen lower encoder on a preprocessed batch (`n × 3 × S × S`), returning
/// `n × c × h × w` activations.
pub type Encode<'a> = dyn FnMut(&[f32], usize) -> Result<Vec<f32>, String> + 'a;

/// Load split `name` from `dir`, computing the chunks that are missing with `encode`.
/// `progress(done, total)` is called after each chunk.
#[allow(clippy::too_many_arguments)]
pub fn load_or_build(
    dir: &Path,
    name: &str,
    fingerprint: &str,
    shape: [usize; 3],
    items: &[Item],
    pre: &Preprocess,
    encode: &mut Encode<'_>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Acts, TrainError> {
    let io = |path: &Path, source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let meta_path = dir.join("meta.json");
    let want = Meta {
        fingerprint: fingerprint.to_string(),
        shape,
    };
    let have: Option<Meta> = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if have.as_ref() != Some(&want) {
        if have.is_some() {
            tracing::info!("{}: made for other inputs; rebuilding", dir.display());
        }
        for e in std::fs::read_dir(dir).map_err(|e| io(dir, e))?.flatten() {
            if e.path().extension().is_some_and(|x| x == "f16") {
                std::fs::remove_file(e.path()).map_err(|err| io(&e.path(), err))?;
            }
        }
        let bytes = serde_json::to_vec_pretty(&want)
            .map_err(|e| TrainError::Finetune(format!("writing {}: {e}", meta_path.display())))?;
        write_atomic(&meta_path, &bytes)?;
    }
    let d: usize = shape.iter().product();
    let chunks = items.len().div_ceil(CHUNK);
    let mut x = Vec::with_capacity(items.len() * d);
    for k in 0..chunks {
        let part = &items[k * CHUNK..((k + 1) * CHUNK).min(items.len())];
        let file = dir.join(format!("{name}-{k:05}.f16"));
        let cached = std::fs::read(&file)
            .ok()
            .filter(|b| b.len() == part.len() * d * 2);
        let bytes = match cached {
            Some(b) => b,
            None => {
                let b = encode_chunk(part, pre, d, encode)?;
                write_atomic(&file, &b)?;
                b
            }
        };
        x.extend(
            bytes
                .chunks_exact(2)
                .map(|p| f16::from_le_bytes([p[0], p[1]])),
        );
        progress(((k + 1) * CHUNK).min(items.len()), items.len());
    }
    Ok(Acts {
        shape,
        x,
        labels: items.iter().map(|i| i.label).collect(),
    })
}

fn encode_chunk(
    part: &[Item],
    pre: &Preprocess,
    d: usize,
    encode: &mut Encode<'_>,
) -> Result<Vec<u8>, TrainError> {
    const BATCH: usize = 32;
    let mut out = Vec::with_capacity(part.len() * d * 2);
    for batch in part.chunks(BATCH) {
        let inputs: Result<Vec<Vec<f32>>, TrainError> = batch
            .par_iter()
            .map(|it| Ok(pre.apply(&it.decode()?)))
            .collect();
        let input: Vec<f32> = inputs?.concat();
        let y = encode(&input, batch.len()).map_err(TrainError::Finetune)?;
        if y.len() != batch.len() * d {
            return Err(TrainError::Finetune(format!(
                "the encoder returned {} values for {} images, expected {} each",
                y.len(),
                batch.len(),
                d
            )));
        }
        for v in y {
            out.extend_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(dir: &Path, n: usize) -> Vec<Item> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("{i}.png"));
                let v = (i * 40 % 256) as u8;
                image::RgbImage::from_pixel(8, 8, image::Rgb([v, v, 255 - v]))
                    .save(&p)
                    .expect("write png");
                Item {
                    path: p,
                    label: i % 2,
                }
            })
            .collect()
    }

    #[test]
    fn builds_once_resumes_missing_chunks_and_rebuilds_for_new_inputs() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let its = items(tmp.path(), 5);
        let pre = Preprocess {
            size: 4,
            resize_shorter: 4,
            mean: [0.0; 3],
            std: [1.0; 3],
            filter: graft_data::preprocess::Filter::Bilinear,
        };
        let cache = tmp.path().join("acts");
        let mut calls = 0;
        // "Encoder": the mean of each image's first channel, twice.
        let mut enc = |x: &[f32], n: usize| -> Result<Vec<f32>, String> {
            calls += n;
            Ok((0..n)
                .flat_map(|i| {
                    let m = x[i * 48..i * 48 + 16].iter().sum::<f32>() / 16.0;
                    [m, -m]
                })
                .collect())
        };
        let a = load_or_build(
            &cache,
            "train",
            "fp",
            [2, 1, 1],
            &its,
            &pre,
            &mut enc,
            &mut |_, _| {},
        )
        .expect("build");
        assert_eq!(a.len(), 5);
        assert_eq!(a.labels, vec![0, 1, 0, 1, 0]);
        let row = a.gather(&[1]);
        assert!((row[0] - 40.0 / 255.0).abs() < 1e-3 && (row[0] + row[1]).abs() < 1e-6);
        let b = load_or_build(
            &cache,
            "train",
            "fp",
            [2, 1, 1],
            &its,
            &pre,
            &mut enc,
            &mut |_, _| {},
        )
        .expect("load");
        assert_eq!(a.gather(&[0, 1, 2, 3, 4]), b.gather(&[0, 1, 2, 3, 4]));
        let _ = load_or_build(
            &cache,
            "train",
            "other",
            [2, 1, 1],
            &its,
            &pre,
            &mut enc,
            &mut |_, _| {},
        )
        .expect("rebuild");
        assert_eq!(calls, 10, "built twice (second fingerprint), loaded once");
    }
}
