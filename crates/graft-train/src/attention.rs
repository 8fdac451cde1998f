//! The attention-pool head over a spatial feature map: a learned query scores every location,
//! the softmax of the scores weights the locations' feature vectors into one pooled vector, and
//! a linear layer classifies it. The weights per location are the head's own heatmap.
//!
//! Layout: a row is one image's map, `C × P` channel-major (the encoder's NCHW order, P = H·W).
//! Parameters live in two [`Layer`]s so the optimiser, clipping and checkpoints treat them like
//! any head's: `query` (`C × 1`; its bias shifts every score equally, which the softmax ignores,
//! so its gradient is zero and it stays 0) and `out` (`C × K`). Scores are scaled by 1/√C.

use crate::dense::{add_bias, col_sums, gemm, softmax_rows};
use crate::head::{Activations, Layer};

fn scale(channels: usize) -> f32 {
    1.0 / (channels as f32).sqrt()
}

/// Attention weights (`n × P`) and pooled vectors (`n × C`) of `n` maps.
fn pool(query: &Layer, maps: &[f32], n: usize, attention: &mut Vec<f32>, pooled: &mut Vec<f32>) {
    let c = query.rows;
    let p = maps.len() / (n * c).max(1);
    attention.clear();
    attention.resize(n * p, 0.0);
    pooled.clear();
    pooled.resize(n * c, 0.0);
    for i in 0..n {
        let f = &maps[i * c * p..(i + 1) * c * p];
        let a = &mut attention[i * p..(i + 1) * p];
        // scores = Fᵀ q / √C, one per location.
        gemm(true, false, p, c, 1, scale(c), f, &query.w, 0.0, a);
        softmax_rows(a, p);
        // pooled = F a.
        gemm(
            false,
            false,
            c,
            p,
            1,
            1.0,
            f,
            a,
            0.0,
            &mut pooled[i * c..(i + 1) * c],
        );
    }
}

pub(crate) fn forward(query: &Layer, out: &Layer, maps: &[f32], n: usize, act: &mut Activations) {
    pool(query, maps, n, &mut act.attention, &mut act.pooled);
    act.logits.clear();
    act.logits.resize(n * out.cols, 0.0);
    gemm(
        false,
        false,
        n,
        out.rows,
        out.cols,
        1.0,
        &act.pooled,
        &out.w,
        0.0,
        &mut act.logits,
    );
    add_bias(&mut act.logits, &out.b);
}

/// Gradients into `gq`/`gout` (overwritten) from dL/dlogits.
pub(crate) fn backward(
    out: &Layer,
    maps: &[f32],
    n: usize,
    act: &Activations,
    dlogits: &[f32],
    gq: &mut Layer,
    gout: &mut Layer,
) {
    let (c, k) = (out.rows, out.cols);
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
        &mut gout.w,
    );
    col_sums(dlogits, &mut gout.b);
    let mut dpooled = vec![0.0; n * c];
    gemm(
        false,
        true,
        n,
        k,
        c,
        1.0,
        dlogits,
        &out.w,
        0.0,
        &mut dpooled,
    );
    gq.w.iter_mut().for_each(|v| *v = 0.0);
    gq.b.iter_mut().for_each(|v| *v = 0.0);
    let mut ds = vec![0.0; p];
    for i in 0..n {
        let f = &maps[i * c * p..(i + 1) * c * p];
        // d attention = Fᵀ dpooled, then through the softmax to the scores.
        gemm(
            true,
            false,
            p,
            c,
            1,
            1.0,
            f,
            &dpooled[i * c..(i + 1) * c],
            0.0,
            &mut ds,
        );
        let a = &act.attention[i * p..(i + 1) * p];
        let dot: f32 = a.iter().zip(&ds).map(|(x, y)| x * y).sum();
        for (d, &w) in ds.iter_mut().zip(a) {
            *d = w * (*d - dot) * scale(c);
        }
        // dq += F dscores.
        gemm(false, false, c, p, 1, 1.0, f, &ds, 1.0, &mut gq.w);
    }
}

/// Attention weights (`n × P`, rows summing to 1) of `n` standardised maps: where the head
/// looked.
pub(crate) fn weights(query: &Layer, maps: &[f32], n: usize) -> Vec<f32> {
    let (mut a, mut pooled) = (Vec::new(), Vec::new());
    pool(query, maps, n, &mut a, &mut pooled);
    a
}

#[cfg(test)]
mod tests {
    use graft_data::rng::SplitMix64;

