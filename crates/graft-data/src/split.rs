//! Stratified, seeded, leakage-aware train/val/test split, written as a manifest CSV.
//!
//! Rounding rule (per class of `n` readable images, ratios `r` normalised to sum 1): each split
//! first gets `floor(n·r)`; the images left over go one each to the splits with the largest
//! fractional parts `n·r − floor(n·r)`, ties broken in the order train, val, test. A split with
//! a non-zero ratio that would get no image of some class is an error naming those classes.
//!
//! Placement: images are grouped into clusters (exact copies and near duplicates, also across
//! classes), clusters are shuffled with the seed, then placed largest first, each into the split
//! furthest below its target for the cluster's classes (ties: train, val, test). Singletons
//! therefore fill targets exactly; a cluster of `k` images may overshoot by at most `k − 1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analyze::ImageFacts;
use crate::audit::find_duplicates;
use crate::decode::DecodeError;
use crate::rng::SplitMix64;
use crate::scan::{Dataset, Layout, Split};
use crate::DataError;

/// Parse `"70/15/15"` (also `:` or `,` separated, any non-negative numbers) into normalised
/// train/val/test fractions.
pub fn parse_ratios(s: &str) -> Result<[f64; 3], DataError> {
    let bad = |why: &str| DataError::BadRatios {
        given: s.to_string(),
        why: why.to_string(),
    };
    let parts: Vec<&str> = s.split(['/', ':', ',']).map(str::trim).collect();
    if parts.len() != 3 {
        return Err(bad("expected three numbers (train/val/test)"));
    }
    let mut r = [0f64; 3];
    for (slot, p) in r.iter_mut().zip(&parts) {
        *slot = p
            .parse::<f64>()
            .map_err(|_| bad(&format!("{p:?} is not a number")))?;
        if !slot.is_finite() || *slot < 0.0 {
            return Err(bad("ratios must be non-negative"));
        }
    }
    let sum: f64 = r.iter().sum();
    if r[0] <= 0.0 || sum <= 0.0 {
        return Err(bad("the train ratio must be positive"));
    }
    Ok(r.map(|x| x / sum))
}

