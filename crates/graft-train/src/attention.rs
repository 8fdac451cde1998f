//! Attention-pool head over a spatial feature map: a learned query scores every location,
//! the softmax of the scores weights the locations' feature vectors into one pooled vector, and
//! a linear layer classifies it. The weights per location are the head's own heatmap.
//!
//! Not yet part of the sweep: the pipeline still has to extract and stream spatial maps.
//!
//! Shapes: `maps` is `n × P × C` (each location's C channels contiguous), scores are scaled by
//! 1/√C, `w` is `C × K`.

use graft_data::rng::SplitMix64;

use crate::dense::{add_bias, col_sums, gemm, softmax_rows};

#[derive(Debug, Clone, PartialEq)]
pub struct AttentionPool {
    pub channels: usize,
    pub classes: usize,
    pub query: Vec<f32>,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// Forward results kept for the backward pass.
#[derive(Debug, Default)]
pub struct AttnActivations {
    /// `n × P` softmax weights per location.
    pub attention: Vec<f32>,
    /// `n × C` pooled vectors.
    pub pooled: Vec<f32>,
    /// `n × K`.
    pub logits: Vec<f32>,
}

impl AttentionPool {
    pub fn new(channels: usize, classes: usize, rng: &mut SplitMix64) -> AttentionPool {
        let bound = 1.0 / (channels as f32).sqrt();
        let mut u = || (rng.next_f64() as f32 * 2.0 - 1.0) * bound;
        AttentionPool {
            channels,
            classes,
            query: (0..channels).map(|_| u()).collect(),
            w: (0..channels * classes).map(|_| u()).collect(),
            b: vec![0.0; classes],
        }
    }

    pub fn zeros_like(&self) -> AttentionPool {
        AttentionPool {
            channels: self.channels,
            classes: self.classes,
            query: vec![0.0; self.query.len()],
            w: vec![0.0; self.w.len()],
            b: vec![0.0; self.b.len()],
        }
    }

    fn scale(&self) -> f32 {
        1.0 / (self.channels as f32).sqrt()
    }

    pub fn forward(&self, maps: &[f32], n: usize, act: &mut AttnActivations) {
        let c = self.channels;
        let p = maps.len() / (n * c).max(1);
        // Scores of all n·P locations in one product with the query.
        act.attention.clear();
        act.attention.resize(n * p, 0.0);
        gemm(
            false,
            false,
            n * p,
            c,
            1,
            self.scale(),
            maps,
            &self.query,
            0.0,
            &mut act.attention,
        );
        softmax_rows(&mut act.attention, p);
        act.pooled.clear();
        act.pooled.resize(n * c, 0.0);
        for i in 0..n {
            let a = &act.attention[i * p..(i + 1) * p];
            let f = &maps[i * p * c..(i + 1) * p * c];
            gemm(
                true,
                false,
                c,
                p,
                1,
                1.0,
                f,
                a,
                0.0,
                &mut act.pooled[i * c..(i + 1) * c],
            );
        }
        act.logits.clear();
        act.logits.resize(n * self.classes, 0.0);
        gemm(
            false,
            false,
            n,
            c,
            self.classes,
            1.0,
            &act.pooled,
            &self.w,
            0.0,
            &mut act.logits,
        );
        add_bias(&mut act.logits, &self.b);
    }

