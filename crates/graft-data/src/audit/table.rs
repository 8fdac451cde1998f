//! The human-readable audit: a compact text report for the terminal.

use std::fmt::Write;

use super::{AuditReport, DupGroup};
use crate::scan::Layout;

impl AuditReport {
    /// Render for a terminal; `show` caps each list (JSON has everything).
    pub fn to_table(&self, show: usize) -> String {
        let mut s = String::new();
        let layout = match self.layout {
            Layout::ImageFolder => "class folders",
            Layout::PreSplit => "pre-split train/val/test",
        };
        let _ = writeln!(s, "Dataset {} ({layout})", self.root);
        let _ = writeln!(
            s,
            "  {} files, {} readable images in {} classes, {} unusable",
            self.files_found,
            self.images_ok,
            self.classes.len(),
            self.unreadable.len()
        );
        if let Some(im) = &self.imbalance {
            let _ = writeln!(
                s,
                "  imbalance {:.2}:1 (largest {} {}, smallest {} {})",
                im.ratio, im.largest, im.largest_count, im.smallest, im.smallest_count
            );
        }
        s.push('\n');
        self.class_table(&mut s);

        if !self.unreadable.is_empty() {
            let _ = writeln!(s, "\nUnusable files ({}):", self.unreadable.len());
            for p in self.unreadable.iter().take(show) {
                let _ = writeln!(s, "  {}  —  {}", p.path, p.reason);
            }
            more(&mut s, self.unreadable.len(), show);
        }
        if !self.tiny_images.is_empty() {
            let _ = writeln!(
                s,
                "\nTiny images (< {} px a side, {}):",
                super::TINY_SIDE,
                self.tiny_images.len()
            );
            for p in self.tiny_images.iter().take(show) {
                let _ = writeln!(s, "  {p}");
            }
            more(&mut s, self.tiny_images.len(), show);
        }
        dup_section(&mut s, "Exact duplicates", &self.exact_duplicates, show);
        dup_section(
            &mut s,
            &format!(
                "Near duplicates (perceptual hash within {} bits)",
                self.near_dup_threshold
            ),
            &self.near_duplicates,
            show,
        );

        if let Some(z) = &self.sizes {
            let _ = writeln!(s, "\nImage sizes ({} distinct):", z.distinct_sizes);
            let _ = writeln!(
                s,
                "  width  min {:.0}  median {:.0}  max {:.0}\n  height min {:.0}  median {:.0}  max {:.0}",
                z.width.min, z.width.median, z.width.max, z.height.min, z.height.median, z.height.max
            );
            let common: Vec<String> = z
                .most_common
                .iter()
                .map(|(w, h, n)| format!("{w}x{h} ({n})"))
                .collect();
            let _ = writeln!(s, "  most common: {}", common.join(", "));
            let aspect: Vec<String> = z.aspect.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(s, "  aspect: {}", aspect.join(", "));
        }
        if let Some(c) = &self.channels {
            let _ = writeln!(
                s,
                "\nChannel mean (R G B, 0-1): {:.4} {:.4} {:.4}   std: {:.4} {:.4} {:.4}",
                c.mean[0], c.mean[1], c.mean[2], c.std[0], c.std[1], c.std[2]
            );
        }
        if let Some(bg) = &self.background {
            let _ = writeln!(
                s,
                "\nBackground probe (class from border colour alone, {}-fold): accuracy {:.1}% vs {:.1}% chance",
                super::background::FOLDS,
                bg.accuracy * 100.0,
                bg.chance * 100.0
            );
            if bg.flagged.is_empty() {
                let _ = writeln!(s, "  no class is identified by its border");
            } else {
                for p in bg.per_class.iter().filter(|p| p.flagged) {
                    let _ = writeln!(
                        s,
                        "  FLAG {}: recall {:.0}%, precision {:.0}% from border (mean border RGB {:.0} {:.0} {:.0})",
                        p.class,
                        p.recall * 100.0,
                        p.precision * 100.0,
                        p.border_rgb[0],
                        p.border_rgb[1],
                        p.border_rgb[2]
                    );
                }
            }
        }
        if self.warnings.is_empty() {
            let _ = writeln!(s, "\nNo problems found.");
        } else {
            let _ = writeln!(s, "\nWarnings:");
            for w in &self.warnings {
                let _ = writeln!(s, "  ! {w}");
            }
        }
        s
    }

    fn class_table(&self, s: &mut String) {
        let name_w = self
            .classes
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let presplit = self.layout == Layout::PreSplit;
        let max = self
            .classes
            .iter()
            .map(|c| c.images)
            .max()
            .unwrap_or(0)
            .max(1);
        let total = self.images_ok.max(1);
        let _ = write!(s, "  {:<name_w$}  {:>8}", "class", "images");
        if presplit {
            let _ = write!(s, "  {:>7} {:>7} {:>7}", "train", "val", "test");
        }
        let _ = writeln!(s, "  {:>6}  {:>5}", "share", "bad");
        for c in &self.classes {
            let _ = write!(s, "  {:<name_w$}  {:>8}", c.name, c.images);
            if let Some(ps) = &c.per_split {
                let g = |k: &str| ps.get(k).copied().unwrap_or(0);
                let _ = write!(s, "  {:>7} {:>7} {:>7}", g("train"), g("val"), g("test"));
            }
            let bar = "#".repeat((c.images * 24).div_ceil(max).min(24));
            let _ = writeln!(
                s,
                "  {:>5.1}%  {:>5}  {bar}",
                c.images as f64 * 100.0 / total as f64,
                c.unreadable
            );
        }
    }
}

fn more(s: &mut String, len: usize, show: usize) {
    if len > show {
        let _ = writeln!(s, "  … and {} more (see --json)", len - show);
    }
}

fn dup_section(s: &mut String, title: &str, groups: &[DupGroup], show: usize) {
    if groups.is_empty() {
        let _ = writeln!(s, "\n{title}: none");
        return;
    }
    let cross = groups.iter().filter(|g| g.cross_class).count();
    let files: usize = groups.iter().map(|g| g.files.len()).sum();
    let _ = writeln!(
        s,
        "\n{title}: {} groups, {files} files, {cross} across classes",
        groups.len()
    );
    // Label conflicts first: they are the ones that hurt.
    let mut order: Vec<&DupGroup> = groups.iter().collect();
    order.sort_by_key(|g| !g.cross_class);
    for g in order.into_iter().take(show) {
        let tag = if g.cross_class { "CONFLICT " } else { "" };
        let shown: Vec<&str> = g.files.iter().take(4).map(String::as_str).collect();
        let extra = if g.files.len() > 4 {
            format!(" +{}", g.files.len() - 4)
        } else {
            String::new()
        };
        let _ = writeln!(s, "  {tag}{}{extra}", shown.join("  "));
    }
    more(s, groups.len(), show);
}
