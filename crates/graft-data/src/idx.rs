//! Import of MNIST-format idx files (as used by MNIST and Fashion-MNIST) into an ImageFolder of
//! greyscale PNGs: `OUT/<class>/<index:05>.png`, where `index` is the image's position in the file.
//!
//! Only the two layouts those datasets use are accepted: unsigned-byte images with three dimensions
//! (count, rows, cols; magic `0x00000803`) and unsigned-byte labels with one dimension (magic
//! `0x00000801`). Files may be raw or gzip-compressed; gzip is recognised by its magic bytes, not by
//! the file name.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use rayon::prelude::*;
use serde::Serialize;

/// Magic number of an idx file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an idx file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Names accepted by [`preset_classes`].
pub const PRESETS: &[&str] = &["fashion-mnist", "mnist"];

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Everything that can go wrong while reading idx files or writing the PNGs. Each message names the
/// file involved and says how to fix the problem.
// Underlying I/O and codec errors are part of the message, not `#[source]`, so that error chains
// printed with `{:#}` do not repeat them.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error(
        "{}: not a valid gzip stream ({error}); the file is probably truncated or corrupt, \
         download it again",
        path.display()
    )]
    Gzip { path: PathBuf, error: io::Error },
    #[error(
        "{}: not an idx {kind} file (magic 0x{found:08x}); expected 0x{expected:08x}{hint}",
        path.display()
    )]
    BadMagic {
        path: PathBuf,
        kind: &'static str,
        found: u32,
        expected: u32,
        hint: &'static str,
    },
    #[error(
        "{}: truncated: {what} needs {expected} bytes but the file holds only {found}; \
         the download is incomplete, fetch the file again",
        path.display()
    )]
    Truncated {
        path: PathBuf,
        what: &'static str,
        expected: u64,
        found: u64,
    },
    #[error("{}: unusable idx header: {detail}", path.display())]
    BadHeader { path: PathBuf, detail: String },
    #[error(
        "{} holds {images} images but {} holds {labels} labels; use the label file that belongs \
         to this image file (e.g. train-images with train-labels, t10k-images with t10k-labels)",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        images_path: PathBuf,
        labels_path: PathBuf,
        images: usize,
        labels: usize,
    },
    #[error(
        "{}: label {label} (item {index}) has no class name: only {names} class names were given; \
         give at least {} names, in label order",
        path.display(),
        *label as usize + 1
    )]
    LabelOutOfRange {
        path: PathBuf,
        index: usize,
        label: u8,
        names: usize,
    },
    #[error("invalid class name {name:?}: {reason}; class names become folder names")]
    BadClassName { name: String, reason: &'static str },
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: io::Error },
    #[error("cannot encode {} as PNG: {error}", path.display())]
    Encode {
        path: PathBuf,
        error: image::ImageError,
    },
}

/// What [`import_idx`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Number of PNG files written.
    pub images: usize,
    /// Images written per class, in class (label) order; classes with no image are listed with 0.
    pub per_class: Vec<(String, usize)>,
    pub rows: usize,
    pub cols: usize,
}

/// Decoded idx image file: `count` images of `rows × cols` bytes, row-major, back to back.
#[derive(Debug, Clone)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// Pixels of image `i` (row-major), or `None` past the end.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let size = self.rows * self.cols;
        let start = i.checked_mul(size)?;
        self.pixels.get(start..start.checked_add(size)?)
    }
}

