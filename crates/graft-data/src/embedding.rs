//! A compact summary of what the encoder saw: its pooled features through a fixed random
//! projection to [`DIMS`] dimensions (random ±1/√DIMS signs, which keep distances on average,
//! Achlioptas 2003), and the maximum mean discrepancy between two samples of such summaries
//! with a permutation p-value — whether production images still look, to the model, like the
//! training images.
//!
//! The projection is fixed by the feature dimension alone, so graft serve (from the ONNX
//! model's `features` output) and the reference profile (from the feature cache) project alike
//! without storing the matrix.

use crate::rng::SplitMix64;

/// Dimensions of the summary.
pub const DIMS: usize = 32;

/// The seed of every projection (a change would make old audit rows incomparable).
const SEED: u64 = 0x6772_6166_7420_7270; // "graft rp"

/// The fixed projection for features of one dimension.
#[derive(Debug, Clone)]
pub struct Projection {
    inp: usize,
    /// `inp × DIMS`, row-major by input.
    w: Vec<f32>,
}

impl Projection {
    pub fn new(inp: usize) -> Projection {
        let mut rng = SplitMix64::new(SEED ^ inp as u64);
        let s = 1.0 / (DIMS as f32).sqrt();
        let w = (0..inp * DIMS)
            .map(|_| if rng.next_u64() >> 63 == 0 { s } else { -s })
            .collect();
        Projection { inp, w }
    }

    /// Input dimension.
    pub fn input_dim(&self) -> usize {
        self.inp
    }

    /// The summary of one feature vector (`None` when its length is not the input dimension).
    pub fn project(&self, features: &[f32]) -> Option<[f32; DIMS]> {
        if features.len() != self.inp {
            return None;
        }
        let mut out = [0f32; DIMS];
        for (x, row) in features.iter().zip(self.w.chunks_exact(DIMS)) {
            for (o, w) in out.iter_mut().zip(row) {
                *o += x * w;
            }
        }
        Some(out)
    }
}

/// The outcome of [`mmd_test`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mmd {
    /// Unbiased estimate of MMD² under a Gaussian kernel (0 when both samples share a
    /// distribution; can dip below 0 by chance).
    pub mmd2: f64,
    /// Share of label permutations with an MMD² at least as large (with the observed one).
    pub p_value: f64,
    /// The kernel's squared bandwidth: the median squared distance of the pooled sample.
    pub bandwidth2: f64,
    pub permutations: usize,
}

