//! AdamW over flat parameter buffers, one learning rate per buffer (discriminative rates), and
//! the global-norm clip; the state is plain vectors so a checkpoint holds it exactly.

use serde::{Deserialize, Serialize};

use crate::optim::{adam_update, clip_norm};

/// Moment estimates and step count; buffers follow the parameter slots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamState {
    pub step: u32,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

pub const BETA1: f32 = 0.9;
pub const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

impl AdamState {
    pub fn new(lens: impl Iterator<Item = usize>) -> AdamState {
        let m: Vec<Vec<f32>> = lens.map(|n| vec![0.0; n]).collect();
        AdamState {
            step: 0,
            v: m.clone(),
            m,
        }
    }

    /// One update. `lr[i] == 0` leaves buffer `i` (and its moments) untouched: frozen.
    /// Decoupled weight decay `wd` applies where `decay[i]`.
    pub fn update(
        &mut self,
        params: &mut [Vec<f32>],
        grads: &[Vec<f32>],
        lr: &[f32],
        decay: &[bool],
        wd: f32,
    ) {
        self.step += 1;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for i in 0..params.len() {
            let a = lr[i];
            if a == 0.0 {
                continue;
            }
            let shrink = if decay[i] { 1.0 - a * wd } else { 1.0 };
            adam_update(
                &mut params[i],
                &grads[i],
                &mut self.m[i],
                &mut self.v[i],
                a,
                shrink,
                (BETA1, BETA2),
                (bc1, bc2),
                EPS,
            );
        }
    }
}

/// Scale every buffer so the global L2 norm is at most `max_norm` (0: no clipping); returns
/// the norm before clipping.
pub fn clip_global_norm(grads: &mut [Vec<f32>], max_norm: f32) -> f32 {
    let mut bufs: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
    clip_norm(&mut bufs, max_norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_buffers_do_not_move_and_first_step_is_lr_times_sign() {
        let mut p = vec![vec![1.0, -1.0], vec![0.5]];
        let g = vec![vec![3.0, -0.1], vec![2.0]];
        let mut s = AdamState::new(p.iter().map(Vec::len));
        s.update(&mut p, &g, &[0.01, 0.0], &[false, false], 0.0);
        assert!((p[0][0] - 0.99).abs() < 1e-6);
        assert!((p[0][1] + 0.99).abs() < 1e-6);
        assert_eq!(p[1], vec![0.5]);
        assert_eq!(s.m[1], vec![0.0]);
        // Decoupled decay shrinks decayed weights even with a zero gradient.
        let mut q = vec![vec![2.0]];
        let mut s = AdamState::new(q.iter().map(Vec::len));
        s.update(&mut q, &[vec![0.0]], &[0.1], &[true], 0.5);
        assert!((q[0][0] - 1.9).abs() < 1e-6);
    }

    #[test]
    fn clipping_caps_the_global_norm() {
        let mut g = vec![vec![3.0], vec![4.0]];
        assert!((clip_global_norm(&mut g, 1.0) - 5.0).abs() < 1e-6);
        assert!((g[0][0] - 0.6).abs() < 1e-6 && (g[1][0] - 0.8).abs() < 1e-6);
        assert!((clip_global_norm(&mut g, 0.0) - 1.0).abs() < 1e-6);
    }
}
