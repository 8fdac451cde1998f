//! What an encoder costs: parameters and multiply-adds, from its spec alone.

use super::spec::{Linear, NetSpec};

impl NetSpec {
    /// Learned parameters: convolution weights, BatchNorm scales and shifts, and the
    /// classifier if kept (torchvision's count; BatchNorm's running statistics are buffers).
    pub fn parameters(&self) -> usize {
        let convs: usize = self
            .convs()
            .map(|l| l.out_ch * (l.in_ch / l.groups) * l.kernel * l.kernel + 2 * l.out_ch)
            .sum();
        let dense = |l: &Linear| l.in_features * l.out_features + l.out_features;
        let se: usize = self
            .blocks
            .iter()
            .filter_map(|b| b.se.as_ref())
            .map(|se| dense(&se.reduce) + dense(&se.expand))
            .sum();
        let fc: usize = self.hidden.iter().chain(&self.classifier).map(dense).sum();
        convs + se + fc
    }

    /// Multiply-adds of one image's forward pass at the preprocessing size: convolutions,
    /// squeeze-and-excitation and the classifier (what torchvision's tables list as GFLOPS).
    pub fn multiply_adds(&self) -> u64 {
        let mut s = self.preprocess.size as usize;
        let mut total = 0u64;
        for b in &self.blocks {
            let mut at = s;
            for l in &b.layers {
                at = l.output_size(at);
                total += (l.out_ch * (l.in_ch / l.groups) * l.kernel * l.kernel * at * at) as u64;
            }
            if let Some(se) = &b.se {
                total += (2 * se.reduce.in_features * se.reduce.out_features) as u64;
            }
            if let Some(p) = &b.projection {
                total += (p.out_ch * p.in_ch / p.groups * p.kernel * p.kernel * at * at) as u64;
            }
            s = b.output_size(s);
        }
        let fc = self.hidden.iter().chain(&self.classifier);
        total
            + fc.map(|c| (c.in_features * c.out_features) as u64)
                .sum::<u64>()
    }
}
