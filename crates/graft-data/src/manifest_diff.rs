//! What changed between two split manifests: images added and removed, relabelled, moved to
//! another split, renamed (same bytes, new path) or replaced (same path, new bytes). An image
//! is matched by its path first, then by its content hash, so a renamed file is not reported
//! as one removal and one addition.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::scan::Split;
use crate::split::ManifestRow;

/// One image of a manifest, as the diff reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    pub path: PathBuf,
    pub label: String,
    pub split: Split,
}

/// An image in both manifests whose label, split, path or bytes differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub before: Image,
    pub after: Image,
    /// The file's bytes differ (same path, another hash).
    pub replaced: bool,
}

impl Change {
    pub fn relabelled(&self) -> bool {
        self.before.label != self.after.label
    }
    pub fn resplit(&self) -> bool {
        self.before.split != self.after.split
    }
    pub fn moved(&self) -> bool {
        self.before.path != self.after.path
    }
}

/// Two manifests compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ManifestDiff {
    pub added: Vec<Image>,
    pub removed: Vec<Image>,
    /// Images in both whose label, split, path or bytes changed.
    pub changed: Vec<Change>,
    /// Images identical in both.
    pub unchanged: usize,
    /// Per class: images before and after.
    pub classes: BTreeMap<String, [usize; 2]>,
}

impl ManifestDiff {
    pub fn relabelled(&self) -> impl Iterator<Item = &Change> {
        self.changed.iter().filter(|c| c.relabelled())
    }
    pub fn resplit(&self) -> impl Iterator<Item = &Change> {
        self.changed.iter().filter(|c| c.resplit())
    }
    pub fn moved(&self) -> impl Iterator<Item = &Change> {
        self.changed.iter().filter(|c| c.moved())
    }
    pub fn replaced(&self) -> impl Iterator<Item = &Change> {
        self.changed.iter().filter(|c| c.replaced)
    }
    /// The manifests describe the same images with the same labels and splits.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// `p` with `.` and `..` folded away (manifests in different folders name the same file by
/// different relative paths).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn image(r: &ManifestRow) -> Image {
    Image {
        path: lexical(&r.path),
        label: r.label.clone(),
        split: r.split,
    }
}

/// Compare manifest `before` with `after` (rows as [`crate::split::read_manifest`] gives them).
pub fn diff(before: &[ManifestRow], after: &[ManifestRow]) -> ManifestDiff {
    let mut out = ManifestDiff::default();
    for r in before {
        out.classes.entry(r.label.clone()).or_default()[0] += 1;
    }
    for r in after {
        out.classes.entry(r.label.clone()).or_default()[1] += 1;
    }
    let by_path: HashMap<PathBuf, usize> = after
        .iter()
        .enumerate()
        .map(|(i, r)| (lexical(&r.path), i))
        .collect();
    let mut matched = vec![false; after.len()];
    let mut left = Vec::new();
    let record = |out: &mut ManifestDiff, a: &ManifestRow, b: &ManifestRow| {
        let change = Change {
            before: image(a),
            after: image(b),
            replaced: a.hash != b.hash,
        };
        if change.replaced || change.relabelled() || change.resplit() || change.moved() {
            out.changed.push(change);
        } else {
            out.unchanged += 1;
        }
    };
    // Same path first.
    for a in before {
        match by_path.get(&lexical(&a.path)) {
            Some(&i) if !matched[i] => {
                matched[i] = true;
                record(&mut out, a, &after[i]);
            }
            _ => left.push(a),
        }
    }
    // Then the same bytes under another path.
    let mut by_hash: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in after.iter().enumerate().filter(|(i, _)| !matched[*i]) {
        by_hash.entry(r.hash.as_str()).or_default().push(i);
    }
    for a in left {
        match by_hash.get_mut(a.hash.as_str()).and_then(Vec::pop) {
            Some(i) => {
                matched[i] = true;
                record(&mut out, a, &after[i]);
            }
            None => out.removed.push(image(a)),
        }
    }
    out.added = after
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(r, _)| image(r))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, label: &str, split: Split, hash: &str) -> ManifestRow {
        ManifestRow {
            path: PathBuf::from(path),
            label: label.into(),
            split,
            hash: hash.into(),
        }
    }

    #[test]
    fn every_kind_of_change_is_named_once() {
        use Split::{Test, Train, Val};
        let before = vec![
            row("/d/cat/1.jpg", "cat", Train, "h1"),
            row("/d/cat/2.jpg", "cat", Train, "h2"),
            row("/d/dog/3.jpg", "dog", Val, "h3"),
            row("/d/dog/4.jpg", "dog", Test, "h4"),
            row("/d/dog/5.jpg", "dog", Train, "h5"),
            row("/d/dog/6.jpg", "dog", Train, "h6"),
        ];
        let after = vec![
            row("/d/cat/1.jpg", "cat", Train, "h1"),
            // Relabelled.
            row("/d/cat/../cat/2.jpg", "dog", Train, "h2"),
            // Moved to test.
            row("/d/dog/3.jpg", "dog", Test, "h3"),
            // Renamed.
            row("/d/dog/4-renamed.jpg", "dog", Test, "h4"),
            // Replaced bytes.
            row("/d/dog/5.jpg", "dog", Train, "h5b"),
            // 6 removed; 7 added.
            row("/d/cat/7.jpg", "cat", Val, "h7"),
        ];
        let d = diff(&before, &after);
        assert_eq!(d.unchanged, 1);
        assert_eq!(d.relabelled().count(), 1);
        assert_eq!(
            d.relabelled().next().map(|c| c.after.label.as_str()),
            Some("dog")
        );
        assert_eq!(d.resplit().count(), 1);
        assert_eq!(d.moved().count(), 1);
        assert_eq!(d.replaced().count(), 1);
        assert_eq!(d.removed.len(), 1);
        assert_eq!(d.removed[0].path, PathBuf::from("/d/dog/6.jpg"));
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.added[0].path, PathBuf::from("/d/cat/7.jpg"));
        assert_eq!(d.classes["cat"], [2, 2]);
        assert_eq!(d.classes["dog"], [4, 4]);
        assert!(diff(&before, &before).is_empty());
    }
}
