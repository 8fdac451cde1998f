//! The few dense-matrix operations heads need, on row-major `f32` slices.

/// `c = alpha * op(a) * op(b) + beta * c` with `op(a)` m×k and `op(b)` k×n, all row-major;
/// `ta`/`tb` read `a`/`b` transposed (their stored shapes are then k×m and n×k).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    ta: bool,
    tb: bool,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    b: &[f32],
    beta: f32,
    c: &mut [f32],
) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm shapes"
    );
    let (rsa, csa) = if ta { (1, m) } else { (k, 1) };
    let (rsb, csb) = if tb { (1, k) } else { (n, 1) };
    #[allow(unsafe_code)]
    // SAFETY: the assert above guarantees every index the strides reach lies within the three
    // slices, and `c` is borrowed mutably, so it aliases neither `a` nor `b`.
    unsafe {
        // The `gemm` crate picks AVX-512 kernels at run time where the CPU has them (1.1-1.5×
        // matrixmultiply's AVX2 on the heads' shapes). Its `alpha` scales the destination and
        // `beta` the product: the reverse of BLAS.
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            beta != 0.0,
            a.as_ptr(),
            csa as isize,
            rsa as isize,
            b.as_ptr(),
            csb as isize,
            rsb as isize,
            beta,
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Add `bias` (length n) to every row of `x` (rows × n).
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// Column sums of `x` (rows × n) into `out` (length n), overwriting.
pub fn col_sums(x: &[f32], out: &mut [f32]) {
    out.iter_mut().for_each(|v| *v = 0.0);
    for row in x.chunks_exact(out.len()) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// In-place softmax of each row of length n.
pub fn softmax_rows(x: &mut [f32], n: usize) {
    for row in x.chunks_exact_mut(n) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(ta: bool, tb: bool, m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
        let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_for_every_transpose_scale_and_size() {
        // Small, and large enough for the packed SIMD kernels with ragged edges.
        for (m, k, n) in [(5, 7, 3), (67, 130, 33)] {
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.91).cos()).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                // Overwrite (beta 0, even over NaN), then scale and accumulate (beta 1).
                let mut c = vec![f32::NAN; m * n];
                gemm(ta, tb, m, k, n, 1.0, &a, &b, 0.0, &mut c);
                let want = naive(ta, tb, m, k, n, &a, &b);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-4, "{m}x{k}x{n} {ta} {tb}: {x} vs {y}");
                }
                gemm(ta, tb, m, k, n, -0.5, &a, &b, 1.0, &mut c);
                for (x, y) in c.iter().zip(&want) {
                    assert!(
                        (x - 0.5 * y).abs() < 1e-4,
                        "accumulate {ta} {tb}: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_survive_large_logits() {
        let mut x = vec![1000.0, 1001.0, 999.0, 0.0, 0.0, 0.0];
        softmax_rows(&mut x, 3);
        assert!((x[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[1] > x[0] && x[0] > x[2]);
        assert!((x[3] - 1.0 / 3.0).abs() < 1e-6);
    }
}
