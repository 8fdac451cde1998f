//! Content hashes (exact duplicates) and perceptual hashes (near duplicates).
//!
//! The perceptual hash is the classic DCT hash: the image is reduced to 32×32 grey, its 2-D
//! DCT taken, and the 8×8 lowest frequencies compared with their median, giving 64 bits
//! that survive re-encoding, resizing and small colour shifts. Two images whose hashes differ
//! in at most `t` bits are near duplicates.

use image::RgbImage;

use crate::decode::{resize_gray, to_gray};

/// Lower-case hex SHA-256 of a file, read in 1 MiB pieces (weights and models can be large):
/// the hash torchvision names carry, and that run artifacts are recorded with.
pub fn sha256_file(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex SHA-256 of bytes in memory.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex BLAKE3 of the file bytes.
pub fn content_hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

const N: usize = 32;
const K: usize = 8;

/// 64-bit DCT perceptual hash of an image.
pub fn perceptual_hash(img: &RgbImage) -> u64 {
    let grey = to_gray(img);
    let small = resize_gray(&grey, img.width(), img.height(), N as u32, N as u32);
    phash_32(&small)
}

fn dct_basis() -> &'static [[f64; N]; K] {
    static BASIS: std::sync::OnceLock<[[f64; N]; K]> = std::sync::OnceLock::new();
    BASIS.get_or_init(|| {
        let mut b = [[0.0; N]; K];
        for (u, row) in b.iter_mut().enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                *v = (std::f64::consts::PI * (2 * x + 1) as f64 * u as f64 / (2 * N) as f64).cos();
            }
        }
        b
    })
}

/// Hash of a 32×32 grey image: only the 8 lowest DCT frequencies per axis are computed.
fn phash_32(px: &[u8]) -> u64 {
    let basis = dct_basis();
    // Rows first: rows[y][u] = sum_x px[y][x] * cos(...)
    let mut rows = [[0.0f64; K]; N];
    for (y, row) in rows.iter_mut().enumerate() {
        let line = &px[y * N..(y + 1) * N];
        for (u, out) in row.iter_mut().enumerate() {
            *out = line
                .iter()
                .zip(basis[u].iter())
                .map(|(&p, &c)| p as f64 * c)
                .sum();
        }
    }
    let mut coeffs = [0.0f64; K * K];
    for v in 0..K {
        for u in 0..K {
            coeffs[v * K + u] = (0..N).map(|y| rows[y][u] * basis[v][y]).sum();
        }
    }
    // Median of the AC terms; the DC term only measures brightness.
    let mut ac: Vec<f64> = coeffs[1..].to_vec();
    ac.sort_by(f64::total_cmp);
    let median = (ac[ac.len() / 2 - 1] + ac[ac.len() / 2]) / 2.0;
    coeffs
        .iter()
        .enumerate()
        .fold(0u64, |h, (i, &c)| if c > median { h | (1 << i) } else { h })
}

pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// All pairs `(i, j)`, `i < j`, with `hamming(hashes[i], hashes[j]) <= threshold`.
///
/// Uses the pigeonhole principle: split the 64 bits into `threshold + 1` blocks; any pair
/// within the threshold agrees exactly on at least one block, so only hashes sharing a block
/// value are compared. Near-linear for real data instead of quadratic.
pub fn near_pairs(hashes: &[u64], threshold: u32) -> Vec<(usize, usize)> {
    use std::collections::HashMap;
    let blocks = (threshold as usize + 1).min(64);
    let mut bounds = Vec::with_capacity(blocks + 1);
    for b in 0..=blocks {
        bounds.push(b * 64 / blocks);
    }
    let mut pairs = Vec::new();
    for b in 0..blocks {
        let mut buckets: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, &h) in hashes.iter().enumerate() {
            buckets
                .entry(block_bits(h, &bounds, b))
                .or_default()
                .push(i);
        }
        for members in buckets.values() {
            for (a, &i) in members.iter().enumerate() {
                for &j in &members[a + 1..] {
                    if hamming(hashes[i], hashes[j]) <= threshold
                        && first_shared_block(hashes[i], hashes[j], &bounds) == b
                    {
                        pairs.push((i.min(j), i.max(j)));
                    }
                }
            }
        }
    }
    pairs.sort_unstable();
    pairs
}

