//! What an encoder costs: parameters and multiply-adds, from its spec alone.

use super::spec::NetSpec;

impl NetSpec {
    /// Learned parameters: convolution weights, BatchNorm scales and shifts, and the
    /// classifier if kept (torchvision's count; BatchNorm's running statistics are buffers).
    pub fn parameters(&self) -> usize {
        let convs: usize = self
            .convs()
            .map(|l| l.out_ch * (l.in_ch / l.groups) * l.kernel * l.kernel + 2 * l.out_ch)
            .sum();
        let fc = self.classifier.as_ref();
        convs + fc.map_or(0, |c| c.in_features * c.out_features + c.out_features)
    }

    /// Multiply-adds of one image's forward pass at the preprocessing size: convolutions and
    /// the classifier (what torchvision's tables list as GFLOPS).
    pub fn multiply_adds(&self) -> u64 {
        let mut s = self.preprocess.size as usize;
        let mut total = 0u64;
        for b in &self.blocks {
            let mut at = s;
            for l in &b.layers {
                at = l.output_size(at);
                total += (l.out_ch * (l.in_ch / l.groups) * l.kernel * l.kernel * at * at) as u64;
            }
            if let Some(p) = &b.projection {
                total += (p.out_ch * p.in_ch / p.groups * p.kernel * p.kernel * at * at) as u64;
            }
            s = b.output_size(s);
        }
        let fc = self.classifier.as_ref();
        total + fc.map_or(0, |c| (c.in_features * c.out_features) as u64)
    }
}