/// Per-split image counts for a class of `n` images (see the module docs for the rule).
pub fn targets(n: usize, ratios: &[f64; 3]) -> [usize; 3] {
    let exact = ratios.map(|r| n as f64 * r);
    let mut t = exact.map(|e| e.floor() as usize);
    let mut left = n.saturating_sub(t.iter().sum());
    let mut order = [0usize, 1, 2];
    // Stable sort keeps train, val, test order among equal remainders.
    order.sort_by(|&a, &b| {
        let fa = exact[a] - exact[a].floor();
        let fb = exact[b] - exact[b].floor();
        fb.total_cmp(&fa)
    });
    for &s in order.iter().cycle() {
        if left == 0 {
            break;
        }
        t[s] += 1;
        left -= 1;
    }
    t
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRow {
    /// Absolute in memory; relative to the manifest's folder on disk.
    pub path: PathBuf,
    pub label: String,
    pub split: Split,
    pub hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitOutcome {
    pub rows: Vec<ManifestRow>,
    pub classes: Vec<String>,
    /// Images per class and split (train, val, test).
    pub counts: BTreeMap<String, [usize; 3]>,
    /// Clusters of two or more images that were kept within one split.
    pub clusters_kept_together: usize,
    /// Clusters that span splits (only in pre-split folders, which are kept as they are).
    pub clusters_across_splits: usize,
    /// Files left out of the manifest because they cannot be decoded.
    pub excluded: Vec<(String, String)>,
    pub layout: Layout,
}

/// Options for [`plan_split`].
#[derive(Debug, Clone)]
pub struct SplitOptions {
    pub ratios: [f64; 3],
    pub seed: u64,
    pub near_dup_threshold: u32,
    /// Pre-split folders without `val`: hold out this fraction of each train class as val.
    pub val_from_train: Option<f64>,
}

/// Decide the split of every readable image.
pub fn plan_split(
    dataset: &Dataset,
    facts: &[Result<ImageFacts, DecodeError>],
    opts: &SplitOptions,
) -> Result<SplitOutcome, DataError> {
    let mut excluded = Vec::new();
    let mut ok: Vec<(usize, &ImageFacts)> = Vec::new();
    for (i, f) in facts.iter().enumerate() {
        match f {
            Ok(f) => ok.push((i, f)),
            Err(e) => excluded.push((dataset.entries[i].rel.clone(), e.to_string())),
        }
    }
    let items: Vec<(&str, u64)> = ok
        .iter()
        .map(|(_, f)| (f.content_hash.as_str(), f.phash))
        .collect();
    let mut uf = find_duplicates(&items, opts.near_dup_threshold).clusters;
    let class_of: Vec<usize> = ok
        .iter()
        .map(|(i, _)| dataset.class_index(&dataset.entries[*i].class).unwrap_or(0))
        .collect();
    let k = dataset.classes.len();

    // Which ok-items to assign, and with which ratios; the rest keep their folder split.
    let mut split_of: Vec<Option<Split>> = vec![None; ok.len()];
    let (assign, ratios): (Vec<usize>, [f64; 3]) = match dataset.layout {
        Layout::ImageFolder => ((0..ok.len()).collect(), opts.ratios),
        Layout::PreSplit => {
            for (j, (i, _)) in ok.iter().enumerate() {
                split_of[j] = dataset.entries[*i].split;
            }
            let has_val = split_of.contains(&Some(Split::Val));
            match opts.val_from_train {
                Some(p) if !has_val => {
                    let train: Vec<usize> = (0..ok.len())
                        .filter(|&j| split_of[j] == Some(Split::Train))
                        .collect();
                    (train, [1.0 - p, p, 0.0])
                }
                _ => (Vec::new(), opts.ratios),
            }
        }
    };

    if !assign.is_empty() {
        let mut n_per_class = vec![0usize; k];
        for &j in &assign {
            n_per_class[class_of[j]] += 1;
        }
        let target: Vec<[usize; 3]> = n_per_class.iter().map(|&n| targets(n, &ratios)).collect();
        let too_small: Vec<String> = (0..k)
            .filter(|&c| (0..3).any(|s| ratios[s] > 0.0 && target[c][s] == 0))
            .map(|c| format!("{} ({} images)", dataset.classes[c], n_per_class[c]))
            .collect();
        if !too_small.is_empty() {
            return Err(DataError::ClassesTooSmall { classes: too_small });
        }
        place_clusters(
            &assign,
            &class_of,
            &mut uf,
            &target,
            opts.seed,
            &mut split_of,
        );
    }

    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for j in 0..ok.len() {
        groups.entry(uf.find(j)).or_default().push(j);
    }
    let multi: Vec<&Vec<usize>> = groups.values().filter(|g| g.len() > 1).collect();
    let across = multi
        .iter()
        .filter(|g| g.iter().any(|&j| split_of[j] != split_of[g[0]]))
        .count();

    let mut counts: BTreeMap<String, [usize; 3]> = dataset
        .classes
        .iter()
        .map(|c| (c.clone(), [0; 3]))
        .collect();
    let mut rows = Vec::with_capacity(ok.len());
    for (j, (i, f)) in ok.iter().enumerate() {
        let e = &dataset.entries[*i];
        // Pre-split items outside any folder split cannot occur; default to train defensively.
        let split = split_of[j].unwrap_or(Split::Train);
        if let Some(c) = counts.get_mut(&e.class) {
            c[split.index()] += 1;
        }
        rows.push(ManifestRow {
            path: e.path.clone(),
            label: e.class.clone(),
            split,
            hash: f.content_hash.clone(),
        });
    }
    Ok(SplitOutcome {
        rows,
        classes: dataset.classes.clone(),
        counts,
        clusters_kept_together: multi.len() - across,
        clusters_across_splits: across,
        excluded,
        layout: dataset.layout,
    })
}

fn place_clusters(
    assign: &[usize],
    class_of: &[usize],
    uf: &mut crate::hash::UnionFind,
    target: &[[usize; 3]],
    seed: u64,
    split_of: &mut [Option<Split>],
) {
    let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &j in assign {
        by_root.entry(uf.find(j)).or_default().push(j);
    }
    let mut clusters: Vec<Vec<usize>> = by_root.into_values().collect();
    SplitMix64::new(seed).shuffle(&mut clusters);
    // Stable: equal sizes keep their shuffled order.
    clusters.sort_by_key(|c| std::cmp::Reverse(c.len()));
    let mut have = vec![[0usize; 3]; target.len()];
    for cluster in clusters {
        let score = |s: usize| -> i64 {
            cluster
                .iter()
                .map(|&j| target[class_of[j]][s] as i64 - have[class_of[j]][s] as i64)
                .sum()
        };
        let mut best = 0;
        for s in 1..3 {
            if score(s) > score(best) {
                best = s;
            }
        }
        for &j in &cluster {
            have[class_of[j]][best] += 1;
            split_of[j] = Some(Split::ALL[best]);
        }
    }
}

/// Write the manifest atomically ([`crate::atomic`]). Paths are written relative to
/// the manifest's folder with `/` separators, so data and manifest can move together.
pub fn write_manifest(path: &Path, rows: &[ManifestRow]) -> Result<(), DataError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| DataError::Write {
        path: parent.clone(),
        cause: e,
    })?;
    let base = std::fs::canonicalize(&parent).map_err(|e| DataError::io(&parent, e))?;
    let csv_err = |e| DataError::Csv {
        path: path.to_path_buf(),
        cause: e,
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["path", "label", "split", "hash"])
        .map_err(csv_err)?;
    let mut sorted: Vec<&ManifestRow> = rows.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    for r in sorted {
        let rel = pathdiff::diff_paths(&r.path, &base).unwrap_or_else(|| r.path.clone());
        let rel = crate::scan::rel_string(Path::new(""), &rel);
        w.write_record([rel.as_str(), &r.label, r.split.as_str(), &r.hash])
            .map_err(csv_err)?;
    }
    let bytes = w.into_inner().map_err(|e| DataError::Write {
        path: path.to_path_buf(),
        cause: e.into_error(),
    })?;
    crate::atomic::write_atomic(path, &bytes).map_err(|e| DataError::Write {
        path: path.to_path_buf(),
        cause: e,
    })
}

