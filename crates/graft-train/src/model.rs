//! A trained head as files: `model.safetensors` (head layers + feature standardisation) and
//! `model.json` (what it reads and predicts). Everything `graft predict`, `graft eval` and
//! export need, with no reference to the sweep that produced it.

use std::path::Path;

use graft_data::preprocess::Preprocess;
use graft_model::weights::{load_safetensors, save_safetensors};
use serde::{Deserialize, Serialize};

use crate::data::Standardizer;
use crate::head::{tensor, Head, HeadSpec};
use crate::trainer::TrainConfig;
use crate::TrainError;

pub const MODEL_FILE: &str = "model.safetensors";
pub const META_FILE: &str = "model.json";

/// What a head was trained on and predicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    pub format_version: u32,
    pub head: HeadSpec,
    pub classes: Vec<String>,
    pub feature_dim: usize,
    /// Locations per input row: 1 for pooled features; H·W when the head reads the encoder's
    /// feature map (`feature_dim × locations` values per image, channel-major).
    #[serde(default = "one_location")]
    pub locations: usize,
    /// Encoder and weights identity, as recorded by the feature cache.
    pub encoder: graft_model::Encoder,
    pub weights: String,
    pub preprocess: Preprocess,
    pub train: TrainConfig,
    /// Logits are divided by this before the softmax (temperature scaling, fitted on val).
    #[serde(default = "one")]
    pub temperature: f32,
    /// Encoder weights in the run folder (safetensors, the pretrained layout) when the
    /// encoder was fine-tuned; `None`: the pretrained weights from graft's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_file: Option<String>,
}

fn one() -> f32 {
    1.0
}

fn one_location() -> usize {
    1
}

/// A trained head ready to predict from raw (unstandardised) feature rows.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadModel {
    pub meta: ModelMeta,
    pub head: Head,
    pub standardizer: Standardizer,
}

impl HeadModel {
    /// The temperature logits are divided by (1 when none was fitted).
    pub fn temperature(&self) -> f32 {
        if self.meta.temperature > 0.0 {
            self.meta.temperature
        } else {
            1.0
        }
    }

    /// Values per input row: pooled features, or a whole feature map.
    pub fn row_len(&self) -> usize {
        self.meta.feature_dim * self.meta.locations.max(1)
    }

    /// The gradient of `Σ_k weights[k] · z_k`, `z` the calibrated logits (the softmax input),
    /// with respect to one raw pooled feature row, through the standardisation; `None` for
    /// heads that read feature maps.
    pub fn logit_gradient(&self, features: &[f32], weights: &[f32]) -> Option<Vec<f32>> {
        if self.reads_maps()
            || features.len() != self.meta.feature_dim
            || weights.len() != self.meta.classes.len()
        {
            return None;
        }
        let mut x = features.to_vec();
        self.standardizer.apply(&mut x);
        let mut grad = self.head.input_gradient(&x, weights)?;
        let t = self.temperature();
        for (g, s) in grad.iter_mut().zip(&self.standardizer.std) {
            *g /= s * t;
        }
        Some(grad)
    }

    /// Weights that pick class `class`'s logit less the mean logit: what the softmax sees of
    /// that class (adding one number to every logit changes no probability, so what all
    /// classes share explains none of them).
    pub fn centred(&self, class: usize) -> Vec<f32> {
        let k = self.meta.classes.len();
        (0..k)
            .map(|j| f32::from(j == class) - 1.0 / k as f32)
            .collect()
    }

    /// Whether rows are feature maps (the encoder's spatial output) rather than pooled features.
    pub fn reads_maps(&self) -> bool {
        self.meta.head.spatial()
    }

    /// Class probabilities (`n × classes`) for `n` raw rows ([`HeadModel::row_len`] values each).
    pub fn predict_proba(&self, features: &[f32], n: usize) -> Vec<f32> {
        let mut x = features[..n * self.row_len()].to_vec();
        self.standardizer.apply_spatial(&mut x, self.meta.locations);
        let mut logits = self.head.logits(&x, n);
        let t = self.temperature();
        logits.iter_mut().for_each(|v| *v /= t);
        crate::dense::softmax_rows(&mut logits, self.head.classes());
        logits
    }

    /// Where an attention head looked: `n × locations` weights summing to 1 per image (empty for
    /// heads without attention).
    pub fn attention(&self, features: &[f32], n: usize) -> Vec<f32> {
        if !self.reads_maps() {
            return Vec::new();
        }
        let mut x = features[..n * self.row_len()].to_vec();
        self.standardizer.apply_spatial(&mut x, self.meta.locations);
        self.head.attention(&x, n)
    }

