//! Whether a heatmap points at what the model used, measured by re-running the model on the
//! image with the heatmap's regions hidden or revealed.
//!
//! For one image (normalised, `3 × S × S`) and its heatmap upsampled to `S × S`,
//! [`perturbations`] builds the images to score, in this order:
//! 1. *hidden*: the top `top_share` of pixels by heat set to the baseline;
//! 2. *kept*: everything but those pixels set to the baseline;
//! 3. *deletion*, `steps + 1` images: pixels removed in heat order, 0 %, 1/steps, …, 100 %;
//! 4. *insertion*, `steps + 1` images: from a blurred copy, pixels revealed in heat order.
//!
//! Removed pixels take [`Perturb::fill`], black in the model's normalised units, as Petsiuk et
//! al. (2018) remove them; insertion starts from a blur, as they do, since a flat image is far
//! outside what the model saw.
//! [`quality`] turns the model's probabilities for the explained class into [`Quality`].

use serde::{Deserialize, Serialize};

/// How the quality tests perturb.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perturb {
    /// Share of pixels, hottest first, that make "the region" (0–1).
    pub top_share: f32,
    /// Deletion and insertion curves have `steps + 1` points.
    pub steps: usize,
    /// What a removed pixel becomes, per channel, in the model's normalised units (black is
    /// `-mean / std`).
    pub fill: [f32; 3],
}

impl Default for Perturb {
    fn default() -> Self {
        Perturb {
            top_share: 0.2,
            steps: 20,
            fill: [0.0; 3],
        }
    }
}

impl Perturb {
    /// Images [`perturbations`] builds per explained image.
    pub fn count(&self) -> usize {
        2 + 2 * (self.steps + 1)
    }
}

/// The quality of one heatmap. Probabilities are the explained class's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// `(p − p_hidden) / p`: how much the probability falls when the region is hidden. Near 0
    /// (or below): the model did not need what the map points at.
    pub confidence_drop: f32,
    /// `(p_kept − p) / p`: how much it rises when only the region is kept (negative: the
    /// region alone convinces less than the whole image).
    pub confidence_increase: f32,
    /// Share of the heatmap's mass in its top `top_share` of pixels (1 = all of it; a flat
    /// map gives `top_share`).
    pub concentration: f32,
    /// Share of pixels at or above half the peak.
    pub coverage: f32,
    /// Mean probability as pixels are removed hottest first: lower is better.
    pub deletion_auc: f32,
    /// Mean probability as pixels are revealed hottest first: higher is better.
    pub insertion_auc: f32,
}

/// When a map is suspicious: graft.toml's `[explain]` thresholds (`graft explain` and
/// `POST /explain` judge with the same ones).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// The region's share, as in [`Perturb::top_share`] (for the message).
    pub top_share: f32,
    pub min_confidence_drop: f32,
    pub min_concentration: f32,
    pub min_coverage: f32,
    pub max_coverage: f32,
}

/// Why a map is suspicious (empty: it is not), one plain sentence per reason.
pub fn verdict(q: &Quality, t: &Thresholds) -> Vec<String> {
    let mut why = Vec::new();
    if q.confidence_drop < t.min_confidence_drop {
        why.push(format!(
            "hiding the hot region lowers the probability by {:.0} % (< {:.0} %)",
            q.confidence_drop * 100.0,
            t.min_confidence_drop * 100.0
        ));
    }
    if q.concentration < t.min_concentration {
        why.push(format!(
            "diffuse: {:.0} % of the map in its top {:.0} % (< {:.0} %)",
            q.concentration * 100.0,
            t.top_share * 100.0,
            t.min_concentration * 100.0
        ));
    }
    if q.coverage < t.min_coverage {
        why.push(format!(
            "a speck: {:.1} % of the image above half the peak (< {:.1} %)",
            q.coverage * 100.0,
            t.min_coverage * 100.0
        ));
    }
    if q.coverage > t.max_coverage {
        why.push(format!(
            "everywhere: {:.0} % of the image above half the peak (> {:.0} %)",
            q.coverage * 100.0,
            t.max_coverage * 100.0
        ));
    }
    why
}

