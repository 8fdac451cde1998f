//! Softmax cross-entropy with label smoothing and per-class weights (PyTorch's
//! `CrossEntropyLoss(weight=w, label_smoothing=eps)` semantics: weighted mean over the batch).

use crate::dense::softmax_rows;

/// Loss of `n` rows of `logits` (n × c) against `labels`; writes dL/dlogits into `grad`.
pub fn cross_entropy(
    logits: &[f32],
    labels: &[usize],
    c: usize,
    smoothing: f32,
    class_weight: Option<&[f32]>,
    grad: &mut Vec<f32>,
) -> f32 {
    let n = labels.len();
    grad.clear();
    grad.extend_from_slice(&logits[..n * c]);
    softmax_rows(grad, c);
    let weight = |y: usize| class_weight.map_or(1.0, |w| w[y]);
    let total: f32 = labels.iter().map(|&y| weight(y)).sum::<f32>().max(1e-12);
    let off = smoothing / c as f32;
    let on = 1.0 - smoothing + off;
    let mut loss = 0.0f64;
    for (row, &y) in grad.chunks_exact_mut(c).zip(labels) {
        let w = weight(y) / total;
        for (k, p) in row.iter_mut().enumerate() {
            let q = if k == y { on } else { off };
            loss -= f64::from(w * q * p.max(1e-30).ln());
            *p = w * (*p - q);
        }
    }
    loss as f32
}

/// Mean loss of `n` rows of `logits` against soft `targets` (`n × c` distributions, e.g.
/// MixUp/CutMix mixtures or one-hot rows), smoothed towards uniform by `smoothing`; writes
/// dL/dlogits into `grad`. With one-hot targets this is [`cross_entropy`] without weights.
pub fn soft_cross_entropy(
    logits: &[f32],
    targets: &[f32],
    c: usize,
    smoothing: f32,
    grad: &mut Vec<f32>,
) -> f32 {
    let n = targets.len() / c.max(1);
    grad.clear();
    grad.extend_from_slice(&logits[..n * c]);
    softmax_rows(grad, c);
    let inv_n = 1.0 / n.max(1) as f32;
    let off = smoothing / c as f32;
    let mut loss = 0.0f64;
    for (row, t) in grad.chunks_exact_mut(c).zip(targets.chunks_exact(c)) {
        for (p, &t) in row.iter_mut().zip(t) {
            let q = (1.0 - smoothing) * t + off;
            loss -= f64::from(inv_n * q * p.max(1e-30).ln());
            *p = inv_n * (*p - q);
        }
    }
    loss as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_targets_match_hard_labels_when_one_hot_and_mix_linearly() {
        let logits = [2.0, -1.0, 0.5, 0.0, 1.0, 3.0];
        let (mut g1, mut g2) = (Vec::new(), Vec::new());
        let hard = cross_entropy(&logits, &[2, 0], 3, 0.1, None, &mut g1);
        let onehot = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        let soft = soft_cross_entropy(&logits, &onehot, 3, 0.1, &mut g2);
        assert!((hard - soft).abs() < 1e-6);
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs() < 1e-6);
        }
        // A 30/70 mixture's loss is the same mixture of the two one-hot losses.
        let row = &logits[..3];
        let l = |t: [f32; 3]| soft_cross_entropy(row, &t, 3, 0.0, &mut Vec::new());
        let mixed = l([0.3, 0.7, 0.0]);
        assert!((mixed - (0.3 * l([1.0, 0.0, 0.0]) + 0.7 * l([0.0, 1.0, 0.0]))).abs() < 1e-5);
    }

    #[test]
    fn uniform_logits_give_log_c_and_weights_renormalise() {
        let mut g = Vec::new();
        let l = cross_entropy(&[0.0; 6], &[0, 1], 3, 0.0, None, &mut g);
        assert!((l - 3f32.ln()).abs() < 1e-6);
        // Weighted: still log 3 (a weighted mean of equal losses), gradient rows scaled.
        let l = cross_entropy(&[0.0; 6], &[0, 1], 3, 0.0, Some(&[3.0, 1.0, 1.0]), &mut g);
        assert!((l - 3f32.ln()).abs() < 1e-6);
        assert!((g[0] - 0.75 * (1.0 / 3.0 - 1.0)).abs() < 1e-6);
        assert!((g[4] - 0.25 * (1.0 / 3.0 - 1.0)).abs() < 1e-6);
    }

    #[test]
    fn smoothing_moves_target_mass_off_the_label() {
        let mut g = Vec::new();
        // Confident and right: smoothing makes the loss larger than without.
        let logits = [10.0, 0.0, 0.0];
        let plain = cross_entropy(&logits, &[0], 3, 0.0, None, &mut g);
        let smooth = cross_entropy(&logits, &[0], 3, 0.1, None, &mut g);
        assert!(smooth > plain);
        // Gradient rows of softmax minus a distribution sum to zero.
        assert!(g.iter().sum::<f32>().abs() < 1e-6);
    }
}
