//! `graft finetune --dry-run`: how much memory a step needs, and the largest micro batch
//! that fits a budget. An estimate from the shapes, not a measurement: parameters, their
//! gradients and AdamW moments, plus the activations the backward pass keeps.

use graft_model::arch::NetSpec;

/// Bytes for training blocks `cut..` of `spec` with a head of `head_params`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub params: usize,
    /// Weights, gradients, accumulated gradients and two AdamW moments (f32).
    pub fixed_bytes: usize,
    /// Saved activations and their gradients per image (f32; see [`Estimate::in_precision`]).
    pub per_image_bytes: usize,
}

impl Estimate {
    pub fn new(spec: &NetSpec, cut: usize, head_params: usize) -> Estimate {
        let mut s = spec.preprocess.size as usize;
        let mut params = head_params;
        let mut act = 0usize;
        for (bi, b) in spec.blocks.iter().enumerate() {
            let out = b.output_size(s);
            if bi >= cut {
                let mut at = s;
                for l in b.convs() {
                    // The projection reads the block input, like the first layer.
                    at = if b.projection.as_ref() == Some(l) {
                        out
                    } else {
                        l.output_size(at)
                    };
                    params += l.out_ch * (l.in_ch / l.groups) * l.kernel * l.kernel + l.out_ch;
                    // Conv output and its activation are both kept, and each gets a gradient.
                    act += 2 * l.out_ch * at * at;
                }
            }
            s = out;
        }
        Estimate {
            params,
            fixed_bytes: params * 4 * 5,
            per_image_bytes: act * 4 * 2,
        }
    }

    /// The same step in `precision`: with bf16 the kept activations and their gradients take
    /// half the bytes, and the weights gain a bf16 copy (and its gradient) beside the f32 ones.
    pub fn in_precision(self, precision: super::Precision) -> Estimate {
        match precision {
            super::Precision::F32 => self,
            super::Precision::Bf16 => Estimate {
                params: self.params,
                fixed_bytes: self.fixed_bytes + self.params * 2 * 2,
                per_image_bytes: self.per_image_bytes / 2,
            },
        }
    }

    pub fn bytes(&self, micro_batch: usize) -> usize {
        self.fixed_bytes + self.per_image_bytes * micro_batch
    }

    /// Largest micro batch within `budget` bytes (0 if even one image does not fit).
    pub fn fits(&self, budget: usize) -> usize {
        budget.saturating_sub(self.fixed_bytes) / self.per_image_bytes.max(1)
    }
}

/// Parse "4GB", "512MB", "1.5GiB", "2048" (bytes). Memory is counted in powers of two — a
/// "4 GB" card holds 4 GiB — so a unit without the "i" is read as its binary one.
pub fn parse_bytes(s: &str) -> Option<usize> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let binary = match unit.as_str() {
        "" | "b" => "B",
        "k" | "kb" | "kib" => "KiB",
        "m" | "mb" | "mib" => "MiB",
        "g" | "gb" | "gib" => "GiB",
        _ => return None,
    };
    let size: bytesize::ByteSize = format!("{num} {binary}").parse().ok()?;
    usize::try_from(size.as_u64()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_the_fit_is_monotone() {
        assert_eq!(parse_bytes("4GB"), Some(4 << 30));
        assert_eq!(parse_bytes("512 MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1.5g"), Some(3 << 29));
        assert_eq!(parse_bytes("lots"), None);
        let e = Estimate {
            params: 10,
            fixed_bytes: 200,
            per_image_bytes: 100,
        };
        assert_eq!(e.fits(1000), 8);
        assert_eq!(e.fits(100), 0);
        assert!(e.bytes(8) <= 1000 && e.bytes(9) > 1000);
        let half = e.in_precision(crate::finetune::Precision::Bf16);
        assert_eq!((half.fixed_bytes, half.per_image_bytes), (240, 50));
        assert_eq!(e.in_precision(crate::finetune::Precision::F32), e);
    }
}
