//! The exported file against graft on the same held-out images: how closely their
//! probabilities agree, how accurate each is, and whether an INT8 file lost more accuracy than
//! allowed (a paired test: only the images whose verdict changed carry information).

/// A float file must match graft's probabilities this closely (and give every top-1).
pub const FLOAT_MAX_DIFF: f32 = 1e-4;

/// How the file's probabilities compare with graft's on `images` images.
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    pub images: usize,
    /// Largest |p_file − p_graft| over every image and class.
    pub max_diff: f32,
    pub same_top1: usize,
    /// Top-1 class of each image, by the file and by graft.
    pub top_file: Vec<usize>,
    pub top_graft: Vec<usize>,
}

impl Agreement {
    /// Compare row-major `[n, classes]` probabilities (equal lengths).
    pub fn measure(file: &[f32], graft: &[f32], classes: usize) -> Agreement {
        let max_diff = file
            .iter()
            .zip(graft)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let top_file = graft_train::metrics::argmax_rows(file, classes);
        let top_graft = graft_train::metrics::argmax_rows(graft, classes);
        let same_top1 = top_file
            .iter()
            .zip(&top_graft)
            .filter(|(a, b)| a == b)
            .count();
        Agreement {
            images: top_file.len(),
            max_diff,
            same_top1,
            top_file,
            top_graft,
        }
    }

    /// Whether a float file computes what graft computes ([`FLOAT_MAX_DIFF`], all top-1).
    pub fn float_matches(&self) -> bool {
        self.max_diff < FLOAT_MAX_DIFF && self.same_top1 == self.images
    }
}

/// Paired accuracy change from the float model to the exported one on the same images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AccuracyDrop {
    /// Labelled images.
    pub n: usize,
    /// Right in float, wrong in the file.
    pub lost: usize,
    /// Wrong in float, right in the file.
    pub gained: usize,
}

impl AccuracyDrop {
    /// `None` when no image has a label the model knows.
    pub fn measure(
        float: &[usize],
        file: &[usize],
        labels: &[Option<usize>],
    ) -> Option<AccuracyDrop> {
        let mut d = AccuracyDrop {
            n: 0,
            lost: 0,
            gained: 0,
        };
        for ((&a, &b), l) in float.iter().zip(file).zip(labels) {
            let Some(l) = *l else { continue };
            d.n += 1;
            match (a == l, b == l) {
                (true, false) => d.lost += 1,
                (false, true) => d.gained += 1,
                _ => {}
            }
        }
        (d.n > 0).then_some(d)
    }

    /// Accuracy lost, as a fraction (negative: the file is more accurate).
    pub fn drop(&self) -> f64 {
        (self.lost as f64 - self.gained as f64) / self.n as f64
    }

    /// Whether the file loses more than `max` of accuracy: a loss the images show (95% sure
    /// it is one, so one flip among a handful of images does not condemn a file) and larger
    /// than allowed.
    pub fn exceeds(&self, max: f64) -> bool {
        self.drop() > max && self.interval().0 > 0.0
    }

    /// 95% interval of the drop: only the images whose verdict changed carry information
    /// (McNemar), so a few flips on a small test split do not condemn the file.
    pub fn interval(&self) -> (f64, f64) {
        let half = 1.96 * ((self.lost + self.gained) as f64).sqrt() / self.n as f64;
        (self.drop() - half, self.drop() + half)
    }
}

/// Share of right predictions among the images with a known label; `None` without any.
pub fn accuracy(pred: &[usize], labels: &[Option<usize>]) -> Option<f64> {
    let known: Vec<(usize, usize)> = pred
        .iter()
        .zip(labels)
        .filter_map(|(&p, l)| l.map(|l| (p, l)))
        .collect();
    if known.is_empty() {
        return None;
    }
    let right = known.iter().filter(|(p, l)| p == l).count();
    Some(right as f64 / known.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_drop_counts_only_changed_verdicts() {
        // Labels 0..6; float right on 0-3, the file right on 0-1 and 4.
        let labels: Vec<Option<usize>> = vec![Some(0), Some(1), Some(2), Some(3), Some(4), None];
        let float = [0, 1, 2, 3, 9, 5];
        let file = [0, 1, 9, 9, 4, 7];
        let d = AccuracyDrop::measure(&float, &file, &labels).expect("labelled");
        assert_eq!((d.n, d.lost, d.gained), (5, 2, 1));
        assert!((d.drop() - 0.2).abs() < 1e-12);
        let (lo, hi) = d.interval();
        let half = 1.96 * 3f64.sqrt() / 5.0;
        assert!((lo - (0.2 - half)).abs() < 1e-12 && (hi - (0.2 + half)).abs() < 1e-12);
        // Identical predictions: no drop and no uncertainty.
        let same = AccuracyDrop::measure(&float, &float, &labels).expect("labelled");
        assert_eq!(same.interval(), (0.0, 0.0));
        assert!(AccuracyDrop::measure(&float, &file, &[None; 6]).is_none());
    }

    #[test]
    fn the_gate_refuses_a_real_loss_past_the_limit_only() {
        let drop = |n, lost, gained| AccuracyDrop { n, lost, gained };
        // The demo on a CPU without VNNI with 8-bit weights: 5.3 points, interval 0.8 to 9.9.
        assert!(drop(150, 10, 2).exceeds(0.02));
        // One flip among 9 images: 11 points, but nothing the images can show.
        assert!(!drop(9, 1, 0).exceeds(0.02));
        // A real loss within the limit.
        assert!(!drop(2000, 30, 8).exceeds(0.02));
        assert!(drop(2000, 30, 8).exceeds(0.005));
    }

    #[test]
    fn agreement_finds_the_largest_difference_and_the_changed_top1() {
        // Two images, three classes: the second image's top-1 differs.
        let graft = [0.7, 0.2, 0.1, 0.4, 0.5, 0.1];
        let file = [0.7, 0.2, 0.1, 0.6, 0.3, 0.1];
        let a = Agreement::measure(&file, &graft, 3);
        assert_eq!(a.images, 2);
        assert_eq!(a.same_top1, 1);
        assert_eq!((a.top_file, a.top_graft), (vec![0, 0], vec![0, 1]));
        assert!((a.max_diff - 0.2).abs() < 1e-6);
        assert!(!Agreement::measure(&file, &graft, 3).float_matches());
        assert!(Agreement::measure(&graft, &graft, 3).float_matches());
    }

    #[test]
    fn accuracy_counts_known_labels_only() {
        assert_eq!(accuracy(&[0, 1, 2], &[Some(0), Some(2), None]), Some(0.5));
        assert_eq!(accuracy(&[0], &[None]), None);
    }
}
