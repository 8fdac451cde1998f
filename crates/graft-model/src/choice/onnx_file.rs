//! A user's ONNX feature extractor as an encoder: what the file must be (read from its
//! declared inputs and outputs), the sizes it leaves open, and its identity.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::arch::Preprocess;
use crate::onnx::{read_model, shape_text, Dim, ModelInfo};
use graft_data::preprocess::Filter;

/// A feature extractor in an ONNX file: one float image input `[N, 3, S, S]`, and `output`,
/// either pooled features `[N, C]` or a feature map `[N, C, H, W]` that graft average-pools
/// (and that Grad-CAM weighs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxEncoder {
    /// The file (absolute once [`OnnxEncoder::resolve`]d).
    pub onnx: PathBuf,
    /// The output graft reads; empty: the file's only output.
    #[serde(default)]
    pub output: String,
    /// How images are prepared for it. Before [`OnnxEncoder::resolve`], a `size` of 0 means
    /// the file's own input size (224 when the file leaves it open) and a `resize_shorter` of 0
    /// means torchvision's evaluation ratio, 256 for 224.
    #[serde(default = "OnnxEncoder::unset_preprocess")]
    pub preprocess: Preprocess,
}

/// What an ONNX file must be to serve as an encoder, and where it is not.
#[derive(Debug, thiserror::Error)]
pub enum OnnxEncoderError {
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Unfit { path: PathBuf, detail: String },
    #[error(
        "{} changed since the features were made: it is {found} now, {expected} then (put the \
         original file back, or retrain with this one)",
        path.display()
    )]
    Changed {
        path: PathBuf,
        expected: String,
        found: String,
    },
}

/// The parts of an encoder file graft uses, read from its declared inputs and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnnxLayout {
    /// The image input's name.
    pub input: String,
    /// The batch size the file is fixed to, if it is (files exported without a dynamic batch
    /// axis take one image at a time).
    pub fixed_batch: Option<usize>,
    /// The input's side when the file fixes it.
    pub fixed_size: Option<usize>,
    pub output: String,
    /// `[N, C]` rather than `[N, C, H, W]`.
    pub pooled: bool,
    /// C, when the file states it.
    pub channels: Option<usize>,
    /// The map's side (H = W) when the file states it.
    pub map_side: Option<usize>,
}

fn fixed(d: &Dim) -> Option<usize> {
    match d {
        Dim::Fixed(v) if *v > 0 => Some(*v),
        _ => None,
    }
}

impl OnnxEncoder {
    /// ImageNet's mean and std with the sizes left to [`OnnxEncoder::resolve`].
    pub fn unset_preprocess() -> Preprocess {
        Preprocess {
            size: 0,
            resize_shorter: 0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            filter: Filter::Bilinear,
        }
    }

    /// `path`, its output and sizes to be found by [`OnnxEncoder::resolve`].
    pub fn unresolved(path: impl Into<PathBuf>) -> OnnxEncoder {
        OnnxEncoder {
            onnx: path.into(),
            output: String::new(),
            preprocess: OnnxEncoder::unset_preprocess(),
        }
    }

    fn unfit(&self, detail: impl Into<String>) -> OnnxEncoderError {
        OnnxEncoderError::Unfit {
            path: self.onnx.clone(),
            detail: detail.into(),
        }
    }

