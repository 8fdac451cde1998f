//! `graft data audit`: what a careful person checks before training on a folder of photos.

mod background;
mod duplicates;
mod plot;
mod table;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub use background::{BackgroundProbe, ClassProbe};
pub use duplicates::{find_duplicates, Duplicates, MAX_CLUSTER};
pub use plot::{ensure_font, plot_class_counts};

use crate::analyze::ImageFacts;
use crate::decode::DecodeError;
use crate::scan::{Dataset, Layout};

/// Default Hamming threshold on 64-bit perceptual hashes for near duplicates.
pub const DEFAULT_NEAR_DUP_THRESHOLD: u32 = 4;
/// Images with a side shorter than this are listed as tiny (usable, but suspicious).
pub const TINY_SIDE: u32 = 32;

#[derive(Debug, Clone, Serialize)]
pub struct ClassCount {
    pub name: String,
    /// Readable images.
    pub images: usize,
    /// Readable images per split (pre-split layouts only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_split: Option<BTreeMap<String, usize>>,
    pub unreadable: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Imbalance {
    /// Largest class count / smallest class count (smallest > 0).
    pub ratio: f64,
    pub largest: String,
    pub largest_count: usize,
    pub smallest: String,
    pub smallest_count: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DupGroup {
    pub files: Vec<String>,
    pub classes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<String>,
    /// Files of this group carry different labels: at least one label is wrong, or the classes
    /// overlap.
    pub cross_class: bool,
    /// Largest Hamming distance on a linking pair (0 for exact copies).
    pub max_distance: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub mean: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeStats {
    pub width: Summary,
    pub height: Summary,
    /// Image counts by aspect ratio (width / height) bucket.
    pub aspect: BTreeMap<String, usize>,
    /// The most common (width, height, count), up to 5.
    pub most_common: Vec<(u32, u32, usize)>,
    pub distinct_sizes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChannelStats {
    /// Per-channel mean and standard deviation of RGB values scaled to 0–1, over all pixels.
    pub mean: [f64; 3],
    pub std: [f64; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub root: String,
    pub layout: Layout,
    pub files_found: usize,
    pub images_ok: usize,
    pub classes: Vec<ClassCount>,
    pub imbalance: Option<Imbalance>,
    /// Files that were found but cannot be used: non-images, unreadable, corrupt, truncated.
    pub unreadable: Vec<Problem>,
    /// Readable images with a side under `TINY_SIDE` pixels.
    pub tiny_images: Vec<String>,
    pub near_dup_threshold: u32,
    pub exact_duplicates: Vec<DupGroup>,
    pub near_duplicates: Vec<DupGroup>,
    /// Near-duplicate links not merged because a cluster would exceed
    /// `duplicates::MAX_CLUSTER` images (chains of merely similar images).
    pub near_dup_links_unmerged: usize,
    /// Duplicate groups (exact or near) whose files carry different labels.
    pub label_conflicts: usize,
    /// Duplicate groups spanning more than one split (pre-split layouts): test leakage.
    pub split_leaks: usize,
    pub sizes: Option<SizeStats>,
    pub channels: Option<ChannelStats>,
    pub background: Option<BackgroundProbe>,
    /// One line per finding a person should act on.
    pub warnings: Vec<String>,
}

/// Build the audit report from a scan and its per-image facts (same order as the entries).
pub fn build_report(
    dataset: &Dataset,
    facts: &[Result<ImageFacts, DecodeError>],
    near_dup_threshold: u32,
) -> AuditReport {
    let presplit = dataset.layout == Layout::PreSplit;
    let mut unreadable: Vec<Problem> = dataset
        .skipped
        .iter()
        .map(|s| Problem {
            path: s.path.clone(),
            reason: s.reason.clone(),
        })
        .collect();
    let mut ok_idx = Vec::new();
    let mut counts: BTreeMap<&str, (usize, usize, BTreeMap<String, usize>)> = dataset
        .classes
        .iter()
        .map(|c| (c.as_str(), (0, 0, BTreeMap::new())))
        .collect();
    for (i, (e, f)) in dataset.entries.iter().zip(facts).enumerate() {
        let slot = counts.entry(e.class.as_str()).or_default();
        match f {
            Ok(_) => {
                ok_idx.push(i);
                slot.0 += 1;
                if let Some(s) = e.split {
                    *slot.2.entry(s.to_string()).or_default() += 1;
                }
            }
            Err(err) => {
                slot.1 += 1;
                unreadable.push(Problem {
                    path: e.rel.clone(),
                    reason: err.to_string(),
                });
            }
        }
    }
    unreadable.sort_by(|a, b| a.path.cmp(&b.path));
    let classes: Vec<ClassCount> = counts
        .into_iter()
        .map(|(name, (images, bad, per_split))| ClassCount {
            name: name.to_string(),
            images,
            per_split: presplit.then_some(per_split),
            unreadable: bad,
        })
        .collect();
    let imbalance = imbalance_of(&classes);

    let ok_facts: Vec<&ImageFacts> = ok_idx
        .iter()
        .filter_map(|&i| facts[i].as_ref().ok())
        .collect();
    let tiny_images: Vec<String> = ok_idx
        .iter()
        .zip(&ok_facts)
        .filter(|(_, f)| f.width.min(f.height) < TINY_SIDE)
        .map(|(&i, _)| dataset.entries[i].rel.clone())
        .collect();

    let items: Vec<(&str, u64)> = ok_facts
        .iter()
        .map(|f| (f.content_hash.as_str(), f.phash))
        .collect();
    let dups = find_duplicates(&items, near_dup_threshold);
    let describe = |members: &[usize], max_distance: u32| -> DupGroup {
        let entries: Vec<_> = members
            .iter()
            .map(|&m| &dataset.entries[ok_idx[m]])
            .collect();
        let classes: BTreeSet<&str> = entries.iter().map(|e| e.class.as_str()).collect();
        let splits: BTreeSet<String> = entries
            .iter()
            .filter_map(|e| e.split.map(|s| s.to_string()))
            .collect();
        DupGroup {
            files: entries.iter().map(|e| e.rel.clone()).collect(),
            cross_class: classes.len() > 1,
            classes: classes.into_iter().map(String::from).collect(),
            splits: splits.into_iter().collect(),
            max_distance,
        }
    };
    let exact_duplicates: Vec<DupGroup> = dups.exact.iter().map(|g| describe(g, 0)).collect();
    let near_duplicates: Vec<DupGroup> = dups.near.iter().map(|(g, d)| describe(g, *d)).collect();
    let mut cluster_uf = dups.clusters.clone();
    let clusters: Vec<DupGroup> = cluster_uf.groups().iter().map(|g| describe(g, 0)).collect();
    let label_conflicts = clusters.iter().filter(|g| g.cross_class).count();
    let split_leaks = clusters.iter().filter(|g| g.splits.len() > 1).count();

    let sizes = size_stats(&ok_facts);
    let channels = channel_stats(&ok_facts);
    let labels: Vec<usize> = ok_idx
        .iter()
        .map(|&i| dataset.class_index(&dataset.entries[i].class).unwrap_or(0))
        .collect();
    let borders: Vec<[f32; 6]> = ok_facts.iter().map(|f| f.border).collect();
    let background = background::probe(&borders, &labels, &dataset.classes);

    let mut report = AuditReport {
        root: dataset.root.display().to_string(),
        layout: dataset.layout,
        files_found: dataset.entries.len() + dataset.skipped.len(),
        images_ok: ok_idx.len(),
        classes,
        imbalance,
        unreadable,
        tiny_images,
        near_dup_threshold,
        near_dup_links_unmerged: dups.unmerged_links,
        exact_duplicates,
        near_duplicates,
        label_conflicts,
        split_leaks,
        sizes,
        channels,
        background,
        warnings: Vec::new(),
    };
    report.warnings = warnings(&report);
    report
}

fn imbalance_of(classes: &[ClassCount]) -> Option<Imbalance> {
    let nonempty: Vec<&ClassCount> = classes.iter().filter(|c| c.images > 0).collect();
    let largest = nonempty.iter().max_by_key(|c| c.images)?;
    let smallest = nonempty.iter().min_by_key(|c| c.images)?;
    Some(Imbalance {
        ratio: largest.images as f64 / smallest.images as f64,
        largest: largest.name.clone(),
        largest_count: largest.images,
        smallest: smallest.name.clone(),
        smallest_count: smallest.images,
    })
}

fn summary(mut v: Vec<f64>) -> Option<Summary> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        min: v[0],
        median,
        mean: v.iter().sum::<f64>() / n as f64,
        max: v[n - 1],
    })
}

/// Aspect-ratio buckets named for what a person recognises.
pub fn aspect_bucket(w: u32, h: u32) -> &'static str {
    let r = w as f64 / h as f64;
    match r {
        r if r < 0.70 => "tall (<0.70)",
        r if r < 0.95 => "portrait (0.70-0.95)",
        r if r <= 1.05 => "square (0.95-1.05)",
        r if r <= 1.45 => "landscape (1.05-1.45)",
        _ => "wide (>1.45)",
    }
}

fn size_stats(facts: &[&ImageFacts]) -> Option<SizeStats> {
    let width = summary(facts.iter().map(|f| f.width as f64).collect())?;
    let height = summary(facts.iter().map(|f| f.height as f64).collect())?;
    let mut aspect = BTreeMap::new();
    let mut by_size: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    for f in facts {
        *aspect
            .entry(aspect_bucket(f.width, f.height).to_string())
            .or_default() += 1;
        *by_size.entry((f.width, f.height)).or_default() += 1;
    }
    let distinct_sizes = by_size.len();
    let mut common: Vec<(u32, u32, usize)> =
        by_size.into_iter().map(|((w, h), n)| (w, h, n)).collect();
    common.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
    common.truncate(5);
    Some(SizeStats {
        width,
        height,
        aspect,
        most_common: common,
        distinct_sizes,
    })
}

fn channel_stats(facts: &[&ImageFacts]) -> Option<ChannelStats> {
    let pixels: u64 = facts.iter().map(|f| f.width as u64 * f.height as u64).sum();
    if pixels == 0 {
        return None;
    }
    let mut mean = [0f64; 3];
    let mut std = [0f64; 3];
    for c in 0..3 {
        let s: f64 = facts.iter().map(|f| f.channel_sum[c] as f64).sum();
        let sq: f64 = facts.iter().map(|f| f.channel_sumsq[c] as f64).sum();
        let m = s / pixels as f64;
        mean[c] = m / 255.0;
        std[c] = (sq / pixels as f64 - m * m).max(0.0).sqrt() / 255.0;
    }
    Some(ChannelStats { mean, std })
}

fn warnings(r: &AuditReport) -> Vec<String> {
    let mut w = Vec::new();
    if !r.unreadable.is_empty() {
        w.push(format!(
            "{} file(s) cannot be used and will be skipped (listed above); fix or remove them",
            r.unreadable.len()
        ));
    }
    for c in r.classes.iter().filter(|c| c.images == 0) {
        w.push(format!("class '{}' has no readable image", c.name));
    }
    if let Some(im) = &r.imbalance {
        if im.ratio >= 3.0 {
            w.push(format!(
                "classes are imbalanced {:.1}:1 ({} {} vs {} {}); use class-weighted loss or \
                 balanced sampling, and judge models by macro-F1",
                im.ratio, im.largest, im.largest_count, im.smallest, im.smallest_count
            ));
        }
    }
    if r.label_conflicts > 0 {
        w.push(format!(
            "{} duplicate group(s) carry different labels; check those files' classes",
            r.label_conflicts
        ));
    }
    if r.split_leaks > 0 {
        w.push(format!(
            "{} duplicate group(s) span train/val/test: test scores will be optimistic",
            r.split_leaks
        ));
    }
    if !r.tiny_images.is_empty() {
        w.push(format!(
            "{} image(s) smaller than {TINY_SIDE} px on a side",
            r.tiny_images.len()
        ));
    }
    if let Some(bg) = &r.background {
        if !bg.flagged.is_empty() {
            w.push(format!(
                "background bias: the border alone identifies {} ({:.0}% accuracy vs {:.0}% \
                 chance); a model may learn the backdrop, not the subject",
                bg.flagged.join(", "),
                bg.accuracy * 100.0,
                bg.chance * 100.0
            ));
        }
    }
    w
}