    use crate::head::{Head, HeadSpec};

    use super::*;

    fn loss(h: &Head, maps: &[f32], n: usize, y: &[usize]) -> f64 {
        let k = h.classes();
        let p = h.predict_proba(maps, n);
        (0..n)
            .map(|i| -f64::from(p[i * k + y[i]]).ln())
            .sum::<f64>()
            / n as f64
    }

    #[test]
    fn attention_sums_to_one_and_gradients_match_finite_differences() {
        let mut rng = SplitMix64::new(11);
        let (n, p, c, k) = (3, 4, 5, 3);
        let mut head = Head::new(HeadSpec::Attention, c, k, &mut rng);
        // A random, strong query: a peaked softmax exercises its gradient.
        for q in head.layers[0].w.iter_mut() {
            *q = (rng.next_f64() as f32 * 2.0 - 1.0) * 4.0;
        }
        let maps: Vec<f32> = (0..n * p * c)
            .map(|_| rng.next_f64() as f32 * 2.0 - 1.0)
            .collect();
        let y = [0usize, 2, 1];
        let mut act = Activations::default();
        head.forward(&maps, n, None, &mut act);
        for i in 0..n {
            let s: f32 = act.attention[i * p..(i + 1) * p].iter().sum();
            assert!((s - 1.0).abs() < 1e-5);
        }
        assert_eq!(head.attention(&maps, n), act.attention);
        let mut dl = Vec::new();
        crate::loss::cross_entropy(&act.logits, &y, k, 0.0, None, &mut dl);
        let mut grad = head.zeros_like();
        head.backward(&maps, n, &act, &dl, &mut grad);
        let eps = 1e-2f32;
        for li in 0..2 {
            for (name, count) in [
                ("w", grad.layers[li].w.len()),
                ("b", grad.layers[li].b.len()),
            ] {
                for j in 0..count {
                    let bump = |h: &mut Head, d: f32| match name {
                        "w" => h.layers[li].w[j] += d,
                        _ => h.layers[li].b[j] += d,
                    };
                    let (mut hp, mut hm) = (head.clone(), head.clone());
                    bump(&mut hp, eps);
                    bump(&mut hm, -eps);
                    let num = (loss(&hp, &maps, n, &y) - loss(&hm, &maps, n, &y))
                        / (2.0 * f64::from(eps));
                    let ana = match name {
                        "w" => grad.layers[li].w[j],
                        _ => grad.layers[li].b[j],
                    };
                    assert!(
                        (num - f64::from(ana)).abs() < 2e-3,
                        "layer {li} {name}[{j}]: {num} vs {ana}"
                    );
                }
            }
        }
        // The query's bias cannot change the softmax: no gradient.
        assert_eq!(grad.layers[0].b, vec![0.0]);
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
            for ch in 0..c {
                for loc in 0..p {
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
        let mut head = Head::new(HeadSpec::Attention, c, k, &mut rng);
        let mut velocity = head.zeros_like();
        let mut grad = head.zeros_like();
        let mut act = Activations::default();
        for _ in 0..300 {
            head.forward(&maps, n, None, &mut act);
            let mut dl = Vec::new();
            crate::loss::cross_entropy(&act.logits, &y, k, 0.0, None, &mut dl);
            head.backward(&maps, n, &act, &dl, &mut grad);
            // Plain momentum SGD keeps the test independent of the optimiser module.
            for ((l, v), g) in head
                .layers
                .iter_mut()
                .zip(velocity.layers.iter_mut())
                .zip(&grad.layers)
            {
                for ((p, v), g) in l.w.iter_mut().zip(v.w.iter_mut()).zip(&g.w) {
                    *v = 0.9 * *v + g;
                    *p -= 0.5 * *v;
                }
                for (p, g) in l.b.iter_mut().zip(&g.b) {
                    *p -= 0.5 * g;
                }
            }
        }
        let probs = head.predict_proba(&maps, n);
        let right = (0..n)
            .filter(|&i| usize::from(probs[i * k + 1] > probs[i * k]) == y[i])
            .count();
        assert!(right as f64 / n as f64 > 0.95, "{right}/{n}");
        let a = head.attention(&maps, n);
        let mean_at_3: f32 = (0..n).map(|i| a[i * p + 3]).sum::<f32>() / n as f32;
        assert!(
            mean_at_3 > 0.5,
            "attention on the informative location {mean_at_3}"
        );
    }
}