    /// The file's bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, OnnxEncoderError> {
        std::fs::read(&self.onnx).map_err(|source| OnnxEncoderError::Io {
            path: self.onnx.clone(),
            source,
        })
    }

    /// The file's bytes, checked to be the file `id` ([`OnnxEncoder::id_of`]) was taken of.
    pub fn bytes_checked(&self, id: &str) -> Result<Vec<u8>, OnnxEncoderError> {
        let bytes = self.bytes()?;
        let found = self.id_of(&bytes);
        if found != id {
            return Err(OnnxEncoderError::Changed {
                path: self.onnx.clone(),
                expected: id.to_string(),
                found,
            });
        }
        Ok(bytes)
    }

    /// The identity of the file's contents, `STEM-<sha256 prefix>`, stored with features so
    /// that those of another file are never mixed in.
    pub fn id_of(&self, bytes: &[u8]) -> String {
        let hex = crate::weights::sha256_bytes(bytes);
        format!("{}-{}", self.stem(), &hex[..12])
    }

    /// The file name without `.onnx`.
    pub fn stem(&self) -> String {
        self.onnx
            .file_stem()
            .map_or_else(|| "onnx".into(), |s| s.to_string_lossy().into_owned())
    }

    /// The input and output graft uses in the file `bytes` (whose info is `info`), checked.
    pub fn layout_of(&self, info: &ModelInfo) -> Result<OnnxLayout, OnnxEncoderError> {
        // Refused now rather than at export, after the extraction: the head graft appends to
        // the file (export, serving, Grad-CAM) is written in opset 13 operators.
        if info.opset() < 13 {
            return Err(self.unfit(format!(
                "it uses ONNX opset {}; graft needs 13 or newer (re-export it with \
                 opset_version=13 or later)",
                info.opset()
            )));
        }
        let [input] = info.inputs.as_slice() else {
            let names: Vec<&str> = info.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(self.unfit(format!(
                "an encoder takes one image input; this file takes {} ({})",
                names.len(),
                names.join(", ")
            )));
        };
        if input.elem_type != 0 && input.elem_type != 1 {
            return Err(self.unfit(format!(
                "input `{}` is not float (ONNX element type {}); graft feeds float32 images",
                input.name, input.elem_type
            )));
        }
        let (mut fixed_batch, mut fixed_size) = (None, None);
        if let Some(d) = &input.dims {
            if d.len() != 4 || fixed(&d[1]).is_some_and(|c| c != 3) {
                return Err(self.unfit(format!(
                    "input `{}` has shape {}; graft feeds images as [N, 3, S, S]",
                    input.name,
                    shape_text(d)
                )));
            }
            fixed_batch = fixed(&d[0]);
            let (h, w) = (fixed(&d[2]), fixed(&d[3]));
            if h != w && h.is_some() && w.is_some() {
                return Err(self.unfit(format!(
                    "input `{}` is {}, not square; graft feeds square centre crops",
                    input.name,
                    shape_text(d)
                )));
            }
            fixed_size = h.or(w);
        }
        let output = if self.output.is_empty() {
            match info.outputs.as_slice() {
                [one] => one,
                outs => {
                    return Err(self.unfit(format!(
                        "it has {} outputs ({}); name the one with the features with --output",
                        outs.len(),
                        outs.iter()
                            .map(|o| o.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            }
        } else {
            info.output(&self.output).ok_or_else(|| {
                self.unfit(format!(
                    "it has no output `{}`; its outputs are {} (see `graft models inspect`)",
                    self.output,
                    info.outputs
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?
        };
        let dims = output.dims.as_ref().ok_or_else(|| {
            self.unfit(format!(
                "output `{}` has no declared shape; graft needs to know whether it is [N, C] \
                 or [N, C, H, W] (re-export it with shapes, e.g. from PyTorch's exporter)",
                output.name
            ))
        })?;
        let pooled = match dims.len() {
            2 => true,
            4 => false,
            _ => {
                return Err(self.unfit(format!(
                    "output `{}` has shape {}; an encoder gives pooled features [N, C] or a \
                     feature map [N, C, H, W]",
                    output.name,
                    shape_text(dims)
                )))
            }
        };
        let map_side = if pooled {
            None
        } else {
            match (fixed(&dims[2]), fixed(&dims[3])) {
                (Some(h), Some(w)) if h != w => {
                    return Err(self.unfit(format!(
                        "output `{}` is a {h}×{w} map; graft needs square maps (a square input \
                         gives one in every common network)",
                        output.name
                    )))
                }
                (h, w) => h.or(w),
            }
        };
        Ok(OnnxLayout {
            input: input.name.clone(),
            fixed_batch,
            fixed_size,
            output: output.name.clone(),
            pooled,
            channels: fixed(&dims[1]),
            map_side,
        })
    }

    /// The file's layout, read from its bytes.
    pub fn layout(&self, bytes: &[u8]) -> Result<OnnxLayout, OnnxEncoderError> {
        let info = read_model(bytes).map_err(|e| self.unfit(e.to_string()))?;
        self.layout_of(&info)
    }

    /// Everything left open filled in from the file: the path made absolute, the output named,
    /// the input size and resize set. Fails, naming the file, when the file cannot be an
    /// encoder or contradicts the sizes given.
    pub fn resolve(&self) -> Result<OnnxEncoder, OnnxEncoderError> {
        let path = std::fs::canonicalize(&self.onnx).map_err(|source| OnnxEncoderError::Io {
            path: self.onnx.clone(),
            source,
        })?;
        let enc = OnnxEncoder {
            onnx: path,
            ..self.clone()
        };
        let layout = enc.layout(&enc.bytes()?)?;
        let mut pre = enc.preprocess;
        match (pre.size, layout.fixed_size) {
            (0, Some(s)) => pre.size = s as u32,
            (0, None) => pre.size = 224,
            (given, Some(s)) if given as usize != s => {
                return Err(enc.unfit(format!(
                    "its input is fixed at {s}×{s}, not the --input-size {given} given"
                )))
            }
            _ => {}
        }
        if pre.resize_shorter == 0 {
            pre.resize_shorter = (f64::from(pre.size) * 256.0 / 224.0).round() as u32;
        }
        if pre.resize_shorter < pre.size {
            return Err(enc.unfit(format!(
                "--resize-shorter {} is below --input-size {}: the centre crop would not fit",
                pre.resize_shorter, pre.size
            )));
        }
        if pre.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(enc.unfit(format!("--std {:?} must be positive numbers", pre.std)));
        }
        Ok(OnnxEncoder {
            output: layout.output,
            preprocess: pre,
            ..enc
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with one input `input` and outputs of the given shapes (all from the input, by
    /// Identity: only the declarations matter here).
    fn file(input: &[Dim], outputs: &[(&str, Vec<Dim>)]) -> Vec<u8> {
        let mut g = crate::onnx::Graph::new("t");
        let x = g.input("input", input);
        for (name, dims) in outputs {
            let y = g.node("Identity", &[&x], name, &[]);
            g.output(&y, dims);
        }
        g.to_model("test", "0")
    }

    fn n() -> Dim {
        Dim::Named("N".into())
    }

    fn f(v: usize) -> Dim {
        Dim::Fixed(v)
    }

    fn layout(bytes: &[u8], output: &str) -> Result<OnnxLayout, String> {
        let mut enc = OnnxEncoder::unresolved("net.onnx");
        enc.output = output.into();
        enc.layout(bytes).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_is_checked_for_what_an_encoder_must_be() {
        let img = [n(), f(3), f(32), f(32)];
        let two = file(
            &img,
            &[
                ("map", vec![n(), f(8), f(4), f(4)]),
                ("vec", vec![n(), f(8)]),
                ("seq", vec![n(), f(8), f(16)]),
            ],
        );
        let l = layout(&two, "map").expect("a map");
        assert!(!l.pooled);
        assert_eq!(
            (l.channels, l.map_side, l.fixed_size),
            (Some(8), Some(4), Some(32))
        );
        assert_eq!(l.input, "input");
        assert!(layout(&two, "vec").expect("pooled").pooled);
        let e = layout(&two, "").expect_err("three outputs, none named");
        assert!(e.contains("map, vec, seq") && e.contains("--output"), "{e}");
        let e = layout(&two, "seq").expect_err("rank 3");
        assert!(
            e.contains("[N, 8, 16]") && e.contains("[N, C, H, W]"),
            "{e}"
        );
        let e = layout(&two, "nope").expect_err("no such output");
        assert!(
            e.contains("no output `nope`") && e.contains("map, vec, seq"),
            "{e}"
        );

        let grey = file(&[n(), f(1), f(32), f(32)], &[("v", vec![n(), f(8)])]);
        let e = layout(&grey, "").expect_err("one channel");
        assert!(
            e.contains("[N, 1, 32, 32]") && e.contains("[N, 3, S, S]"),
            "{e}"
        );
        let wide = file(&[n(), f(3), f(32), f(48)], &[("v", vec![n(), f(8)])]);
        assert!(layout(&wide, "")
            .expect_err("not square")
            .contains("not square"));
        let oblong = file(&img, &[("m", vec![n(), f(8), f(4), f(6)])]);
        assert!(layout(&oblong, "").expect_err("4×6 map").contains("4×6"));
        let batch1 = file(&[f(1), f(3), f(32), f(32)], &[("v", vec![f(1), f(8)])]);
        assert_eq!(layout(&batch1, "").expect("batch 1").fixed_batch, Some(1));
        // An opset older than the head graft appends.
        let mut old = read_model(&batch1).expect("reads");
        old.opsets = vec![(String::new(), 11)];
        let e = OnnxEncoder::unresolved("net.onnx")
            .layout_of(&old)
            .expect_err("opset 11");
        assert!(e.to_string().contains("opset 11"), "{e}");
    }

    #[test]
    fn resolving_takes_the_files_size_and_refuses_another() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("net.onnx");
        std::fs::write(
            &path,
            file(&[n(), f(3), f(96), f(96)], &[("v", vec![n(), f(8)])]),
        )
        .expect("write");
        let enc = OnnxEncoder::unresolved(&path).resolve().expect("resolves");
        assert_eq!(enc.output, "v");
        assert_eq!(enc.preprocess.size, 96);
        assert_eq!(enc.preprocess.resize_shorter, 110, "96 × 256/224, rounded");
        assert!(enc.onnx.is_absolute());
        assert_eq!(
            enc.resolve().expect("again"),
            enc,
            "resolving is idempotent"
        );
        let mut wrong = OnnxEncoder::unresolved(&path);
        wrong.preprocess.size = 224;
        let e = wrong.resolve().expect_err("fixed at 96").to_string();
        assert!(e.contains("fixed at 96×96") && e.contains("224"), "{e}");
        let mut small = OnnxEncoder::unresolved(&path);
        small.preprocess.resize_shorter = 64;
        let e = small.resolve().expect_err("crop does not fit").to_string();
        assert!(e.contains("--resize-shorter 64"), "{e}");

        // Open sizes: 224, and its resize.
        std::fs::write(
            &path,
            file(&[n(), f(3), n(), n()], &[("v", vec![n(), f(8)])]),
        )
        .expect("write");
        let enc = OnnxEncoder::unresolved(&path).resolve().expect("resolves");
        assert_eq!(
            (enc.preprocess.size, enc.preprocess.resize_shorter),
            (224, 256)
        );
        let id = enc.id_of(&enc.bytes().expect("bytes"));
        assert!(
            id.starts_with("net-") && id.len() == "net-".len() + 12,
            "{id}"
        );
        assert!(enc.bytes_checked(&id).is_ok());
        let e = enc.bytes_checked("net-000000000000").expect_err("changed");
        assert!(e.to_string().contains("changed since"), "{e}");
    }
}
