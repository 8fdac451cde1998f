//! Batch mixing with soft labels: MixUp blends two images, CutMix pastes a box of one into the
//! other; either way the target is the images' labels weighted by their share of the result.

use crate::rng::SplitMix64;

/// Gamma(shape, 1) by Marsaglia and Tsang (shape < 1 through the boost `U^(1/shape)`).
fn gamma(rng: &mut SplitMix64, shape: f64) -> f64 {
    if shape < 1.0 {
        let u = rng.next_f64().max(1e-300);
        return gamma(rng, shape + 1.0) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        // A standard normal by Box–Muller.
        let (u1, u2) = (rng.next_f64().max(1e-300), rng.next_f64());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let v = (1.0 + c * z).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u = rng.next_f64().max(1e-300);
        if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Beta(a, b).
pub fn beta(rng: &mut SplitMix64, a: f64, b: f64) -> f64 {
    let x = gamma(rng, a);
    let y = gamma(rng, b);
    if x + y > 0.0 {
        x / (x + y)
    } else {
        0.5
    }
}

/// How a batch was mixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    None,
    MixUp,
    CutMix,
}

/// One-hot targets of `labels` (`n × classes`).
pub fn one_hot(labels: &[usize], classes: usize) -> Vec<f32> {
    let mut t = vec![0.0; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        t[i * classes + l] = 1.0;
    }
    t
}

/// Mix a batch of `n` CHW images (`size × size`) in place with a shuffled copy of itself and
/// return the soft targets. `alpha` is the Beta(α, α) parameter.
#[allow(clippy::too_many_arguments)]
pub fn mix_batch(
    x: &mut [f32],
    labels: &[usize],
    classes: usize,
    size: usize,
    mix: Mix,
    alpha: f32,
    rng: &mut SplitMix64,
) -> Vec<f32> {
    let n = labels.len();
    let mut targets = one_hot(labels, classes);
    if mix == Mix::None || n < 2 || alpha <= 0.0 {
        return targets;
    }
    let per = x.len() / n;
    let mut partner: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut partner);
    let source = x.to_vec();
    let lam = beta(rng, f64::from(alpha), f64::from(alpha)) as f32;
    let kept = match mix {
        Mix::MixUp => {
            for (i, &j) in partner.iter().enumerate() {
                let (dst, src) = (
                    &mut x[i * per..(i + 1) * per],
                    &source[j * per..(j + 1) * per],
                );
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = lam * *d + (1.0 - lam) * s;
                }
            }
            lam
        }
        Mix::CutMix => {
            // A box of area share 1 − λ centred anywhere, clipped at the borders; the label
            // weight is the share actually pasted.
            let side = (1.0 - lam).sqrt();
            let (bw, bh) = ((size as f32 * side) as usize, (size as f32 * side) as usize);
            let (cx, cy) = (rng.below(size), rng.below(size));
            let (x0, x1) = (cx.saturating_sub(bw / 2), (cx + bw / 2).min(size));
            let (y0, y1) = (cy.saturating_sub(bh / 2), (cy + bh / 2).min(size));
            let plane = size * size;
            for (i, &j) in partner.iter().enumerate() {
                for c in 0..per / plane {
                    for row in y0..y1 {
                        let at = i * per + c * plane + row * size;
                        let from = j * per + c * plane + row * size;
                        x[at + x0..at + x1].copy_from_slice(&source[from + x0..from + x1]);
                    }
                }
            }
            1.0 - ((x1 - x0) * (y1 - y0)) as f32 / plane as f32
        }
        Mix::None => 1.0,
    };
    for (i, &j) in partner.iter().enumerate() {
        let row = &mut targets[i * classes..(i + 1) * classes];
        row.iter_mut().for_each(|t| *t *= kept);
        row[labels[j]] += 1.0 - kept;
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_has_the_right_mean_and_stays_in_the_unit_interval() {
        let mut rng = SplitMix64::new(4);
        for (a, b) in [(0.2, 0.2), (1.0, 1.0), (2.0, 5.0)] {
            let n = 20_000;
            let xs: Vec<f64> = (0..n).map(|_| beta(&mut rng, a, b)).collect();
            assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)));
            let mean = xs.iter().sum::<f64>() / n as f64;
            assert!(
                (mean - a / (a + b)).abs() < 0.01,
                "Beta({a},{b}) mean {mean}"
            );
        }
    }

    /// Image i is filled with the value i; class of image i is i.
    fn constant_batch(n: usize, size: usize) -> Vec<f32> {
        (0..n)
            .flat_map(|i| std::iter::repeat_n(i as f32, 3 * size * size))
            .collect()
    }

    #[test]
    fn cutmix_labels_are_the_pasted_area_share() {
        let (n, size, classes) = (4, 16, 4);
        let labels: Vec<usize> = (0..n).collect();
        for seed in 0..20 {
            let mut x = constant_batch(n, size);
            let mut rng = SplitMix64::new(seed);
            let t = mix_batch(&mut x, &labels, classes, size, Mix::CutMix, 1.0, &mut rng);
            let per = 3 * size * size;
            for i in 0..n {
                let img = &x[i * per..(i + 1) * per];
                let row = &t[i * classes..(i + 1) * classes];
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
                // Each class's weight is the share of pixels that came from its image.
                for (c, &w) in row.iter().enumerate() {
                    let share = img.iter().filter(|v| **v == c as f32).count() as f32 / per as f32;
                    assert!((share - w).abs() < 1e-6, "seed {seed} image {i} class {c}");
                }
            }
        }
    }

    #[test]
    fn mixup_blends_pixels_and_labels_with_the_same_weight() {
        let (n, size, classes) = (3, 4, 3);
        let labels = [0, 1, 2];
        let mut x = constant_batch(n, size);
        let mut rng = SplitMix64::new(9);
        let t = mix_batch(&mut x, &labels, classes, size, Mix::MixUp, 0.4, &mut rng);
        let per = 3 * size * size;
        for i in 0..n {
            let row = &t[i * classes..(i + 1) * classes];
            // The pixel value is Σ class·weight, since image c holds the value c.
            let want: f32 = row.iter().enumerate().map(|(c, w)| c as f32 * w).sum();
            assert!(x[i * per..(i + 1) * per]
                .iter()
                .all(|v| (v - want).abs() < 1e-5));
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        // No mixing: one-hot targets, pixels untouched.
        let mut y = constant_batch(n, size);
        let t = mix_batch(&mut y, &labels, classes, size, Mix::None, 1.0, &mut rng);
        assert_eq!(t, one_hot(&labels, classes));
        assert_eq!(y, constant_batch(n, size));
    }
}