/// Read a manifest; paths are resolved against the manifest's folder.
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestRow>, DataError> {
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let csv_err = |e| DataError::Csv {
        path: path.to_path_buf(),
        cause: e,
    };
    let mut r = csv::Reader::from_path(path).map_err(csv_err)?;
    let mut rows = Vec::new();
    for rec in r.deserialize::<ManifestRow>() {
        let mut row = rec.map_err(csv_err)?;
        row.path = base.join(&row.path);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_parse_and_normalise() {
        assert_eq!(parse_ratios("70/15/15").expect("ok"), [0.7, 0.15, 0.15]);
        let r = parse_ratios("8:1:1").expect("ok");
        assert!((r[0] - 0.8).abs() < 1e-12);
        assert!(parse_ratios("70/30").is_err());
        assert!(parse_ratios("0/50/50").is_err());
        assert!(parse_ratios("70/x/15").is_err());
        assert!(parse_ratios("70/-1/15").is_err());
    }

    #[test]
    fn rounding_rule() {
        let r = [0.7, 0.15, 0.15];
        assert_eq!(targets(100, &r), [70, 15, 15]);
        // 7.7/1.65/1.65 -> floors 7/1/1, remainders .7/.65/.65 -> train first, then val.
        assert_eq!(targets(11, &r), [8, 2, 1]);
        assert_eq!(targets(4, &r), [3, 1, 0]);
        assert_eq!(targets(7, &r), [5, 1, 1]);
        assert_eq!(targets(3, &r), [2, 1, 0]);
        assert_eq!(targets(0, &r), [0, 0, 0]);
        for n in 0..500 {
            let t = targets(n, &r);
            assert_eq!(t.iter().sum::<usize>(), n);
            for s in 0..3 {
                assert!((t[s] as f64 - n as f64 * r[s]).abs() < 1.0, "n={n} {t:?}");
            }
        }
    }
}
