//! Temperature scaling (Guo et al., 2017): one scalar T divides the logits so that the
//! probabilities match how often the head is right, fitted on validation rows by minimising
//! the negative log-likelihood. It never changes which class wins.

/// Mean negative log-likelihood of `labels` under softmax(`logits` / `t`).
pub fn nll(logits: &[f32], labels: &[usize], c: usize, t: f64) -> f64 {
    let mut total = 0.0;
    for (row, &y) in logits.chunks_exact(c).zip(labels) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&v| ((f64::from(v - max)) / t).exp()).sum();
        total += sum.ln() - f64::from(row[y] - max) / t;
    }
    total / labels.len().max(1) as f64
}

/// The temperature in [0.05, 20] with the lowest validation NLL (golden-section search on
/// log T; the NLL is convex in 1/T).
pub fn fit_temperature(logits: &[f32], labels: &[usize], c: usize) -> f32 {
    if labels.is_empty() {
        return 1.0;
    }
    let f = |log_t: f64| nll(logits, labels, c, log_t.exp());
    let (mut a, mut b) = (0.05f64.ln(), 20f64.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut x1, mut x2) = (b - g * (b - a), a + g * (b - a));
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..60 {
        if f1 < f2 {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - g * (b - a);
            f1 = f(x1);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + g * (b - a);
            f2 = f(x2);
        }
    }
    ((a + b) / 2.0).exp() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use graft_data::rng::SplitMix64;

    #[test]
    fn recovers_the_temperature_of_overconfident_logits() {
        // Labels drawn from softmax(z); the head reports 3·z, so T ≈ 3 undoes it.
        let mut rng = SplitMix64::new(4);
        let c = 4;
        let (mut logits, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let z: Vec<f64> = (0..c).map(|_| rng.next_f64() * 4.0 - 2.0).collect();
            let sum: f64 = z.iter().map(|v| v.exp()).sum();
            let mut u = rng.next_f64() * sum;
            let mut y = c - 1;
            for (k, v) in z.iter().enumerate() {
                u -= v.exp();
                if u <= 0.0 {
                    y = k;
                    break;
                }
            }
            labels.push(y);
            logits.extend(z.iter().map(|v| (3.0 * v) as f32));
        }
        let t = fit_temperature(&logits, &labels, c);
        assert!((t - 3.0).abs() < 0.3, "T = {t}");
        assert!(nll(&logits, &labels, c, f64::from(t)) < nll(&logits, &labels, c, 1.0));
    }
}
