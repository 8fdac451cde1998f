//! Exact duplicates (same bytes) and near duplicates (perceptual hashes within a Hamming
//! threshold), grouped into clusters. The split uses the same clusters so that no cluster
//! straddles train and test.
//!
//! Near-duplicate links are merged closest first (Kruskal order), and a merge that would grow
//! a cluster past [`MAX_CLUSTER`] images is refused. Without the cap, chains of merely similar
//! images fuse into one giant "cluster" (on Fashion-MNIST at 4 bits: 11,000 shoes), which
//! would then have to sit in a single split. Exact copies are always kept together.

use std::collections::HashMap;

use crate::hash::{hamming, near_pairs, UnionFind};

/// Largest near-duplicate cluster: generous for burst shots of one subject, small enough that
/// a cluster cannot swallow a class.
pub const MAX_CLUSTER: usize = 50;

#[derive(Debug, Clone)]
pub struct Duplicates {
    /// Groups of indices with identical content, each sorted; groups ordered by first member.
    pub exact: Vec<Vec<usize>>,
    /// Clusters holding at least two distinct contents (pure byte copies are in `exact`
    /// only), with the largest Hamming distance among the links that formed them.
    pub near: Vec<(Vec<usize>, u32)>,
    /// Every index's cluster: exact copies and near duplicates together.
    pub clusters: UnionFind,
    /// Near-duplicate links left unmerged because of the size cap.
    pub unmerged_links: usize,
}

/// `items[i]` = (content hash, perceptual hash) of image `i`.
pub fn find_duplicates(items: &[(&str, u64)], threshold: u32) -> Duplicates {
    let n = items.len();
    let mut clusters = UnionFind::new(n);
    // One representative per distinct content.
    let mut rep_of_content: HashMap<&str, usize> = HashMap::new();
    let mut reps = Vec::new();
    for (i, (content, _)) in items.iter().enumerate() {
        let r = *rep_of_content.entry(content).or_insert_with(|| {
            reps.push(i);
            reps.len() - 1
        });
        clusters.union(reps[r], i);
    }
    let exact = clusters.clone().groups();

    let rep_hashes: Vec<u64> = reps.iter().map(|&i| items[i].1).collect();
    let mut links: Vec<(u32, usize, usize)> = near_pairs(&rep_hashes, threshold)
        .into_iter()
        .map(|(a, b)| (hamming(rep_hashes[a], rep_hashes[b]), reps[a], reps[b]))
        .collect();
    links.sort_unstable();
    let mut max_dist: HashMap<usize, u32> = HashMap::new();
    let mut unmerged_links = 0;
    for (d, a, b) in links {
        let (ra, rb) = (clusters.find(a), clusters.find(b));
        if ra == rb {
            continue;
        }
        if clusters.size(ra) + clusters.size(rb) > MAX_CLUSTER {
            unmerged_links += 1;
            continue;
        }
        let da = max_dist.remove(&ra).unwrap_or(0);
        let db = max_dist.remove(&rb).unwrap_or(0);
        let root = clusters.union(ra, rb);
        max_dist.insert(root, d.max(da).max(db));
    }
    let mut near = Vec::new();
    for group in clusters.groups() {
        let distinct = group.iter().any(|&i| items[i].0 != items[group[0]].0);
        if distinct {
            let root = clusters.find(group[0]);
            near.push((group, max_dist.get(&root).copied().unwrap_or(0)));
        }
    }
    Duplicates {
        exact,
        near,
        clusters,
        unmerged_links,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_near_groups() {
        let items = vec![
            ("a", 0b0000u64),
            ("b", 0b0001), // near a (1 bit)
            ("a", 0b0000), // exact copy of 0
            ("c", u64::MAX),
            ("d", 0xF0F0_F0F0_0000_0000),
        ];
        let mut d = find_duplicates(&items, 2);
        assert_eq!(d.exact, vec![vec![0, 2]]);
        assert_eq!(d.near, vec![(vec![0, 1, 2], 1)]);
        assert_eq!(d.clusters.groups(), vec![vec![0, 1, 2]]);
        assert_eq!(d.unmerged_links, 0);
        let d0 = find_duplicates(&items, 0);
        assert!(d0.near.is_empty());
    }

    #[test]
    fn chains_stop_at_the_cap_and_closest_links_win() {
        // A chain 0-1-2-…: each hash one bit from the next, so everything links at 1 bit.
        let hashes: Vec<u64> = (0..(MAX_CLUSTER as u64 + 20))
            .map(|i| (1u64 << (i % 64)) - 1)
            .collect();
        let names: Vec<String> = (0..hashes.len()).map(|i| i.to_string()).collect();
        let items: Vec<(&str, u64)> = names.iter().map(String::as_str).zip(hashes).collect();
        let mut d = find_duplicates(&items, 1);
        let groups = d.clusters.groups();
        assert!(groups.iter().all(|g| g.len() <= MAX_CLUSTER));
        assert!(d.unmerged_links > 0);
    }
}