/// Maximum mean discrepancy between samples `a` and `b` (rows of equal length), with a
/// permutation p-value from `permutations` random relabellings (seeded: the same samples give
/// the same p-value). Cost: O((|a| + |b|)² · (dims + permutations)); callers subsample.
pub fn mmd_test(a: &[Vec<f32>], b: &[Vec<f32>], permutations: usize, seed: u64) -> Mmd {
    let (m, n) = (a.len(), b.len());
    if m < 2 || n < 2 {
        return Mmd {
            mmd2: 0.0,
            p_value: 1.0,
            bandwidth2: 0.0,
            permutations: 0,
        };
    }
    let z: Vec<&[f32]> = a.iter().chain(b).map(Vec::as_slice).collect();
    let t = z.len();
    let mut d2 = vec![0f64; t * t];
    for i in 0..t {
        for j in i + 1..t {
            let d: f64 = z[i]
                .iter()
                .zip(z[j])
                .map(|(x, y)| f64::from(x - y).powi(2))
                .sum();
            d2[i * t + j] = d;
            d2[j * t + i] = d;
        }
    }
    let mut off: Vec<f64> = (0..t)
        .flat_map(|i| (i + 1..t).map(move |j| (i, j)))
        .map(|(i, j)| d2[i * t + j])
        .collect();
    let mid = off.len() / 2;
    let bandwidth2 = *off.select_nth_unstable_by(mid, f64::total_cmp).1;
    // Identical points throughout: nothing to tell apart.
    let scale = if bandwidth2 > 0.0 { bandwidth2 } else { 1.0 };
    let k: Vec<f64> = d2.iter().map(|d| (-d / scale).exp()).collect();
    let total: f64 = (0..t)
        .map(|i| {
            (0..t)
                .filter(|&j| j != i)
                .map(|j| k[i * t + j])
                .sum::<f64>()
        })
        .sum();
    // MMD² from the within-group sums (the cross sum is what the total leaves).
    let statistic = |in_a: &[bool]| -> f64 {
        let (mut saa, mut sbb) = (0.0, 0.0);
        for i in 0..t {
            let row = &k[i * t..(i + 1) * t];
            let mut s = 0.0;
            for (j, (&kij, &aj)) in row.iter().zip(in_a).enumerate() {
                if aj == in_a[i] && j != i {
                    s += kij;
                }
            }
            if in_a[i] {
                saa += s;
            } else {
                sbb += s;
            }
        }
        let sab = (total - saa - sbb) / 2.0;
        let (m, n) = (m as f64, n as f64);
        saa / (m * (m - 1.0)) + sbb / (n * (n - 1.0)) - 2.0 * sab / (m * n)
    };
    let mut labels: Vec<bool> = (0..t).map(|i| i < m).collect();
    let observed = statistic(&labels);
    let mut rng = SplitMix64::new(seed);
    let mut as_large = 0usize;
    for _ in 0..permutations {
        rng.shuffle(&mut labels);
        if statistic(&labels) >= observed {
            as_large += 1;
        }
    }
    Mmd {
        mmd2: observed,
        p_value: (1 + as_large) as f64 / (1 + permutations) as f64,
        bandwidth2,
        permutations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, shift: f32, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = SplitMix64::new(seed);
        (0..n)
            .map(|_| {
                (0..8)
                    .map(|_| rng.next_f64() as f32 + shift)
                    .collect::<Vec<f32>>()
            })
            .collect()
    }

    #[test]
    fn the_projection_is_fixed_and_keeps_distances_roughly() {
        let p = Projection::new(256);
        let q = Projection::new(256);
        let x: Vec<f32> = (0..256).map(|i| (i as f32 * 0.37).sin()).collect();
        let y: Vec<f32> = (0..256).map(|i| (i as f32 * 0.11).cos()).collect();
        assert_eq!(p.project(&x), q.project(&x));
        assert!(p.project(&x[..10]).is_none());
        // Johnson–Lindenstrauss: the ratio of squared distances has mean 1 and standard
        // deviation about √(2/32) = 0.25; allow two of them.
        let (px, py) = (p.project(&x).expect("x"), p.project(&y).expect("y"));
        let d: f32 = x.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum();
        let dp: f32 = px.iter().zip(&py).map(|(a, b)| (a - b).powi(2)).sum();
        assert!((dp / d - 1.0).abs() < 0.5, "{dp} vs {d}");
    }

    #[test]
    fn one_distribution_is_not_flagged_and_a_shift_is() {
        let same = mmd_test(&sample(150, 0.0, 1), &sample(120, 0.0, 2), 300, 7);
        assert!(same.p_value > 0.05, "{same:?}");
        assert!(same.mmd2.abs() < 0.02, "{same:?}");
        let moved = mmd_test(&sample(150, 0.0, 1), &sample(120, 0.2, 2), 300, 7);
        assert!(moved.p_value < 0.01 && moved.mmd2 > 0.0, "{moved:?}");
        // The smallest p-value a test can give is 1 / (1 + permutations).
        assert!((moved.p_value - 1.0 / 301.0).abs() < 1e-12, "{moved:?}");
        let none = mmd_test(&sample(1, 0.0, 1), &sample(100, 0.0, 2), 300, 7);
        assert_eq!(none.p_value, 1.0);
    }
}
