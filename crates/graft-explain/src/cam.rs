//! Class activation maps from a feature map `A` (`C × h × w`, channel-major) and the gradient
//! of a class score with respect to it (same shape).
//!
//! Grad-CAM (Selvaraju et al. 2017) weighs each channel by its gradient averaged over the
//! locations; Grad-CAM++ (Chattopadhay et al. 2018, closed form for an exponential score)
//! weighs each location's positive gradient. When a pooled head reads the map's average, the
//! gradient is `g_c / P` at every location ([`broadcast`]): no backward pass through the
//! encoder is needed. Integrated gradients (Sundararajan et al. 2017), taken at the map,
//! weighs each location's activation by its own gradient averaged along a path
//! ([`path_fractions`]): the caller averages the gradients and subtracts the path's start.

/// Which map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CamKind {
    GradCam,
    GradCamPlusPlus,
    /// Layer-CAM (Jiang et al. 2021): each location's activation weighed by its own positive
    /// gradient, with no averaging over the map — what keeps earlier, finer maps sharp.
    LayerCam,
    /// Integrated gradients at the map: `Σ_c g·a` per location, `g` the gradient averaged
    /// along the path from a reference map and `a` the activation less the reference. Summed
    /// over every location (before the ReLU) it approximates the score's change from the
    /// reference (the method's completeness), so a location's value is its share of that change.
    Integrated,
}

/// The points of the straight path from a reference map to the image's, as fractions of the
/// way (`1/steps, 2/steps, …, 1`), at which integrated gradients averages the gradient (the
/// right Riemann sum of Sundararajan et al.'s integral).
pub fn path_fractions(steps: usize) -> impl Iterator<Item = f32> {
    let n = steps.max(1);
    (1..=n).map(move |k| k as f32 / n as f32)
}

/// The point a fraction `at` of the way from `from` to `to` (`to` itself, exactly, at 1).
pub fn path_point(from: &[f32], to: &[f32], at: f32) -> Vec<f32> {
    if at >= 1.0 {
        return to.to_vec();
    }
    from.iter().zip(to).map(|(f, t)| f + at * (t - f)).collect()
}

/// The per-location gradient of a score whose gradient with respect to the map's spatial
/// average is `pooled` (`C` values): `g_c / P` everywhere.
pub fn broadcast(pooled: &[f32], locations: usize) -> Vec<f32> {
    let p = locations.max(1) as f32;
    pooled
        .iter()
        .flat_map(|g| std::iter::repeat_n(g / p, locations))
        .collect()
}

/// The map (`locations` values, non-negative) for a class whose score has gradient `grads`
/// with respect to `map` (both `C × locations`). Empty when the shapes disagree.
pub fn class_activation(kind: CamKind, map: &[f32], grads: &[f32], locations: usize) -> Vec<f32> {
    if locations == 0 || map.len() != grads.len() || !map.len().is_multiple_of(locations) {
        return Vec::new();
    }
    if matches!(kind, CamKind::LayerCam | CamKind::Integrated) {
        // Layer-CAM keeps a location's positive gradient only; integrated gradients all of it.
        let floor = if kind == CamKind::LayerCam {
            0.0
        } else {
            f32::NEG_INFINITY
        };
        let mut cam = vec![0f32; locations];
        for (plane, g) in map
            .chunks_exact(locations)
            .zip(grads.chunks_exact(locations))
        {
            for ((c, a), g) in cam.iter_mut().zip(plane).zip(g) {
                *c += g.max(floor) * a;
            }
        }
        cam.iter_mut().for_each(|v| *v = v.max(0.0));
        return cam;
    }
    let weights: Vec<f32> = map
        .chunks_exact(locations)
        .zip(grads.chunks_exact(locations))
        .map(|(plane, g)| match kind {
            CamKind::GradCam => g.iter().sum::<f32>() / locations as f32,
            CamKind::LayerCam | CamKind::Integrated => 0.0,
            CamKind::GradCamPlusPlus => {
                // α = g² / (2g² + Σ_q A_q·g³) per location; the weight is Σ_p α·relu(g).
                let sum_a: f32 = plane.iter().sum();
                g.iter()
                    .map(|&g| {
                        let (g2, g3) = (g * g, g * g * g);
                        let denom = 2.0 * g2 + sum_a * g3;
                        if denom.abs() > f32::EPSILON * g2 && g > 0.0 {
                            g2 / denom * g
                        } else {
                            0.0
                        }
                    })
                    .sum()
            }
        })
        .collect();
    let mut cam = vec![0f32; locations];
    for (plane, w) in map.chunks_exact(locations).zip(&weights) {
        if *w != 0.0 {
            for (c, a) in cam.iter_mut().zip(plane) {
                *c += w * a;
            }
        }
    }
    cam.iter_mut().for_each(|v| *v = v.max(0.0));
    cam
}

