//! A user's ONNX feature extractor run as it is (`--encoder FILE.onnx`): graft reads its one
//! output and, when that is a feature map, average-pools it.

use ort::session::Session;

use super::{run_images, session_from_onnx, OrtError, OrtOptions, BACKEND};
use crate::choice::{OnnxEncoder, OnnxLayout};
use crate::encoder::{EncoderError, EncoderOutput, ImageEncoder};

pub struct OnnxFileEncoder {
    session: Session,
    layout: OnnxLayout,
    size: usize,
    feature_dim: usize,
    /// Locations of the map (1 when the output is pooled).
    locations: usize,
}

impl OnnxFileEncoder {
    /// A session on `bytes` (the file of `enc`, resolved), tried once on a blank image so
    /// that a file that cannot take graft's input fails here, naming itself.
    pub fn new(enc: &OnnxEncoder, bytes: &[u8], opts: OrtOptions) -> Result<Self, OrtError> {
        let layout = enc.layout(bytes)?;
        if let Some(b) = layout.fixed_batch.filter(|b| *b > 1) {
            return Err(OrtError::Runtime(format!(
                "{}: its input's batch is fixed at {b}; export it with a dynamic batch axis, \
                 or a batch of 1",
                enc.onnx.display()
            )));
        }
        let size = enc.preprocess.size as usize;
        let mut session = session_from_onnx(bytes, opts)?;
        let blank = vec![0.0f32; 3 * size * size];
        let out = run_images(&mut session, &blank, 1, size, &layout.output).map_err(|e| {
            OrtError::Runtime(format!(
                "{} does not run on a 3×{size}×{size} image (is --input-size right?): {e}",
                enc.onnx.display()
            ))
        })?;
        let (feature_dim, locations) = match (layout.pooled, layout.channels) {
            (true, _) => (out.len(), 1),
            (false, Some(c)) if c > 0 && out.len() % c == 0 => (c, out.len() / c),
            (false, _) => {
                // C is not declared: the map's side, when declared, gives it.
                let side = layout.map_side.unwrap_or(0);
                if side == 0 || out.len() % (side * side) != 0 {
                    return Err(OrtError::Runtime(format!(
                        "{}: output `{}` declares neither its channels nor its map size",
                        enc.onnx.display(),
                        layout.output
                    )));
                }
                (out.len() / (side * side), side * side)
            }
        };
        let side = (locations as f64).sqrt().round() as usize;
        if side * side != locations || feature_dim == 0 {
            return Err(OrtError::Runtime(format!(
                "{}: output `{}` gives {} values per image, not C×S×S",
                enc.onnx.display(),
                layout.output,
                out.len()
            )));
        }
        Ok(OnnxFileEncoder {
            session,
            layout,
            size,
            feature_dim,
            locations,
        })
    }

    /// Side of the feature map (`None` when the file gives pooled features).
    pub fn feature_map_size(&self) -> Option<usize> {
        (!self.layout.pooled).then(|| (self.locations as f64).sqrt().round() as usize)
    }
}

impl ImageEncoder for OnnxFileEncoder {
    fn feature_dim(&self) -> usize {
        self.feature_dim
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn encode(
        &mut self,
        input: &[f32],
        n: usize,
        want_feature_map: bool,
    ) -> Result<EncoderOutput, EncoderError> {
        crate::encoder::check_batch(input, n, self.size as u32)?;
        let c = self.feature_dim;
        let l = self.locations;
        let out = run_images(&mut self.session, input, n, self.size, &self.layout.output)?;
        if out.len() != n * c * l {
            return Err(OrtError::Runtime(format!(
                "output `{}` gave {} values for {n} images, expected {}",
                self.layout.output,
                out.len(),
                n * c * l
            ))
            .into());
        }
        if self.layout.pooled {
            if want_feature_map {
                return Err(EncoderError::Backend {
                    backend: BACKEND,
                    detail: format!(
                        "output `{}` is pooled features, not a feature map; name a \
                         [N, C, H, W] output with --output for attention heads",
                        self.layout.output
                    ),
                });
            }
            return Ok(EncoderOutput {
                features: out,
                ..Default::default()
            });
        }
        let features = out
            .chunks_exact(l)
            .map(|loc| loc.iter().sum::<f32>() / l as f32)
            .collect();
        Ok(EncoderOutput {
            features,
            logits: Vec::new(),
            feature_map: want_feature_map.then_some(out),
        })
    }
}