/// Class names of a known dataset, as folder-safe names in label order.
pub fn preset_classes(name: &str) -> Option<Vec<String>> {
    let names: Vec<String> = match name.to_ascii_lowercase().as_str() {
        "fashion-mnist" => [
            "tshirt_top",
            "trouser",
            "pullover",
            "dress",
            "coat",
            "sandal",
            "shirt",
            "sneaker",
            "bag",
            "ankle_boot",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        "mnist" => (0..10).map(|d| d.to_string()).collect(),
        _ => return None,
    };
    Some(names)
}

/// Reads a whole file, transparently decompressing gzip.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, IdxError> {
    let raw = fs::read(path).map_err(|error| IdxError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    // Multi-member aware, so files concatenated by other gzip tools also decode fully.
    let mut out = Vec::with_capacity(raw.len().saturating_mul(2));
    flate2::read::MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|error| IdxError::Gzip {
            path: path.to_path_buf(),
            error,
        })?;
    Ok(out)
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Checks magic and header length, returning the dimensions and the offset of the data.
fn parse_header(
    path: &Path,
    bytes: &[u8],
    kind: &'static str,
    expected: u32,
) -> Result<(Vec<usize>, usize), IdxError> {
    let truncated_header = |need: usize| IdxError::Truncated {
        path: path.to_path_buf(),
        what: "the idx header",
        expected: need as u64,
        found: bytes.len() as u64,
    };
    let magic = be_u32(bytes, 0).ok_or_else(|| truncated_header(4))?;
    if magic != expected {
        let other = if expected == IMAGES_MAGIC {
            LABELS_MAGIC
        } else {
            IMAGES_MAGIC
        };
        let hint = if magic == other {
            " (it looks like the other kind of idx file: are --images and --labels swapped?)"
        } else {
            " (pass an MNIST-format idx file, raw or .gz)"
        };
        return Err(IdxError::BadMagic {
            path: path.to_path_buf(),
            kind,
            found: magic,
            expected,
            hint,
        });
    }
    // The low byte of the magic is the number of dimensions.
    let ndims = (expected & 0xff) as usize;
    let data_start = 4 + 4 * ndims;
    let dims = (0..ndims)
        .map(|d| be_u32(bytes, 4 + 4 * d).map(|v| v as usize))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| truncated_header(data_start))?;
    Ok((dims, data_start))
}

/// Checks that `bytes` holds `len` data bytes after the header, warning about (and ignoring) any
/// trailing bytes.
fn check_data_len(
    path: &Path,
    bytes: &[u8],
    data_start: usize,
    len: usize,
    what: &'static str,
) -> Result<(), IdxError> {
    let need = data_start
        .checked_add(len)
        .ok_or_else(|| IdxError::BadHeader {
            path: path.to_path_buf(),
            detail: "the declared size overflows; the header is corrupt".into(),
        })?;
    if bytes.len() < need {
        return Err(IdxError::Truncated {
            path: path.to_path_buf(),
            what,
            expected: need as u64,
            found: bytes.len() as u64,
        });
    }
    if bytes.len() > need {
        tracing::warn!(
            "{}: {} bytes after the declared data are ignored",
            path.display(),
            bytes.len() - need
        );
    }
    Ok(())
}

/// Reads an idx image file (magic `0x00000803`), raw or gzip.
pub fn read_images(path: &Path) -> Result<IdxImages, IdxError> {
    let mut bytes = read_maybe_gz(path)?;
    let (dims, data_start) = parse_header(path, &bytes, "image", IMAGES_MAGIC)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows == 0 || cols == 0 {
        return Err(IdxError::BadHeader {
            path: path.to_path_buf(),
            detail: format!("images are {rows}×{cols} pixels; both sizes must be at least 1"),
        });
    }
    let len = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| IdxError::BadHeader {
            path: path.to_path_buf(),
            detail: format!(
                "{count} images of {rows}×{cols} pixels is too large; the header is corrupt"
            ),
        })?;
    check_data_len(path, &bytes, data_start, len, "the declared image data")?;
    bytes.truncate(data_start + len);
    bytes.drain(..data_start);
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes,
    })
}

/// Reads an idx label file (magic `0x00000801`), raw or gzip.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, IdxError> {
    let mut bytes = read_maybe_gz(path)?;
    let (dims, data_start) = parse_header(path, &bytes, "label", LABELS_MAGIC)?;
    let count = dims[0];
    check_data_len(path, &bytes, data_start, count, "the declared labels")?;
    bytes.truncate(data_start + count);
    bytes.drain(..data_start);
    Ok(bytes)
}

/// Rejects names that would escape the output folder or collide with each other.
fn check_class_names(classes: &[String]) -> Result<(), IdxError> {
    for (i, name) in classes.iter().enumerate() {
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name == "." || name == ".." {
            Some("it is a relative folder reference")
        } else if name.contains(['/', '\\', '\0']) {
            Some("it contains a path separator or NUL")
        } else if name.trim() != name {
            Some("it has leading or trailing whitespace")
        } else if classes[..i].contains(name) {
            Some("it is given twice")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(IdxError::BadClassName {
                name: name.clone(),
                reason,
            });
        }
    }
    Ok(())
}

