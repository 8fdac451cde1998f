//! Tests of whether production data still looks like the training data: the population
//! stability index and the two-sample Kolmogorov–Smirnov test for one statistic, and the
//! chi-squared goodness-of-fit test for a class mix against the training prior.

/// Population stability index of `production` against `reference`, over `bins` bins cut at
/// the reference's quantiles: Σ (p − r)·ln(p / r). Below 0.1 is stable, above 0.25 a shift
/// (the usual reading). A bin empty on one side counts as half an observation there, so it
/// does not make the index infinite.
pub fn psi(reference: &[f64], production: &[f64], bins: usize) -> f64 {
    if reference.is_empty() || production.is_empty() || bins < 2 {
        return 0.0;
    }
    let mut sorted = reference.to_vec();
    sorted.sort_by(f64::total_cmp);
    let edges: Vec<f64> = (1..bins)
        .map(|i| sorted[(i * sorted.len() / bins).min(sorted.len() - 1)])
        .collect();
    let counts = |values: &[f64]| -> Vec<f64> {
        let mut counts = vec![0f64; bins];
        for &v in values {
            counts[edges.partition_point(|&e| e < v)] += 1.0;
        }
        counts
    };
    let (r, p) = (counts(reference), counts(production));
    let (nr, np) = (reference.len() as f64, production.len() as f64);
    r.iter()
        .zip(&p)
        // A bin empty on both sides says nothing (a constant statistic fills one bin).
        .filter(|(r, p)| **r > 0.0 || **p > 0.0)
        .map(|(r, p)| {
            let (r, p) = (r.max(0.5) / nr, p.max(0.5) / np);
            (p - r) * (p / r).ln()
        })
        .sum()
}

/// The two-sample Kolmogorov–Smirnov statistic D (largest gap between the two empirical
/// distribution functions) and its asymptotic p-value.
pub fn ks_two_sample(a: &[f64], b: &[f64]) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (0.0, 1.0);
    }
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    let ne = na * nb / (na + nb);
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    (d, kolmogorov_q(lambda))
}

/// Q(λ) = 2 Σ (−1)^(k−1) e^(−2k²λ²): the chance of a gap this large between two samples of
/// one distribution.
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as u64 % 2 == 1 { term } else { -term };
        if term < 1e-12 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Chi-squared goodness of fit of `observed` counts to `expected` proportions (summing to 1):
/// the statistic, its degrees of freedom and p-value. Classes expected never are left out.
pub fn chi_squared(observed: &[f64], expected: &[f64]) -> (f64, usize, f64) {
    let n: f64 = observed.iter().sum();
    let mut stat = 0.0;
    let mut cells = 0usize;
    for (&o, &e) in observed.iter().zip(expected) {
        if e <= 0.0 {
            continue;
        }
        let want = e * n;
        stat += (o - want) * (o - want) / want;
        cells += 1;
    }
    let df = cells.saturating_sub(1);
    if df == 0 || n == 0.0 {
        return (0.0, df, 1.0);
    }
    (stat, df, gamma_q(df as f64 / 2.0, stat / 2.0))
}

/// Chi-squared test of homogeneity: whether two samples of counts over the same categories
/// (two models' predicted classes, say) come from one distribution. The statistic, degrees of
/// freedom and p-value; categories empty in both samples are left out.
pub fn chi_squared_homogeneity(a: &[f64], b: &[f64]) -> (f64, usize, f64) {
    let (na, nb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    let n = na + nb;
    let mut stat = 0.0;
    let mut cells = 0usize;
    for (&x, &y) in a.iter().zip(b) {
        let column = x + y;
        if column <= 0.0 {
            continue;
        }
        let (ea, eb) = (column * na / n, column * nb / n);
        stat += (x - ea) * (x - ea) / ea + (y - eb) * (y - eb) / eb;
        cells += 1;
    }
    let df = cells.saturating_sub(1);
    if df == 0 || na == 0.0 || nb == 0.0 {
        return (0.0, df, 1.0);
    }
    (stat, df, gamma_q(df as f64 / 2.0, stat / 2.0))
}

/// The regularised upper incomplete gamma function Q(a, x) (series below a + 1, continued
/// fraction above), as the chi-squared tail needs it.
fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let ln_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..500 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-15 {
                break;
            }
        }
        (1.0 - sum * ln_prefix.exp()).clamp(0.0, 1.0)
    } else {
        // Lentz's method.
        let tiny = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / tiny;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..500 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < tiny {
                d = tiny;
            }
            c = b + an / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-15 {
                break;
            }
        }
        (ln_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms).
fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let mut s = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        s += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + s.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize, shift: f64) -> Vec<f64> {
        (0..n).map(|i| i as f64 / n as f64 + shift).collect()
    }

    #[test]
    fn the_same_distribution_is_stable_and_a_shift_is_not() {
        let r = grid(1000, 0.0);
        assert!(psi(&r, &grid(300, 0.0), 10) < 0.05);
        assert!(psi(&r, &grid(300, 0.4), 10) > 0.25);
        assert!(psi(&[28.0; 700], &[28.0; 150], 10).abs() < 1e-12);
        let (d, p) = ks_two_sample(&r, &grid(300, 0.0));
        assert!(d < 0.01 && p > 0.99, "{d} {p}");
        let (d, p) = ks_two_sample(&r, &grid(300, 0.4));
        assert!((d - 0.4).abs() < 0.01 && p < 1e-10, "{d} {p}");
    }

    #[test]
    fn chi_squared_matches_known_tails() {
        // df = 2: Q = e^(−x/2) exactly.
        let (stat, df, p) = chi_squared(&[30.0, 10.0, 20.0], &[1.0 / 3.0; 3]);
        assert_eq!(df, 2);
        assert!((stat - 10.0).abs() < 1e-12);
        assert!((p - (-5.0f64).exp()).abs() < 1e-12, "{p}");
        // Homogeneity, 2 × 3: expected 20 per cell, statistic 4 × 10² / 20 = 20 on df 2.
        let (stat, df, p) =
            chi_squared_homogeneity(&[30.0, 10.0, 20.0, 0.0], &[10.0, 30.0, 20.0, 0.0]);
        assert_eq!(df, 2);
        assert!((stat - 20.0).abs() < 1e-12);
        assert!((p - (-10.0f64).exp()).abs() < 1e-12, "{p}");
        let (stat, _, p) = chi_squared_homogeneity(&[5.0, 10.0], &[50.0, 100.0]);
        assert!(stat.abs() < 1e-12 && (p - 1.0).abs() < 1e-12);
        assert_eq!(chi_squared_homogeneity(&[3.0, 4.0], &[0.0, 0.0]).2, 1.0);
        // df = 9 at the 5% critical value 16.919.
        let q = gamma_q(4.5, 16.919 / 2.0);
        assert!((q - 0.05).abs() < 1e-4, "{q}");
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        assert_eq!(chi_squared(&[5.0], &[1.0]).2, 1.0);
    }
}