/// Scale to `[0, 1]` by the map's own maximum (all zeros stays all zeros).
pub fn normalised(map: &[f32]) -> Vec<f32> {
    let max = map.iter().copied().fold(0f32, f32::max);
    if max > 0.0 {
        map.iter().map(|v| v / max).collect()
    } else {
        vec![0.0; map.len()]
    }
}

/// Bilinear upsampling of a `side × side` grid to `size × size` over cell centres, as the
/// feature map's cells lie over the input crop.
pub fn upsample(grid: &[f32], side: usize, size: usize) -> Vec<f32> {
    if side == 0 || grid.len() != side * side {
        return vec![0.0; size * size];
    }
    let at = |x: usize, y: usize| grid[y.min(side - 1) * side + x.min(side - 1)];
    let scale = side as f32 / size as f32;
    let mut out = Vec::with_capacity(size * size);
    for y in 0..size {
        let fy = ((y as f32 + 0.5) * scale - 0.5).max(0.0);
        let (iy, ty) = (fy as usize, fy - fy.floor());
        for x in 0..size {
            let fx = ((x as f32 + 0.5) * scale - 0.5).max(0.0);
            let (ix, tx) = (fx as usize, fx - fx.floor());
            out.push(
                (at(ix, iy) * (1.0 - tx) + at(ix + 1, iy) * tx) * (1.0 - ty)
                    + (at(ix, iy + 1) * (1.0 - tx) + at(ix + 1, iy + 1) * tx) * ty,
            );
        }
    }
    out
}

/// Score-CAM (Wang et al. 2020), a gradient-free cross-check: each channel's map, scaled to
/// `[0, 1]` and upsampled, masks the image; the model's probability for the class on that
/// masked image, softmaxed over the channels, weighs the channel. [`score_cam_channels`] picks
/// the channels (the most active, to bound the cost), [`score_cam_mask`] makes each mask, and
/// this combines the probabilities `scores` (one per picked channel) into the map.
pub fn score_cam(map: &[f32], locations: usize, channels: &[usize], scores: &[f32]) -> Vec<f32> {
    let mut cam = vec![0f32; locations];
    if channels.len() != scores.len() || locations == 0 {
        return cam;
    }
    let max = scores.iter().copied().fold(f32::MIN, f32::max);
    let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    for (&k, e) in channels.iter().zip(&exp) {
        let Some(plane) = map.get(k * locations..(k + 1) * locations) else {
            continue;
        };
        let w = e / total;
        for (c, a) in cam.iter_mut().zip(plane) {
            *c += w * a;
        }
    }
    cam.iter_mut().for_each(|v| *v = v.max(0.0));
    cam
}

/// The `n` channels with the highest mean activation (ties in channel order).
pub fn score_cam_channels(map: &[f32], locations: usize, n: usize) -> Vec<usize> {
    if locations == 0 {
        return Vec::new();
    }
    let means: Vec<f32> = map
        .chunks_exact(locations)
        .map(|p| p.iter().sum::<f32>() / locations as f32)
        .collect();
    let mut order: Vec<usize> = (0..means.len()).collect();
    order.sort_by(|&a, &b| means[b].total_cmp(&means[a]).then(a.cmp(&b)));
    order.truncate(n);
    order
}

/// Channel `k`'s mask over the input (`size × size`, `[0, 1]`): its plane min-max scaled and
/// upsampled from `side × side`.
pub fn score_cam_mask(map: &[f32], side: usize, k: usize, size: usize) -> Vec<f32> {
    let locations = side * side;
    let plane = map.get(k * locations..(k + 1) * locations).unwrap_or(&[]);
    let (lo, hi) = plane
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    let scaled: Vec<f32> = if hi > lo {
        plane.iter().map(|v| (v - lo) / (hi - lo)).collect()
    } else {
        vec![0.0; plane.len()]
    };
    upsample(&scaled, side, size)
}

/// Spearman's rank correlation of two maps of one size (average ranks for ties): how much a
/// map kept its order when the model was randomised.
pub fn rank_correlation(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() || a.len() < 2 {
        return f64::NAN;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let mean = (n + 1.0) / 2.0;
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - mean) * (y - mean);
        va += (x - mean) * (x - mean);
        vb += (y - mean) * (y - mean);
    }
    if va == 0.0 || vb == 0.0 {
        return 0.0;
    }
    cov / (va * vb).sqrt()
}