/// The bits of block `k` (between `bounds[k]` and `bounds[k + 1]`) of `h`.
fn block_bits(h: u64, bounds: &[usize], k: usize) -> u64 {
    let (lo, hi) = (bounds[k], bounds[k + 1]);
    let width = hi - lo;
    let mask = if width == 64 {
        u64::MAX
    } else {
        (1u64 << width) - 1
    };
    (h >> lo) & mask
}

/// Index of the first block on which two hashes agree; reporting a pair only from that
/// block means each pair is found exactly once.
fn first_shared_block(a: u64, b: u64, bounds: &[usize]) -> usize {
    let diff = a ^ b;
    for k in 0..bounds.len() - 1 {
        if block_bits(diff, bounds, k) == 0 {
            return k;
        }
    }
    usize::MAX
}

/// Union–find over indices (with cluster sizes), for grouping duplicates into clusters.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
            size: vec![1; n],
        }
    }

    pub fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Size of the cluster holding `x`.
    pub fn size(&mut self, x: usize) -> usize {
        let r = self.find(x);
        self.size[r]
    }

    /// Merge the clusters of `a` and `b`; returns the root of the merged cluster.
    pub fn union(&mut self, a: usize, b: usize) -> usize {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return ra;
        }
        // Smaller index as root keeps cluster ids deterministic.
        let (lo, hi) = (ra.min(rb), ra.max(rb));
        self.parent[hi] = lo;
        self.size[lo] += self.size[hi];
        lo
    }

    /// Clusters of two or more members, each sorted, ordered by first member.
    pub fn groups(&mut self) -> Vec<Vec<usize>> {
        let n = self.parent.len();
        let mut by_root: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for i in 0..n {
            let r = self.find(i);
            by_root.entry(r).or_default().push(i);
        }
        by_root.into_values().filter(|g| g.len() > 1).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn pattern(seed: u64, w: u32, h: u32) -> RgbImage {
        let mut r = SplitMix64::new(seed);
        // Blocky random pattern: survives resizing, distinct per seed.
        let cells: Vec<u8> = (0..64).map(|_| (r.next_u64() & 0xFF) as u8).collect();
        RgbImage::from_fn(w, h, |x, y| {
            let c = cells[((y * 8 / h) * 8 + x * 8 / w) as usize];
            image::Rgb([c, c / 2, 255 - c])
        })
    }

    #[test]
    fn phash_is_stable_under_resize_and_brightness_but_separates_images() {
        let a = pattern(1, 200, 150);
        let a_small = crate::decode::resize_rgb(&a, 97, 73);
        let a_bright = RgbImage::from_fn(200, 150, |x, y| {
            let p = a.get_pixel(x, y);
            image::Rgb([
                p[0].saturating_add(12),
                p[1].saturating_add(12),
                p[2].saturating_add(12),
            ])
        });
        let b = pattern(2, 200, 150);
        let (ha, hs, hb, hx) = (
            perceptual_hash(&a),
            perceptual_hash(&a_small),
            perceptual_hash(&a_bright),
            perceptual_hash(&b),
        );
        assert!(hamming(ha, hs) <= 4, "resize moved {}", hamming(ha, hs));
        assert!(hamming(ha, hb) <= 4, "brightness moved {}", hamming(ha, hb));
        assert!(hamming(ha, hx) > 12, "distinct images {}", hamming(ha, hx));
    }

    #[test]
    fn near_pairs_matches_brute_force() {
        let mut r = SplitMix64::new(9);
        let mut hashes: Vec<u64> = (0..400).map(|_| r.next_u64()).collect();
        // Plant near copies at known distances.
        for i in 0..50 {
            let base = hashes[i];
            let flips = (i % 7) as u32;
            let mut h = base;
            for k in 0..flips {
                h ^= 1 << ((k * 9 + i as u32) % 64);
            }
            hashes.push(h);
        }
        for t in [0, 3, 6, 10] {
            let fast = near_pairs(&hashes, t);
            let mut brute = Vec::new();
            for i in 0..hashes.len() {
                for j in i + 1..hashes.len() {
                    if hamming(hashes[i], hashes[j]) <= t {
                        brute.push((i, j));
                    }
                }
            }
            assert_eq!(fast, brute, "threshold {t}");
        }
    }

    #[test]
    fn union_find_groups() {
        let mut uf = UnionFind::new(6);
        uf.union(4, 1);
        uf.union(1, 3);
        uf.union(5, 0);
        assert_eq!(uf.groups(), vec![vec![0, 5], vec![1, 3, 4]]);
    }
}
