//! Exact duplicates (same bytes) and near duplicates (perceptual hashes within a Hamming
//! threshold), grouped into clusters. The split uses the same clusters so that no cluster
//! straddles train and test.

use std::collections::HashMap;

use crate::hash::{hamming, near_pairs, UnionFind};

#[derive(Debug, Clone)]
pub struct Duplicates {
    /// Groups of indices with identical content, each sorted; groups ordered by first member.
    pub exact: Vec<Vec<usize>>,
    /// Groups of indices connected by perceptual similarity and holding at least two distinct
    /// contents (pure byte copies are in `exact` only), with the largest pairwise distance
    /// seen on a linking pair.
    pub near: Vec<(Vec<usize>, u32)>,
    /// Every index's cluster: exact copies and near duplicates together.
    pub clusters: UnionFind,
}

/// `items[i]` = (content hash, perceptual hash) of image `i`.
pub fn find_duplicates(items: &[(&str, u64)], threshold: u32) -> Duplicates {
    let n = items.len();
    let mut clusters = UnionFind::new(n);
    // One representative per distinct content.
    let mut rep_of_content: HashMap<&str, usize> = HashMap::new();
    let mut reps = Vec::new();
    let mut rep_index = vec![0usize; n];
    for (i, (content, _)) in items.iter().enumerate() {
        let r = *rep_of_content.entry(content).or_insert_with(|| {
            reps.push(i);
            reps.len() - 1
        });
        rep_index[i] = r;
        clusters.union(reps[r], i);
    }
    let exact = clusters.clone().groups();

    let rep_hashes: Vec<u64> = reps.iter().map(|&i| items[i].1).collect();
    let pairs = near_pairs(&rep_hashes, threshold);
    let mut near_uf = UnionFind::new(reps.len());
    let mut max_dist: HashMap<usize, u32> = HashMap::new();
    for &(a, b) in &pairs {
        near_uf.union(a, b);
        clusters.union(reps[a], reps[b]);
    }
    for &(a, b) in &pairs {
        let root = near_uf.find(a);
        let d = hamming(rep_hashes[a], rep_hashes[b]);
        let e = max_dist.entry(root).or_insert(0);
        *e = (*e).max(d);
    }
    let mut near = Vec::new();
    for group in near_uf.groups() {
        let root = near_uf.find(group[0]);
        let mut members: Vec<usize> = (0..n)
            .filter(|&i| near_uf.find(rep_index[i]) == root)
            .collect();
        members.sort_unstable();
        near.push((members, max_dist.get(&root).copied().unwrap_or(0)));
    }
    near.sort_by_key(|(m, _)| m[0]);
    Duplicates {
        exact,
        near,
        clusters,
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
        let d0 = find_duplicates(&items, 0);
        assert!(d0.near.is_empty());
    }
}