/// Pixel indices, hottest first (ties in index order, so the order is reproducible).
fn heat_order(heat: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..heat.len()).collect();
    order.sort_by(|&a, &b| heat[b].total_cmp(&heat[a]).then(a.cmp(&b)));
    order
}

/// The images to score for one explained image (see the module doc), `count() × 3 × S × S`.
/// Empty when the shapes disagree.
pub fn perturbations(input: &[f32], heat: &[f32], settings: Perturb) -> Vec<f32> {
    let pixels = heat.len();
    if pixels == 0 || input.len() != 3 * pixels || settings.steps == 0 {
        return Vec::new();
    }
    let order = heat_order(heat);
    let region = ((pixels as f32 * settings.top_share).round() as usize).clamp(1, pixels);
    let mut out = Vec::with_capacity(settings.count() * input.len());
    let set = |img: &mut [f32], idx: &[usize], from: &[f32]| {
        for &i in idx {
            for c in 0..3 {
                img[c * pixels + i] = from[c * pixels + i];
            }
        }
    };
    let zeros: Vec<f32> = settings
        .fill
        .iter()
        .flat_map(|v| std::iter::repeat_n(*v, pixels))
        .collect();
    let mut hidden = input.to_vec();
    set(&mut hidden, &order[..region], &zeros);
    out.extend_from_slice(&hidden);
    let mut kept = zeros.clone();
    set(&mut kept, &order[..region], input);
    out.extend_from_slice(&kept);
    let cut = |k: usize| (pixels * k).div_ceil(settings.steps).min(pixels);
    let mut deleted = input.to_vec();
    for k in 0..=settings.steps {
        let from = if k == 0 { 0 } else { cut(k - 1) };
        set(&mut deleted, &order[from..cut(k)], &zeros);
        out.extend_from_slice(&deleted);
    }
    let side = (pixels as f64).sqrt() as usize;
    let mut inserted = blurred(input, side);
    for k in 0..=settings.steps {
        let from = if k == 0 { 0 } else { cut(k - 1) };
        set(&mut inserted, &order[from..cut(k)], input);
        out.extend_from_slice(&inserted);
    }
    out
}

/// A strong blur of a `3 × side × side` image: three box passes each way (close to a Gaussian
/// of σ ≈ side/14), radius side/14.
pub fn blurred(input: &[f32], side: usize) -> Vec<f32> {
    let mut img = input.to_vec();
    if side == 0 || img.len() != 3 * side * side {
        return img;
    }
    let radius = (side / 14).max(1);
    let mut line = vec![0f32; side];
    for plane in img.chunks_exact_mut(side * side) {
        for _ in 0..3 {
            for y in 0..side {
                box_line(plane, y * side, 1, side, radius, &mut line);
            }
            for x in 0..side {
                box_line(plane, x, side, side, radius, &mut line);
            }
        }
    }
    img
}

/// A running-sum box filter over `n` values at `start, start + stride, …`, edges clamped.
fn box_line(v: &mut [f32], start: usize, stride: usize, n: usize, r: usize, tmp: &mut [f32]) {
    let at = |i: isize| v[start + (i.clamp(0, n as isize - 1) as usize) * stride];
    let r = r as isize;
    let mut sum: f32 = (-r..=r).map(at).sum();
    for (i, t) in tmp.iter_mut().enumerate().take(n) {
        *t = sum / (2 * r + 1) as f32;
        let i = i as isize;
        sum += at(i + r + 1) - at(i - r);
    }
    for (i, t) in tmp.iter().enumerate().take(n) {
        v[start + i * stride] = *t;
    }
}

/// The mean of a curve sampled at `0, 1/(n−1), …, 1` (trapezoids).
fn area(curve: &[f32]) -> f32 {
    match curve {
        [] => f32::NAN,
        [only] => *only,
        [first, .., last] => {
            let sum: f32 = curve.iter().sum();
            (sum - (first + last) / 2.0) / (curve.len() - 1) as f32
        }
    }
}