fn encode_png(path: &Path, pixels: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>, IdxError> {
    let bad_size = || IdxError::BadHeader {
        path: path.to_path_buf(),
        detail: format!("{rows}×{cols} is too large for a PNG"),
    };
    let width = u32::try_from(cols).map_err(|_| bad_size())?;
    let height = u32::try_from(rows).map_err(|_| bad_size())?;
    let mut png = Vec::with_capacity(64 + pixels.len());
    // Best compression costs little at MNIST sizes and keeps checked-in samples small.
    PngEncoder::new_with_quality(&mut png, CompressionType::Best, FilterType::Adaptive)
        .write_image(pixels, width, height, ExtendedColorType::L8)
        .map_err(|error| IdxError::Encode {
            path: path.to_path_buf(),
            error,
        })?;
    Ok(png)
}

/// A killed import leaves either no PNG or a whole one, never a truncated file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), IdxError> {
    crate::atomic::write_atomic(path, bytes).map_err(|error| IdxError::Write {
        path: path.to_path_buf(),
        error,
    })
}

/// Converts an idx image file and its label file into `out_dir/<class>/<index:05>.png` (8-bit
/// greyscale, pixel-exact), in parallel. `classes[label]` names the folder of each image; `limit`
/// imports only the first N images. `on_progress(1)` is called after each PNG is written.
///
/// Existing files of the same name are replaced, so re-running an interrupted import is safe.
pub fn import_idx(
    images: &Path,
    labels: &Path,
    out_dir: &Path,
    classes: &[String],
    limit: Option<usize>,
    on_progress: &(dyn Fn(u64) + Sync),
) -> Result<ImportSummary, IdxError> {
    check_class_names(classes)?;
    let label_values = read_labels(labels)?;
    let imgs = read_images(images)?;
    if imgs.count != label_values.len() {
        return Err(IdxError::CountMismatch {
            images_path: images.to_path_buf(),
            labels_path: labels.to_path_buf(),
            images: imgs.count,
            labels: label_values.len(),
        });
    }
    let n = limit.map_or(imgs.count, |l| l.min(imgs.count));
    let label_values = &label_values[..n];

    let mut per_class = vec![0usize; classes.len()];
    for (index, &label) in label_values.iter().enumerate() {
        let count = per_class
            .get_mut(label as usize)
            .ok_or_else(|| IdxError::LabelOutOfRange {
                path: labels.to_path_buf(),
                index,
                label,
                names: classes.len(),
            })?;
        *count += 1;
    }

    // Only classes that receive images get a folder: an empty class folder would look like a
    // class with no examples to later stages.
    let class_dirs: Vec<PathBuf> = classes.iter().map(|c| out_dir.join(c)).collect();
    for (dir, &count) in class_dirs.iter().zip(&per_class) {
        if count > 0 {
            fs::create_dir_all(dir).map_err(|error| IdxError::Write {
                path: dir.clone(),
                error,
            })?;
        }
    }

    label_values
        .par_iter()
        .enumerate()
        .try_for_each(|(index, &label)| {
            let file_name = format!("{index:05}.png");
            let path = class_dirs[label as usize].join(&file_name);
            let pixels = imgs.image(index).ok_or_else(|| IdxError::Truncated {
                path: images.to_path_buf(),
                what: "the declared image data",
                expected: imgs.count as u64,
                found: index as u64,
            })?;
            let png = encode_png(&path, pixels, imgs.rows, imgs.cols)?;
            write_atomically(&path, &png)?;
            on_progress(1);
            Ok(())
        })?;

    Ok(ImportSummary {
        images: n,
        per_class: classes.iter().cloned().zip(per_class).collect(),
        rows: imgs.rows,
        cols: imgs.cols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IMAGES_MAGIC, count, rows, cols] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(pixels);
        b
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
        b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        b.extend_from_slice(labels);
        b
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).expect("write to Vec");
        e.finish().expect("finish gzip to Vec")
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    /// 5 images of 3×4 with distinct pixel values, labels 0,1,2,1,0.
    fn sample() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..5 * 12).map(|i| (i * 37 % 256) as u8).collect();
        let labels = vec![0u8, 1, 2, 1, 0];
        (idx_images(5, 3, 4, &pixels), idx_labels(&labels), pixels)
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, bytes).expect("write test file");
        p
    }

    fn no_progress() -> impl Fn(u64) + Sync {
        |_| {}
    }

    fn check_round_trip(compress: bool) -> TestResult {
        let dir = tempfile::tempdir()?;
        let (img, lab, pixels) = sample();
        let (img, lab) = if compress {
            (gz(&img), gz(&lab))
        } else {
            (img, lab)
        };
        // Names without .gz: detection must go by content.
        let ip = write(dir.path(), "images", &img);
        let lp = write(dir.path(), "labels", &lab);
        let out = dir.path().join("out");
        let done = AtomicU64::new(0);
        let progress = |k: u64| {
            done.fetch_add(k, Ordering::Relaxed);
        };
        let s = import_idx(&ip, &lp, &out, &names(3), None, &progress)?;
        assert_eq!(s.images, 5);
        assert_eq!((s.rows, s.cols), (3, 4));
        assert_eq!(
            s.per_class,
            vec![("c0".into(), 2), ("c1".into(), 2), ("c2".into(), 1)]
        );
        assert_eq!(done.load(Ordering::Relaxed), 5);
        for (i, class) in ["c0", "c1", "c2", "c1", "c0"].iter().enumerate() {
            let png = image::open(out.join(class).join(format!("{i:05}.png")))?;
            let grey = png.as_luma8().ok_or("not an 8-bit grey PNG")?;
            assert_eq!(grey.dimensions(), (4, 3));
            assert_eq!(grey.as_raw().as_slice(), &pixels[i * 12..(i + 1) * 12]);
        }
        // No temporary files left behind.
        for class in ["c0", "c1", "c2"] {
            assert!(fs::read_dir(out.join(class))?
                .filter_map(Result::ok)
                .all(|e| !e.file_name().to_string_lossy().contains(".tmp")));
        }
        Ok(())
    }

    #[test]
    fn idx_round_trip_raw() -> TestResult {
        check_round_trip(false)
    }

    #[test]
    fn idx_round_trip_gzip() -> TestResult {
        check_round_trip(true)
    }

    #[test]
    fn idx_limit_and_rerun_overwrites() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (img, lab, pixels) = sample();
        let ip = write(dir.path(), "i.gz", &gz(&img));
        let lp = write(dir.path(), "l", &lab);
        let out = dir.path().join("out");
        let s = import_idx(&ip, &lp, &out, &names(4), Some(2), &no_progress())?;
        assert_eq!(s.images, 2);
        assert_eq!(
            s.per_class,
            vec![
                ("c0".into(), 1),
                ("c1".into(), 1),
                ("c2".into(), 0),
                ("c3".into(), 0)
            ]
        );
        assert!(!out.join("c2").exists());
        // A half-written file from an earlier killed run is replaced.
        fs::write(out.join("c0/00000.png"), b"garbage")?;
        import_idx(&ip, &lp, &out, &names(4), None, &no_progress())?;
        let png = image::open(out.join("c0/00000.png"))?;
        assert_eq!(png.as_luma8().ok_or("not L8")?.as_raw(), &pixels[..12]);
        assert!(out.join("c2/00002.png").exists());
        Ok(())
    }

    #[test]
    fn idx_bad_magic_names_file_and_hints_swap() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (img, lab, _) = sample();
        let ip = write(dir.path(), "images.idx", &img);
        let lp = write(dir.path(), "labels.idx", &lab);
        let out = dir.path().join("out");
        let err = import_idx(&lp, &ip, &out, &names(3), None, &no_progress())
            .expect_err("swapped files must fail");
        let msg = err.to_string();
        assert!(matches!(err, IdxError::BadMagic { .. }), "{msg}");
        assert!(msg.contains("images.idx"), "{msg}");
        assert!(msg.contains("magic 0x00000803"), "{msg}");
        assert!(msg.contains("swapped"), "{msg}");

        let junk = write(dir.path(), "junk.bin", b"\x89PNG\r\n\x1a\n........");
        let msg = read_images(&junk).expect_err("junk").to_string();
        assert!(
            msg.contains("junk.bin: not an idx image file (magic 0x89504e47); expected 0x00000803"),
            "{msg}"
        );
        assert!(!out.exists());
        Ok(())
    }

    #[test]
    fn idx_truncated_files() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (img, lab, _) = sample();
        let short = write(dir.path(), "short-images", &img[..img.len() - 1]);
        let err = read_images(&short).expect_err("short data");
        let msg = err.to_string();
        assert!(matches!(err, IdxError::Truncated { .. }), "{msg}");
        assert!(
            msg.contains("short-images") && msg.contains("truncated"),
            "{msg}"
        );

        let header = write(dir.path(), "header-only", &lab[..6]);
        let msg = read_labels(&header).expect_err("short header").to_string();
        assert!(
            msg.contains("header-only") && msg.contains("header"),
            "{msg}"
        );

        let empty = write(dir.path(), "empty", b"");
        assert!(matches!(
            read_labels(&empty),
            Err(IdxError::Truncated { .. })
        ));

        let gzipped = gz(&img);
        let cut = write(dir.path(), "cut.gz", &gzipped[..gzipped.len() / 2]);
        let err = read_images(&cut).expect_err("cut gzip");
        let msg = err.to_string();
        assert!(matches!(err, IdxError::Gzip { .. }), "{msg}");
        assert!(msg.contains("cut.gz"), "{msg}");
        Ok(())
    }

    #[test]
    fn idx_count_mismatch_and_label_range() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (img, _, _) = sample();
        let ip = write(dir.path(), "imgs", &img);
        let lp4 = write(dir.path(), "four-labels", &idx_labels(&[0, 1, 2, 1]));
        let out = dir.path().join("out");
        let msg = import_idx(&ip, &lp4, &out, &names(3), None, &no_progress())
            .expect_err("mismatch")
            .to_string();
        assert!(
            msg.contains("imgs holds 5 images") && msg.contains("four-labels holds 4 labels"),
            "{msg}"
        );

        let lp = write(dir.path(), "labels", &idx_labels(&[0, 1, 2, 9, 0]));
        let err = import_idx(&ip, &lp, &out, &names(3), None, &no_progress())
            .expect_err("label 9 with 3 names");
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                IdxError::LabelOutOfRange {
                    index: 3,
                    label: 9,
                    names: 3,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(
            msg.contains("labels") && msg.contains("at least 10 names"),
            "{msg}"
        );
        // Checked before anything is written.
        assert!(!out.exists());
        // Out-of-range labels past the limit do not matter.
        let s = import_idx(&ip, &lp, &out, &names(3), Some(3), &no_progress())?;
        assert_eq!(s.images, 3);
        Ok(())
    }

    #[test]
    fn idx_missing_file_and_bad_class_names() -> TestResult {
        let dir = tempfile::tempdir()?;
        let missing = dir.path().join("nope.gz");
        let msg = read_labels(&missing).expect_err("missing").to_string();
        assert!(
            msg.contains("cannot read") && msg.contains("nope.gz"),
            "{msg}"
        );

        let (img, lab, _) = sample();
        let ip = write(dir.path(), "i", &img);
        let lp = write(dir.path(), "l", &lab);
        for bad in [
            vec!["a", "../b", "c"],
            vec!["a", "a", "c"],
            vec!["", "b", "c"],
            vec!["..", "b", "c"],
        ] {
            let bad: Vec<String> = bad.into_iter().map(String::from).collect();
            let err = import_idx(&ip, &lp, &dir.path().join("o"), &bad, None, &no_progress());
            assert!(
                matches!(err, Err(IdxError::BadClassName { .. })),
                "{bad:?}: {err:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn idx_zero_sized_images_rejected() -> TestResult {
        let dir = tempfile::tempdir()?;
        let p = write(dir.path(), "zero", &idx_images(3, 0, 28, &[]));
        assert!(matches!(read_images(&p), Err(IdxError::BadHeader { .. })));
        // Huge declared sizes must not overflow or allocate.
        let p = write(
            dir.path(),
            "huge",
            &idx_images(u32::MAX, u32::MAX, u32::MAX, &[1, 2, 3]),
        );
        assert!(read_images(&p).is_err());
        Ok(())
    }

    #[test]
    fn idx_presets() {
        let fm = preset_classes("fashion-mnist").expect("fashion-mnist preset");
        assert_eq!(fm.len(), 10);
        assert_eq!(fm[0], "tshirt_top");
        assert_eq!(fm[9], "ankle_boot");
        assert_eq!(
            preset_classes("mnist"),
            Some((0..10).map(|d| d.to_string()).collect())
        );
        assert!(preset_classes("cifar10").is_none());
        for p in PRESETS {
            assert!(preset_classes(p).is_some());
        }
    }
}
