//! End-to-end tests of `graft data import-idx` through the real binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Small deterministic generator (xorshift64*) so failures reproduce without a rand dependency.
struct Rng(u64);

impl Rng {
    fn next_u8(&mut self) -> u8 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
    }
}

struct Data {
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

fn random_data(seed: u64, count: usize, rows: usize, cols: usize, classes: u8) -> Data {
    let mut rng = Rng(seed);
    let pixels = (0..count * rows * cols).map(|_| rng.next_u8()).collect();
    let labels = (0..count).map(|_| rng.next_u8() % classes).collect();
    Data {
        rows,
        cols,
        pixels,
        labels,
    }
}

fn images_idx(d: &Data) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [0x0803, d.labels.len() as u32, d.rows as u32, d.cols as u32] {
        b.extend_from_slice(&u32::to_be_bytes(v));
    }
    b.extend_from_slice(&d.pixels);
    b
}

fn labels_idx(d: &Data) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&0x0801u32.to_be_bytes());
    b.extend_from_slice(&(d.labels.len() as u32).to_be_bytes());
    b.extend_from_slice(&d.labels);
    b
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes)?;
    e.finish()
}

fn graft(args: &[&std::ffi::OsStr]) -> Result<Output, std::io::Error> {
    Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .output()
}

fn import(images: &Path, labels: &Path, out: &Path, extra: &[&str]) -> std::io::Result<Output> {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "data".as_ref(),
        "import-idx".as_ref(),
        "--images".as_ref(),
        images.as_os_str(),
        "--labels".as_ref(),
        labels.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    graft(&args)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, bytes)?;
    Ok(p)
}

/// Every image decodes to exactly its source pixels, in the folder of its label, and nothing else
/// is in the output.
fn assert_round_trip(d: &Data, out: &Path, classes: &[&str], imported: usize) -> TestResult {
    let size = d.rows * d.cols;
    for (i, &label) in d.labels.iter().enumerate().take(imported) {
        let path = out
            .join(classes[label as usize])
            .join(format!("{i:05}.png"));
        let img = image::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let grey = img
            .as_luma8()
            .ok_or_else(|| format!("{}: not 8-bit grey", path.display()))?;
        assert_eq!(grey.dimensions(), (d.cols as u32, d.rows as u32));
        assert_eq!(
            grey.as_raw().as_slice(),
            &d.pixels[i * size..(i + 1) * size],
            "{}",
            path.display()
        );
    }
    let mut total = 0;
    for (c, name) in classes.iter().enumerate() {
        let expected = d.labels[..imported]
            .iter()
            .filter(|&&l| l as usize == c)
            .count();
        let dir = out.join(name);
        let found = if dir.exists() {
            std::fs::read_dir(&dir)?.count()
        } else {
            0
        };
        assert_eq!(found, expected, "files in {}", dir.display());
        total += found;
    }
    assert_eq!(total, imported);
    assert_eq!(std::fs::read_dir(out)?.count(), classes.len());
    Ok(())
}

fn check_import(gz: bool) -> TestResult {
    let tmp = tempfile::tempdir()?;
    let d = random_data(if gz { 7 } else { 3 }, 300, 28, 28, 3);
    let (img, lab) = if gz {
        (gzip(&images_idx(&d))?, gzip(&labels_idx(&d))?)
    } else {
        (images_idx(&d), labels_idx(&d))
    };
    let ip = write(tmp.path(), "imgs-idx3-ubyte", &img)?;
    let lp = write(tmp.path(), "labels-idx1-ubyte", &lab)?;
    let out = tmp.path().join("out");
    let o = import(&ip, &lp, &out, &["--classes", "a,b,c"])?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("imported 300 images"), "{stdout}");
    assert_round_trip(&d, &out, &["a", "b", "c"], 300)?;

    // A second run over the same folder is harmless and gives the same result; `-q` prints
    // nothing.
    let o = import(&ip, &lp, &out, &["--classes", "a,b,c", "-q"])?;
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    assert_round_trip(&d, &out, &["a", "b", "c"], 300)
}

#[test]
fn import_raw_round_trip() -> TestResult {
    check_import(false)
}

#[test]
fn import_gz_round_trip() -> TestResult {
    check_import(true)
}