    /// Write both files into `dir` (each atomically: temporary file, then rename).
    pub fn save(&self, dir: &Path) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut sd = self.head.to_state_dict(&dir.join(MODEL_FILE));
        let d = self.meta.feature_dim;
        sd.insert(
            "input.mean",
            tensor(vec![d], self.standardizer.mean.clone()),
        );
        sd.insert("input.std", tensor(vec![d], self.standardizer.std.clone()));
        save_safetensors(&sd, &dir.join(MODEL_FILE))?;
        let json = serde_json::to_string_pretty(&self.meta).map_err(|e| bad(dir, e))?;
        write_atomic(&dir.join(META_FILE), json.as_bytes())
    }

    pub fn load(dir: &Path) -> Result<HeadModel, TrainError> {
        let meta_path = dir.join(META_FILE);
        let text = std::fs::read_to_string(&meta_path).map_err(|e| io(&meta_path, e))?;
        let meta: ModelMeta = serde_json::from_str(&text).map_err(|e| bad(&meta_path, e))?;
        let sd = load_safetensors(&dir.join(MODEL_FILE))?;
        let head = Head::from_state_dict(meta.head, &sd)?;
        let d = meta.feature_dim;
        let mean = sd.require("input.mean", &[d])?.data.clone();
        let std = sd.require("input.std", &[d])?.data.clone();
        if head.inputs() != d || head.classes() != meta.classes.len() {
            return Err(bad(
                &dir.join(MODEL_FILE),
                format!(
                    "head is {}→{}, but model.json says {} features and {} classes",
                    head.inputs(),
                    head.classes(),
                    d,
                    meta.classes.len()
                ),
            ));
        }
        Ok(HeadModel {
            meta,
            head,
            standardizer: Standardizer { mean, std },
        })
    }
}

fn io(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn bad(path: &Path, why: impl ToString) -> TrainError {
    TrainError::BadCheckpoint {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// [`graft_data::atomic::write_atomic`], with the path in the error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    graft_data::atomic::write_atomic(path, bytes).map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use graft_data::rng::SplitMix64;

    /// A head over 4 features (× `locations`) and 3 classes, standardised, with a temperature.
    fn tiny(spec: HeadSpec, locations: usize) -> HeadModel {
        let mut rng = SplitMix64::new(2);
        let head = Head::new(spec, 4, 3, &mut rng);
        HeadModel {
            meta: ModelMeta {
                format_version: 1,
                head: head.spec,
                classes: vec!["a".into(), "b".into(), "c".into()],
                feature_dim: 4,
                locations,
                encoder: graft_model::arch::EncoderKind::MobileNetV2.into(),
                weights: "w".into(),
                preprocess: Preprocess {
                    size: 8,
                    resize_shorter: 8,
                    mean: [0.5; 3],
                    std: [0.5; 3],
                    filter: Default::default(),
                },
                train: TrainConfig::default(),
                temperature: 1.5,
                encoder_file: None,
            },
            head,
            standardizer: Standardizer {
                mean: vec![1.0, 2.0, 3.0, 4.0],
                std: vec![0.5, 1.0, 2.0, 4.0],
            },
        }
    }

    #[test]
    fn logit_gradient_matches_finite_differences() {
        for spec in [HeadSpec::Linear, HeadSpec::DEFAULT_MLP] {
            let model = tiny(spec, 1);
            let x = [0.3f32, 2.5, 1.0, 7.0];
            let logit = |x: &[f32], k: usize| {
                let mut z = x.to_vec();
                model.standardizer.apply(&mut z);
                model.head.logits(&z, 1)[k] / model.temperature()
            };
            for k in 0..3 {
                let mut onehot = [0.0; 3];
                onehot[k] = 1.0;
                let grad = model.logit_gradient(&x, &onehot).expect("pooled head");
                for i in 0..4 {
                    // Central differences: the logit is piecewise linear
                    // in x, so away from a ReLU kink the difference is exact up to rounding.
                    let h = 1e-3;
                    let (mut up, mut down) = (x, x);
                    up[i] += h;
                    down[i] -= h;
                    let fd = (logit(&up, k) - logit(&down, k)) / (2.0 * h);
                    assert!(
                        (fd - grad[i]).abs() < 1e-3,
                        "{spec:?} k{k} i{i}: {fd} vs {grad:?}"
                    );
                }
            }
        }
        // Centred: the gradients of the three centred logits sum to zero.
        let model = tiny(HeadSpec::DEFAULT_MLP, 1);
        let x = [0.3f32, 2.5, 1.0, 7.0];
        let sum = (0..3).fold(vec![0f32; 4], |acc, k| {
            let g = model.logit_gradient(&x, &model.centred(k)).expect("pooled");
            acc.iter().zip(g).map(|(a, b)| a + b).collect()
        });
        assert!(sum.iter().all(|v| v.abs() < 1e-5), "{sum:?}");
        assert!(tiny(HeadSpec::Attention, 3)
            .logit_gradient(&[0.0; 4], &[1.0, 0.0, 0.0])
            .is_none());
    }

    #[test]
    fn save_load_round_trip_predicts_the_same() {
        // A pooled MLP, and an attention head over 4 channels × 3 locations.
        for (spec, locations) in [(HeadSpec::DEFAULT_MLP, 1), (HeadSpec::Attention, 3)] {
            let tmp = tempfile::tempdir().expect("tmp");
            let model = tiny(spec, locations);
            model.save(tmp.path()).expect("save");
            let back = HeadModel::load(tmp.path()).expect("load");
            assert_eq!(back, model);
            let x: Vec<f32> = (0..2 * 4 * locations)
                .map(|i| (i as f32 * 0.7).sin() * 3.0)
                .collect();
            let p = back.predict_proba(&x, 2);
            assert_eq!(p, model.predict_proba(&x, 2));
            assert!((p[..3].iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert_eq!(
                back.attention(&x, 2).len(),
                if locations > 1 { 6 } else { 0 }
            );
            // A damaged model.json is an error naming the file, not a panic.
            std::fs::write(tmp.path().join(META_FILE), "{").expect("write");
            let err = HeadModel::load(tmp.path()).expect_err("broken");
            assert!(err.to_string().contains("model.json"), "{err}");
        }
    }
}
