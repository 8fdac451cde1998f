//! Find the images of a dataset folder and the class (and split) of each.
//!
//! Two layouts are understood:
//! - ImageFolder: `DIR/<class>/**/<image>`;
//! - pre-split: `DIR/{train,val,test}/<class>/**/<image>` (also `valid`, `validation`).
//!
//! Files that are not images are reported, not silently dropped, so a user learns that
//! `notes.txt` in a class folder was ignored. Hidden files and OS litter are skipped quietly.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::DataError;

/// File extensions graft decodes (compared case-insensitively).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp", "gif", "tif", "tiff"];

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Split::Train => 0,
            Split::Val => 1,
            Split::Test => 2,
        }
    }

    /// The split a pre-split folder name stands for.
    pub fn from_folder_name(name: &str) -> Option<Split> {
        match name.to_ascii_lowercase().as_str() {
            "train" | "training" => Some(Split::Train),
            "val" | "valid" | "validation" => Some(Split::Val),
            "test" | "testing" => Some(Split::Test),
            _ => None,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Split::from_folder_name(s).ok_or_else(|| format!("unknown split {s:?} (train, val, test)"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    ImageFolder,
    PreSplit,
}

/// One candidate image.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Path relative to the dataset root, with `/` separators.
    pub rel: String,
    /// Absolute path.
    #[serde(skip)]
    pub path: PathBuf,
    pub class: String,
    /// Set for pre-split layouts.
    pub split: Option<Split>,
}

/// A file that was found but will not be used, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    /// Class names, sorted; includes class folders with no usable image.
    pub classes: Vec<String>,
    /// Sorted by `rel`.
    pub entries: Vec<Entry>,
    /// Non-image files inside class folders.
    pub skipped: Vec<Skipped>,
}

impl Dataset {
    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.binary_search_by(|c| c.as_str().cmp(name)).ok()
    }
}

/// Whether a file name has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        .unwrap_or(false)
}

/// Files no user means as data: hidden files and desktop litter.
fn is_litter(name: &str) -> bool {
    name.starts_with('.')
        || name.eq_ignore_ascii_case("thumbs.db")
        || name.eq_ignore_ascii_case("desktop.ini")
}

fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for item in rd {
        let item = item.map_err(|e| DataError::io(dir, e))?;
        let path = item.path();
        let name = item.file_name().to_string_lossy().into_owned();
        if is_litter(&name) {
            continue;
        }
        // Follow symlinks: datasets are often assembled from links.
        if path.is_dir() {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Scan a dataset folder.
pub fn scan(dir: &Path) -> Result<Dataset, DataError> {
    if !dir.is_dir() {
        if !dir.exists() {
            return Err(DataError::io(
                dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such folder"),
            ));
        }
        return Err(DataError::NotADirectory { path: dir.into() });
    }
    let root = std::fs::canonicalize(dir).map_err(|e| DataError::io(dir, e))?;
    let top = subdirs(&root)?;
    let split_dirs: Vec<(Split, &String, &PathBuf)> = top
        .iter()
        .filter_map(|(n, p)| Split::from_folder_name(n).map(|s| (s, n, p)))
        .collect();
    // Pre-split only if split folders exist and hold class folders themselves; a dataset with
    // a class literally named "test" holding images directly stays an ImageFolder.
    let presplit = !split_dirs.is_empty()
        && split_dirs
            .iter()
            .all(|(_, _, p)| subdirs(p).map(|d| !d.is_empty()).unwrap_or(false));

    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    let mut classes = std::collections::BTreeSet::new();
    if presplit {
        for (name, _) in &top {
            if Split::from_folder_name(name).is_none() {
                skipped.push(Skipped {
                    path: format!("{name}/"),
                    reason: "folder is not train/val/test in a pre-split dataset; ignored".into(),
                });
            }
        }
        for (split, split_name, split_path) in &split_dirs {
            for (class, class_path) in subdirs(split_path)? {
                classes.insert(class.clone());
                collect_class(
                    &root,
                    &class_path,
                    &class,
                    Some(*split),
                    &mut entries,
                    &mut skipped,
                )?;
            }
            tracing::debug!(split = %split_name, "scanned split folder");
        }
    } else {
        for (class, class_path) in &top {
            classes.insert(class.clone());
            collect_class(&root, class_path, class, None, &mut entries, &mut skipped)?;
        }
    }
    if entries.is_empty() && skipped.is_empty() {
        return Err(DataError::NoImages { path: dir.into() });
    }
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Dataset {
        root,
        layout: if presplit {
            Layout::PreSplit
        } else {
            Layout::ImageFolder
        },
        classes: classes.into_iter().collect(),
        entries,
        skipped,
    })
}

pub(crate) fn rel_string(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn collect_class(
    root: &Path,
    class_dir: &Path,
    class: &str,
    split: Option<Split>,
    entries: &mut Vec<Entry>,
    skipped: &mut Vec<Skipped>,
) -> Result<(), DataError> {
    let walker = walkdir::WalkDir::new(class_dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !is_litter(&e.file_name().to_string_lossy()));
    for item in walker {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                let path = e.path().map(|p| rel_string(root, p)).unwrap_or_default();
                skipped.push(Skipped {
                    path,
                    reason: format!("cannot read: {e}"),
                });
                continue;
            }
        };
        if !item.file_type().is_file() {
            continue;
        }
        let rel = rel_string(root, item.path());
        if is_image_name(item.path()) {
            entries.push(Entry {
                rel,
                path: item.path().to_path_buf(),
                class: class.to_string(),
                split,
            });
        } else {
            let ext = item
                .path()
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_else(|| "no extension".into());
            skipped.push(Skipped {
                path: rel,
                reason: format!(
                    "not an image ({ext}); graft reads {}",
                    IMAGE_EXTENSIONS
                        .iter()
                        .map(|e| format!(".{e}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, b"x").expect("write");
    }

    #[test]
    fn image_folder_layout() {
        let t = tempfile::tempdir().expect("tempdir");
        touch(&t.path().join("cat/a.jpg"));
        touch(&t.path().join("cat/sub/b.PNG"));
        touch(&t.path().join("dog/c.webp"));
        touch(&t.path().join("dog/notes.txt"));
        touch(&t.path().join("dog/.DS_Store"));
        touch(&t.path().join("README.md"));
        std::fs::create_dir_all(t.path().join("empty")).expect("mkdir");
        let d = scan(t.path()).expect("scan");
        assert_eq!(d.layout, Layout::ImageFolder);
        assert_eq!(d.classes, vec!["cat", "dog", "empty"]);
        let rels: Vec<_> = d.entries.iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(rels, vec!["cat/a.jpg", "cat/sub/b.PNG", "dog/c.webp"]);
        assert_eq!(d.skipped.len(), 1);
        assert_eq!(d.skipped[0].path, "dog/notes.txt");
    }

    #[test]
    fn presplit_layout() {
        let t = tempfile::tempdir().expect("tempdir");
        touch(&t.path().join("train/cat/a.jpg"));
        touch(&t.path().join("valid/cat/b.jpg"));
        touch(&t.path().join("test/dog/c.jpg"));
        let d = scan(t.path()).expect("scan");
        assert_eq!(d.layout, Layout::PreSplit);
        assert_eq!(d.classes, vec!["cat", "dog"]);
        let splits: Vec<_> = d.entries.iter().map(|e| e.split).collect();
        assert_eq!(
            splits,
            vec![Some(Split::Test), Some(Split::Train), Some(Split::Val)]
        );
    }

    #[test]
    fn class_named_test_with_images_is_not_presplit() {
        let t = tempfile::tempdir().expect("tempdir");
        touch(&t.path().join("test/a.jpg"));
        touch(&t.path().join("other/b.jpg"));
        let d = scan(t.path()).expect("scan");
        assert_eq!(d.layout, Layout::ImageFolder);
        assert_eq!(d.classes, vec!["other", "test"]);
    }

    #[test]
    fn missing_and_empty_folders_are_clear_errors() {
        let t = tempfile::tempdir().expect("tempdir");
        let err = scan(&t.path().join("nope")).expect_err("missing");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = scan(t.path()).expect_err("empty");
        assert!(err.to_string().contains("class folders"), "{err}");
    }
}