/// [`Quality`] from the probability `p` of the unperturbed image and `probs`, the same
/// class's probability on each of [`perturbations`]' images.
pub fn quality(p: f32, probs: &[f32], heat: &[f32], settings: Perturb) -> Quality {
    let n = settings.steps + 1;
    let p = p.max(f32::MIN_POSITIVE);
    let (hidden, kept) = (probs.first().copied(), probs.get(1).copied());
    let curve = |from: usize| probs.get(from..from + n).map(area).unwrap_or(f32::NAN);
    Quality {
        confidence_drop: hidden.map_or(f32::NAN, |h| (p - h) / p),
        confidence_increase: kept.map_or(f32::NAN, |k| (k - p) / p),
        concentration: concentration(heat, settings.top_share),
        coverage: coverage(heat),
        deletion_auc: curve(2),
        insertion_auc: curve(2 + n),
    }
}

/// Share of the (non-negative) heat in its top `share` of pixels.
pub fn concentration(heat: &[f32], share: f32) -> f32 {
    let total: f32 = heat.iter().map(|v| v.max(0.0)).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let mut sorted: Vec<f32> = heat.iter().map(|v| v.max(0.0)).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let k = ((heat.len() as f32 * share).round() as usize).clamp(1, heat.len());
    sorted[..k].iter().sum::<f32>() / total
}

/// Share of pixels at or above half the peak (0 for an all-zero map).
pub fn coverage(heat: &[f32]) -> f32 {
    let peak = heat.iter().copied().fold(0f32, f32::max);
    if peak <= 0.0 {
        return 0.0;
    }
    heat.iter().filter(|v| **v >= 0.5 * peak).count() as f32 / heat.len() as f32
}

/// The hottest pixel of an `S × S` map as `(x, y)` (the first, in reading order, on ties).
pub fn peak(heat: &[f32], side: usize) -> (usize, usize) {
    let i = heat
        .iter()
        .enumerate()
        .fold(
            (0, f32::MIN),
            |best, (i, v)| if *v > best.1 { (i, *v) } else { best },
        )
        .0;
    (i % side.max(1), i / side.max(1))
}