    /// Gradients into `grad` (overwritten) from dL/dlogits.
    pub fn backward(
        &self,
        maps: &[f32],
        n: usize,
        act: &AttnActivations,
        dlogits: &[f32],
        grad: &mut AttentionPool,
    ) {
        let (c, k) = (self.channels, self.classes);
        let p = maps.len() / (n * c).max(1);
        gemm(
            true,
            false,
            c,
            n,
            k,
            1.0,
            &act.pooled,
            dlogits,
            0.0,
            &mut grad.w,
        );
        col_sums(dlogits, &mut grad.b);
        let mut dpooled = vec![0.0; n * c];
        gemm(
            false,
            true,
            n,
            k,
            c,
            1.0,
            dlogits,
            &self.w,
            0.0,
            &mut dpooled,
        );
        // d attention = F · dpooled per image, then through the softmax.
        let mut dscore = vec![0.0; n * p];
        for i in 0..n {
            let f = &maps[i * p * c..(i + 1) * p * c];
            let da = &mut dscore[i * p..(i + 1) * p];
            gemm(
                false,
                false,
                p,
                c,
                1,
                1.0,
                f,
                &dpooled[i * c..(i + 1) * c],
                0.0,
                da,
            );
            let a = &act.attention[i * p..(i + 1) * p];
            let dot: f32 = a.iter().zip(da.iter()).map(|(x, y)| x * y).sum();
            for (d, &w) in da.iter_mut().zip(a) {
                *d = w * (*d - dot) * self.scale();
            }
        }
        gemm(
            true,
            false,
            c,
            n * p,
            1,
            1.0,
            maps,
            &dscore,
            0.0,
            &mut grad.query,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss(h: &AttentionPool, maps: &[f32], n: usize, y: &[usize]) -> f64 {
        let mut act = AttnActivations::default();
        h.forward(maps, n, &mut act);
        softmax_rows(&mut act.logits, h.classes);
        (0..n)
            .map(|i| -f64::from(act.logits[i * h.classes + y[i]]).ln())
            .sum::<f64>()
            / n as f64
    }

    #[test]
    fn attention_sums_to_one_and_gradients_match_finite_differences() {
        let mut rng = SplitMix64::new(11);
        let (n, p, c, k) = (3, 4, 5, 3);
        let mut head = AttentionPool::new(c, k, &mut rng);
        head.query.iter_mut().for_each(|q| *q *= 4.0); // a peaked softmax exercises its gradient
        let maps: Vec<f32> = (0..n * p * c)
            .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
            .collect();
        let y = [0usize, 2, 1];
        let mut act = AttnActivations::default();
        head.forward(&maps, n, &mut act);
        for i in 0..n {
            let s: f32 = act.attention[i * p..(i + 1) * p].iter().sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
        // d(mean CE)/d logits = (softmax − one-hot) / n.
        let mut dl = Vec::new();
        crate::loss::cross_entropy(&act.logits, &y, k, 0.0, None, &mut dl);
        let mut grad = head.zeros_like();
        head.backward(&maps, n, &act, &dl, &mut grad);
        let eps = 1e-2f32;
        let check = |name: &str, ana: &[f32], get: &dyn Fn(&mut AttentionPool) -> &mut Vec<f32>| {
            for (j, &a) in ana.iter().enumerate() {
                let mut hp = head.clone();
                get(&mut hp)[j] += eps;
                let mut hm = head.clone();
                get(&mut hm)[j] -= eps;
                let num =
                    (loss(&hp, &maps, n, &y) - loss(&hm, &maps, n, &y)) / (2.0 * f64::from(eps));
                assert!(
                    (num - f64::from(a)).abs() < 2e-3,
                    "{name}[{j}]: {num} vs {a}"
                );
            }
        };
        check("query", &grad.query, &|h| &mut h.query);
        check("w", &grad.w, &|h| &mut h.w);
        check("b", &grad.b, &|h| &mut h.b);
    }

    #[test]
    fn learns_which_location_carries_the_class() {
        // The class is written in one location among 9 distractors; an attention head must
        // find it, a mean over locations dilutes it tenfold.
        let mut rng = SplitMix64::new(5);
        let (p, c, k) = (10, 6, 2);
        let mut maps = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let label = i % 2;
            for loc in 0..p {
                for ch in 0..c {
                    let noise = rng.next_f64() as f32 - 0.5;
                    let signal = if loc == 3 && ch == label { 3.0 } else { 0.0 };
                    // Channel 5 marks the informative location.
                    let marker = if loc == 3 && ch == 5 { 3.0 } else { 0.0 };
                    maps.push(noise + signal + marker);
                }
            }
            y.push(label);
        }
        let n = y.len();
        let mut head = AttentionPool::new(c, k, &mut rng);
        let mut opt_state = head.zeros_like();
        let mut grad = head.zeros_like();
        let mut act = AttnActivations::default();
        for _ in 0..300 {
            head.forward(&maps, n, &mut act);
            let mut dl = act.logits.clone();
            softmax_rows(&mut dl, k);
            for i in 0..n {
                dl[i * k + y[i]] -= 1.0;
            }
            dl.iter_mut().for_each(|v| *v /= n as f32);
            head.backward(&maps, n, &act, &dl, &mut grad);
            // Plain momentum SGD keeps the test independent of the optimiser module.
            for (v, (p, g)) in opt_state
                .query
                .iter_mut()
                .zip(head.query.iter_mut().zip(&grad.query))
            {
                *v = 0.9 * *v + g;
                *p -= 0.5 * *v;
            }
            for (v, (p, g)) in opt_state.w.iter_mut().zip(head.w.iter_mut().zip(&grad.w)) {
                *v = 0.9 * *v + g;
                *p -= 0.5 * *v;
            }
            for (p, g) in head.b.iter_mut().zip(&grad.b) {
                *p -= 0.5 * g;
            }
        }
        head.forward(&maps, n, &mut act);
        let right = (0..n)
            .filter(|&i| {
                let l = &act.logits[i * k..(i + 1) * k];
                usize::from(l[1] > l[0]) == y[i]
            })
            .count();
        assert!(right as f64 / n as f64 > 0.95, "{right}/{n}");
        let mean_at_3: f32 = (0..n).map(|i| act.attention[i * p + 3]).sum::<f32>() / n as f32;
        assert!(
            mean_at_3 > 0.5,
            "attention on the informative location {mean_at_3}"
        );
    }
}
