//! AdamW (decoupled weight decay) and a linear-warmup cosine learning-rate schedule.

use crate::head::Head;

#[derive(Debug, Clone)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    m: Head,
    v: Head,
    step: u32,
}

impl AdamW {
    pub fn new(head: &Head, weight_decay: f32) -> AdamW {
        AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            m: head.zeros_like(),
            v: head.zeros_like(),
            step: 0,
        }
    }

    /// One update of `head` with `grad` at learning rate `lr` (decay on weights, not biases).
    pub fn step(&mut self, head: &mut Head, grad: &Head, lr: f32) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        let (betas, bc, eps) = ((self.beta1, self.beta2), (bc1, bc2), self.eps);
        for (((p, g), m), v) in head
            .layers
            .iter_mut()
            .zip(&grad.layers)
            .zip(&mut self.m.layers)
            .zip(&mut self.v.layers)
        {
            let decay = 1.0 - lr * self.weight_decay;
            adam_update(
                &mut p.w, &g.w, &mut m.w, &mut v.w, lr, decay, betas, bc, eps,
            );
            adam_update(&mut p.b, &g.b, &mut m.b, &mut v.b, lr, 1.0, betas, bc, eps);
        }
    }
}

/// AdamW on one buffer: moments `m`, `v` with `betas`, bias corrections `bc`, the weights
/// first shrunk by `shrink` (decoupled decay; 1 for none).
#[allow(clippy::too_many_arguments)]
pub(crate) fn adam_update(
    w: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    lr: f32,
    shrink: f32,
    (b1, b2): (f32, f32),
    (bc1, bc2): (f32, f32),
    eps: f32,
) {
    for (((w, g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
        *m = b1 * *m + (1.0 - b1) * g;
        *v = b2 * *v + (1.0 - b2) * g * g;
        *w = *w * shrink - lr * (*m / bc1) / ((*v / bc2).sqrt() + eps);
    }
}

/// Scale `grad` so its global L2 norm is at most `max_norm`; returns the norm before clipping.
pub fn clip_grad_norm(grad: &mut Head, max_norm: f32) -> f32 {
    let mut bufs: Vec<&mut [f32]> = grad
        .layers
        .iter_mut()
        .flat_map(|l| [l.w.as_mut_slice(), l.b.as_mut_slice()])
        .collect();
    clip_norm(&mut bufs, max_norm)
}

/// Scale every buffer so their global L2 norm is at most `max_norm` (0: no clipping);
/// returns the norm before clipping.
pub(crate) fn clip_norm(bufs: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let sq: f64 = bufs
        .iter()
        .flat_map(|b| b.iter())
        .map(|g| f64::from(*g) * f64::from(*g))
        .sum();
    let norm = sq.sqrt() as f32;
    if max_norm > 0.0 && norm > max_norm {
        let s = max_norm / norm;
        bufs.iter_mut()
            .for_each(|b| b.iter_mut().for_each(|g| *g *= s));
    }
    norm
}

/// Learning rate at `step` of `total`: linear warmup over `warmup` steps, then cosine decay to
/// zero at the last step.
pub fn cosine_with_warmup(base: f32, step: usize, warmup: usize, total: usize) -> f32 {
    if step < warmup {
        return base * (step + 1) as f32 / warmup as f32;
    }
    let span = total.saturating_sub(warmup).max(1);
    let t = ((step - warmup) as f32 / span as f32).min(1.0);
    base * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::HeadSpec;
    use graft_data::rng::SplitMix64;

    #[test]
    fn schedule_warms_up_peaks_and_decays() {
        let lr = |s| cosine_with_warmup(1.0, s, 10, 110);
        assert!((lr(0) - 0.1).abs() < 1e-6);
        assert!((lr(9) - 1.0).abs() < 1e-6);
        assert!((lr(10) - 1.0).abs() < 1e-6);
        assert!((lr(60) - 0.5).abs() < 1e-3);
        assert!(lr(110) < 1e-6);
        assert!(lr(30) > lr(31));
    }

    #[test]
    fn adamw_first_step_moves_each_weight_by_lr_and_clipping_caps_the_norm() {
        let mut rng = SplitMix64::new(0);
        let mut head = Head::new(HeadSpec::Linear, 3, 2, &mut rng);
        let before = head.clone();
        let mut grad = head.zeros_like();
        grad.layers[0].w.iter_mut().for_each(|g| *g = 5.0);
        grad.layers[0].b.iter_mut().for_each(|g| *g = -2.0);
        let norm = clip_grad_norm(&mut grad, 1.0);
        assert!(norm > 1.0);
        assert!((clip_grad_norm(&mut grad.clone(), 0.0) - 1.0).abs() < 1e-5);
        let mut opt = AdamW::new(&head, 0.0);
        opt.step(&mut head, &grad, 0.01);
        // Adam's first step is lr * sign(g) whatever the scale.
        for (a, b) in head.layers[0].w.iter().zip(&before.layers[0].w) {
            assert!((b - a - 0.01).abs() < 1e-5);
        }
        for (a, b) in head.layers[0].b.iter().zip(&before.layers[0].b) {
            assert!((a - b - 0.01).abs() < 1e-5);
        }
    }
}