/// The peak of a coarse `S × S` map to a fraction of a cell, as `(x, y)` in cells with a cell's
/// centre at +0.5: the hottest cell, moved towards its hotter neighbour by the vertex of the
/// parabola through it and its two neighbours on each axis (at most half a cell). A 7×7 map
/// samples a smooth activation every 32 pixels; its hottest sample alone can be a cell off an
/// object that lies between two cells.
pub fn subcell_peak(heat: &[f32], side: usize) -> (f32, f32) {
    let (x, y) = peak(heat, side);
    let at = |x: usize, y: usize| heat.get(y * side + x).copied().unwrap_or(0.0);
    let offset = |lo: Option<f32>, mid: f32, hi: Option<f32>| match (lo, hi) {
        (Some(l), Some(h)) => {
            let curve = l - 2.0 * mid + h;
            if curve < 0.0 {
                (0.5 * (l - h) / curve).clamp(-0.5, 0.5)
            } else {
                0.0
            }
        }
        _ => 0.0,
    };
    let mid = at(x, y);
    let dx = offset(
        x.checked_sub(1).map(|l| at(l, y)),
        mid,
        (x + 1 < side).then(|| at(x + 1, y)),
    );
    let dy = offset(
        y.checked_sub(1).map(|u| at(x, u)),
        mid,
        (y + 1 < side).then(|| at(x, y + 1)),
    );
    (x as f32 + 0.5 + dx, y as f32 + 0.5 + dy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subcell_peak_finds_a_bump_between_cells() {
        // A parabola peaking at x = 2.3 cells (centres at +0.5), sampled at the centres.
        let side = 5;
        let heat: Vec<f32> = (0..side * side)
            .map(|i| {
                let (x, y) = ((i % side) as f32 + 0.5, (i / side) as f32 + 0.5);
                10.0 - (x - 2.3).powi(2) - (y - 2.5).powi(2)
            })
            .collect();
        let (x, y) = subcell_peak(&heat, side);
        assert!((x - 2.3).abs() < 1e-4 && (y - 2.5).abs() < 1e-4, "{x} {y}");
        // At the border, or on a plateau, the cell's centre.
        let mut flat = vec![0.0; side * side];
        flat[0] = 1.0;
        assert_eq!(subcell_peak(&flat, side), (0.5, 0.5));
    }

    fn image(side: usize) -> Vec<f32> {
        (0..3 * side * side).map(|i| 1.0 + (i % 7) as f32).collect()
    }

    #[test]
    fn perturbations_hide_keep_delete_and_insert_in_heat_order() {
        let side = 4;
        let px = side * side;
        let input = image(side);
        // Heat decreasing with the index: pixel 0 is hottest.
        let heat: Vec<f32> = (0..px).map(|i| (px - i) as f32).collect();
        let s = Perturb {
            top_share: 0.25,
            steps: 4,
            fill: [0.0; 3],
        };
        let out = perturbations(&input, &heat, s);
        let size = 3 * px;
        assert_eq!(out.len(), s.count() * size);
        let img = |k: usize| &out[k * size..(k + 1) * size];
        // Hidden: pixels 0..4 zeroed in every channel, the rest untouched.
        for c in 0..3 {
            for i in 0..px {
                let v = img(0)[c * px + i];
                assert_eq!(v, if i < 4 { 0.0 } else { input[c * px + i] });
                let kept = img(1)[c * px + i];
                assert_eq!(kept, if i < 4 { input[c * px + i] } else { 0.0 });
            }
        }
        // Deletion: the first image is the input, the last all baseline; step 1 removed 4.
        assert_eq!(img(2), &input[..]);
        assert!(img(2 + s.steps).iter().all(|v| *v == 0.0));
        assert_eq!(img(3).iter().filter(|v| **v == 0.0).count(), 3 * 4);
        // Insertion: ends at the input, step 1 shows the 4 hottest pixels.
        let last = 2 + 2 * (s.steps + 1) - 1;
        assert_eq!(img(last), &input[..]);
        let first_ins = img(2 + s.steps + 1 + 1);
        assert_eq!(first_ins[0], input[0]);
    }

    #[test]
    fn quality_reads_the_curves_and_shares() {
        let s = Perturb {
            top_share: 0.5,
            steps: 2,
            fill: [0.0; 3],
        };
        // hidden 0.2, kept 0.9, deletion 1 → 0, insertion 0 → 1.
        let probs = [0.2, 0.9, 0.8, 0.2, 0.0, 0.1, 0.7, 0.8];
        let heat = [4.0, 3.0, 1.0, 0.0];
        let q = quality(0.8, &probs, &heat, s);
        assert!((q.confidence_drop - 0.75).abs() < 1e-6);
        assert!((q.confidence_increase - 0.125).abs() < 1e-6);
        // Trapezoids over 3 points: (0.8/2 + 0.2 + 0)/2 = 0.3; (0.05 + 0.7 + 0.4)/2.
        assert!((q.deletion_auc - 0.3).abs() < 1e-6, "{q:?}");
        assert!((q.insertion_auc - 0.575).abs() < 1e-6, "{q:?}");
        assert!((q.concentration - 0.875).abs() < 1e-6);
        assert_eq!(q.coverage, 0.5);
        // A flat map: concentration is the share, coverage everything.
        assert!((concentration(&[1.0; 10], 0.3) - 0.3).abs() < 1e-6);
        assert_eq!(coverage(&[1.0; 10]), 1.0);
        assert_eq!(peak(&heat, 2), (0, 0));
    }

    #[test]
    fn blur_keeps_the_mean_of_a_flat_image_and_smooths_an_edge() {
        let side = 28;
        let flat = vec![0.5f32; 3 * side * side];
        assert!(blurred(&flat, side).iter().all(|v| (v - 0.5).abs() < 1e-5));
        let edge: Vec<f32> = (0..3 * side * side)
            .map(|i| if i % side < side / 2 { 0.0 } else { 1.0 })
            .collect();
        let b = blurred(&edge, side);
        let mid = b[side / 2];
        assert!(mid > 0.2 && mid < 0.8, "{mid}");
    }
}