fn ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0f64; v.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && v[order[end]] == v[order[start]] {
            end += 1;
        }
        // Ranks are 1-based; a tie shares the mean of its positions.
        let shared = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            r[i] = shared;
        }
        start = end;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grad_cam_weighs_channels_by_their_gradient() {
        // Two channels over 2×2: channel 0 lights the top-left, channel 1 the bottom-right.
        let map = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0];
        let cam = class_activation(CamKind::GradCam, &map, &broadcast(&[4.0, -1.0], 4), 4);
        // (4/4)·1 at p0; (-1/4)·2 clipped to 0 at p3.
        assert_eq!(cam, vec![1.0, 0.0, 0.0, 0.0]);
        let cam = class_activation(CamKind::GradCam, &map, &broadcast(&[1.0, 1.0], 4), 4);
        assert_eq!(cam, vec![0.25, 0.0, 0.0, 0.5]);
        assert!(class_activation(CamKind::GradCam, &map, &[1.0], 4).is_empty());
        // A gradient that varies over the locations is averaged per channel.
        let grads = [4.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let cam = class_activation(CamKind::GradCam, &map, &grads, 4);
        assert_eq!(cam, vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn grad_cam_plus_plus_ignores_negative_gradients_and_keeps_positive_ones() {
        let map = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0];
        let grads = broadcast(&[4.0, -1.0], 4);
        let cam = class_activation(CamKind::GradCamPlusPlus, &map, &grads, 4);
        assert!(cam[0] > 0.0 && cam[3] == 0.0, "{cam:?}");
        // With g = 4/4 = 1 and ΣA = 1: α = 1/(2+1) at each of 4 locations, weight 4/3.
        assert!((cam[0] - 4.0 / 3.0).abs() < 1e-6, "{cam:?}");
    }

    #[test]
    fn layer_cam_keeps_each_location_with_its_own_positive_gradient() {
        let map = [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 1.0];
        // Channel 0's gradient is positive at location 0 only; channel 1's at location 2.
        let grads = [2.0, -5.0, 0.0, 0.0, 0.0, 0.0, 1.0, -1.0];
        let cam = class_activation(CamKind::LayerCam, &map, &grads, 4);
        assert_eq!(cam, vec![2.0, 0.0, 3.0, 0.0]);
    }

    #[test]
    fn integrated_keeps_each_location_with_its_whole_gradient() {
        let map = [1.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 1.0];
        let grads = [2.0, -5.0, 0.0, 0.0, 0.0, 0.0, 1.0, -1.0];
        let cam = class_activation(CamKind::Integrated, &map, &grads, 4);
        // Location 1: 2·(−5) < 0, cut by the ReLU; location 3: 1·(−1).
        assert_eq!(cam, vec![2.0, 0.0, 3.0, 0.0]);
        // With one gradient per channel everywhere (a pooled head at the last map) the map is
        // Grad-CAM's.
        let map = [0.5, -1.0, 2.0, 0.25, 1.0, 3.0, -0.5, 0.0];
        let grads = broadcast(&[2.0, -1.0], 4);
        assert_eq!(
            class_activation(CamKind::Integrated, &map, &grads, 4),
            class_activation(CamKind::GradCam, &map, &grads, 4)
        );
        let at: Vec<f32> = path_fractions(4).collect();
        assert_eq!(at, vec![0.25, 0.5, 0.75, 1.0]);
        assert_eq!(path_point(&[1.0, -2.0], &[3.0, 2.0], 0.25), vec![1.5, -1.0]);
        let odd = [0.1f32, 0.7];
        assert_eq!(path_point(&[0.3, 0.9], &odd, 1.0), odd.to_vec());
    }

    #[test]
    fn score_cam_weighs_the_channels_that_convince_the_model() {
        // Channel 0 lights location 0, channel 1 location 3, channel 2 is dark.
        let map = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.1, 0.1, 0.1, 0.1];
        assert_eq!(score_cam_channels(&map, 4, 2), vec![0, 1]);
        // Masked by channel 0 the model is sure (0.9), by channel 1 not (0.1).
        let cam = score_cam(&map, 4, &[0, 1], &[0.9, 0.1]);
        assert!(cam[0] > cam[3] && cam[3] > 0.0 && cam[1] == 0.0, "{cam:?}");
        let w0 = 0.9f32.exp() / (0.9f32.exp() + 0.1f32.exp());
        assert!((cam[0] - w0).abs() < 1e-6);
        let mask = score_cam_mask(&map, 2, 1, 4);
        assert_eq!(mask.len(), 16);
        assert!(mask[15] > 0.99 && mask[0] < 0.01, "{mask:?}");
    }

    #[test]
    fn upsampling_keeps_the_peak_cell_and_constant_maps() {
        let grid = [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
        let up = upsample(&grid, 3, 30);
        let peak = up
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .expect("non-empty");
        let (x, y) = (peak % 30, peak / 30);
        assert!((10..20).contains(&x) && (10..20).contains(&y), "{x},{y}");
        assert!(upsample(&[2.0; 4], 2, 7)
            .iter()
            .all(|v| (v - 2.0).abs() < 1e-6));
    }

    #[test]
    fn rank_correlation_is_one_for_the_same_order_and_minus_one_reversed() {
        let a = [0.1, 0.5, 0.2, 0.9];
        assert!((rank_correlation(&a, &[1.0, 5.0, 2.0, 9.0]) - 1.0).abs() < 1e-12);
        assert!((rank_correlation(&a, &[9.0, 1.0, 5.0, 0.0]) + 1.0).abs() < 1e-12);
        // Ties share their mean rank.
        assert_eq!(ranks(&[3.0, 1.0, 3.0]), vec![2.5, 1.0, 2.5]);
    }
}