#[test]
fn import_limit_and_default_class_names() -> TestResult {
    let tmp = tempfile::tempdir()?;
    // Odd sizes catch rows/cols mix-ups.
    let d = random_data(11, 50, 5, 9, 4);
    let ip = write(tmp.path(), "i.gz", &gzip(&images_idx(&d))?)?;
    let lp = write(tmp.path(), "l", &labels_idx(&d))?;
    let out = tmp.path().join("out");
    let o = import(&ip, &lp, &out, &["--limit", "20"])?;
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Names are "0".."3" from the largest label in the whole file; only classes that occur in
    // the first 20 get a folder.
    assert_round_trip_sparse(&d, &out, 20)
}

/// Round trip for numeric default class names, where classes without images have no folder.
fn assert_round_trip_sparse(d: &Data, out: &Path, imported: usize) -> TestResult {
    let size = d.rows * d.cols;
    for (i, &label) in d.labels.iter().enumerate().take(imported) {
        let path = out.join(label.to_string()).join(format!("{i:05}.png"));
        let img = image::open(&path)?;
        assert_eq!(
            img.as_luma8().ok_or("not L8")?.as_raw().as_slice(),
            &d.pixels[i * size..(i + 1) * size]
        );
    }
    let files: usize = std::fs::read_dir(out)?
        .map(|e| Ok(std::fs::read_dir(e?.path())?.count()))
        .sum::<std::io::Result<usize>>()?;
    assert_eq!(files, imported);
    Ok(())
}

fn assert_fails_naming(o: &Output, file: &Path, words: &[&str]) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure; stderr: {stderr}");
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    assert!(
        stderr.contains(&name),
        "stderr does not name {name}: {stderr}"
    );
    for w in words {
        assert!(stderr.contains(w), "stderr lacks {w:?}: {stderr}");
    }
}

#[test]
fn import_bad_magic_fails_naming_file() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let d = random_data(5, 10, 4, 4, 3);
    let ip = write(tmp.path(), "my-images.idx", &images_idx(&d))?;
    let lp = write(tmp.path(), "my-labels.idx", &labels_idx(&d))?;
    let out = tmp.path().join("out");
    // Swapped: the image file, passed as --labels, is read first and named.
    let o = import(&lp, &ip, &out, &["--classes", "a,b,c"])?;
    assert_fails_naming(&o, &ip, &["magic", "0x00000801"]);

    let junk = write(tmp.path(), "photo.jpg", b"\xff\xd8\xff\xe0 not idx at all")?;
    let o = import(&junk, &lp, &out, &["--classes", "a,b,c"])?;
    assert_fails_naming(
        &o,
        &junk,
        &["not an idx image file (magic 0xffd8ffe0); expected 0x00000803"],
    );
    assert!(!out.exists());
    Ok(())
}

#[test]
fn import_truncated_fails_naming_file() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let d = random_data(9, 10, 6, 6, 3);
    let lp = write(tmp.path(), "labels", &labels_idx(&d))?;
    let out = tmp.path().join("out");

    let full = images_idx(&d);
    let ip = write(tmp.path(), "cut-images", &full[..full.len() - 10])?;
    let o = import(&ip, &lp, &out, &["--classes", "a,b,c"])?;
    assert_fails_naming(&o, &ip, &["truncated"]);

    let gz = gzip(&full)?;
    let ip = write(tmp.path(), "cut-images.gz", &gz[..gz.len() * 2 / 3])?;
    let o = import(&ip, &lp, &out, &["--classes", "a,b,c"])?;
    assert_fails_naming(&o, &ip, &["gzip"]);
    assert!(!out.exists());
    Ok(())
}

#[test]
fn import_label_out_of_range_and_unknown_preset() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let d = random_data(13, 40, 3, 3, 5);
    let ip = write(tmp.path(), "i", &images_idx(&d))?;
    let lp = write(tmp.path(), "some-labels", &labels_idx(&d))?;
    let out = tmp.path().join("out");
    let o = import(&ip, &lp, &out, &["--classes", "a,b"])?;
    assert_fails_naming(&o, &lp, &["has no class name"]);

    let o = import(&ip, &lp, &out, &["--preset", "imagenet"])?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("unknown preset") && stderr.contains("fashion-mnist"),
        "{stderr}"
    );
    Ok(())
}
