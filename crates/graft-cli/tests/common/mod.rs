//! Shared helpers for integration tests: run the real `graft` binary and build small synthetic
//! ImageFolders.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use image::{DynamicImage, RgbImage};

pub fn graft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("run graft")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Deterministic blocky pattern: distinct perceptual hash per seed, stable under resizing.
pub fn pattern(seed: u64, w: u32, h: u32) -> RgbImage {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let cells: Vec<[u8; 3]> = (0..64)
        .map(|_| {
            let v = next();
            [v as u8, (v >> 8) as u8, (v >> 16) as u8]
        })
        .collect();
    RgbImage::from_fn(w, h, |x, y| {
        image::Rgb(cells[((y * 8 / h) * 8 + x * 8 / w) as usize])
    })
}

pub fn save(img: &RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    DynamicImage::ImageRgb8(img.clone())
        .save(path)
        .expect("save image");
}

pub fn png_bytes(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(img.clone())
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("encode");
    out
}

/// `DIR/<class>/<class>_<i>.png` with `counts[k]` distinct images in class k.
pub fn make_folder(dir: &Path, classes: &[&str], counts: &[usize]) {
    for (k, (class, &n)) in classes.iter().zip(counts).enumerate() {
        for i in 0..n {
            let seed = (k as u64 + 1) * 100_000 + i as u64;
            let (w, h) = (40 + (i as u32 % 5) * 8, 40 + (i as u32 % 3) * 8);
            save(
                &pattern(seed, w, h),
                &dir.join(class).join(format!("{class}_{i:03}.png")),
            );
        }
    }
}

/// `graft` with `GRAFT_CACHE` pointing at `cache`.
pub fn graft_with_cache(cache: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .env("GRAFT_CACHE", cache)
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("run graft")
}

/// Run graft in `cwd` with `cache` as its cache folder.
pub fn graft_in(cache: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .current_dir(cwd)
        .env("GRAFT_CACHE", cache)
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("run graft")
}

/// The folder an environment variable names; a test cannot go on without it, so its absence
/// fails the test with how to get it (never a silent early return).
pub fn required_dir(var: &str) -> std::path::PathBuf {
    match std::env::var_os(var) {
        Some(v) => std::path::PathBuf::from(v),
        None => panic!(
            "{var} is not set: run the tests with scripts/test.sh, which fetches what they need"
        ),
    }
}

/// The ONNX Runtime library must be given (ORT_DYLIB_PATH): the tests run graft with a cache
/// folder of their own, where graft's default lookup finds no library.
pub fn require_ort_library() {
    let lib = required_dir("ORT_DYLIB_PATH");
    assert!(
        lib.is_file(),
        "ORT_DYLIB_PATH={} is not a file",
        lib.display()
    );
}

/// A graft cache folder under `tmp` with the real MobileNetV2 weights imported.
pub fn cache_with_mobilenet(tmp: &std::path::Path) -> std::path::PathBuf {
    let weights = required_dir("GRAFT_TEST_WEIGHTS_DIR");
    let pth = walk_find(
        std::path::Path::new(&weights),
        "mobilenet_v2-b0353104.pth",
        4,
    )
    .expect("MobileNetV2 weights under GRAFT_TEST_WEIGHTS_DIR");
    let cache = tmp.join("cache");
    let o = graft_with_cache(
        &cache,
        &[
            "models",
            "import",
            pth.to_str().expect("utf8"),
            "--arch",
            "mobilenet-v2",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    cache
}

/// A run `runs/t` under `tmp`, trained by `graft train` on 20 coloured photos per class (in
/// `tmp/photos`); the cache folder it used comes back.
pub fn coloured_run(tmp: &Path) -> std::path::PathBuf {
    let cache = cache_with_mobilenet(tmp);
    coloured_folder(&tmp.join("photos"), 20);
    let o = graft_in(
        &cache,
        tmp,
        &["train", "photos", "--name", "t", "--no-track"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    cache
}

/// First file called `name` under `dir`, at most `depth` folders down.
pub fn walk_find(dir: &std::path::Path, name: &str, depth: usize) -> Option<std::path::PathBuf> {
    let direct = dir.join(name);
    if direct.is_file() {
        return Some(direct);
    }
    if depth == 0 {
        return None;
    }
    let mut subdirs: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    subdirs.iter().find_map(|d| walk_find(d, name, depth - 1))
}

/// Three classes told apart by colour (red, green, blue) under random blocky texture.
pub fn coloured_folder(dir: &Path, per_class: usize) {
    for (k, class) in ["red", "green", "blue"].iter().enumerate() {
        for i in 0..per_class {
            let img = coloured((k * 1000 + i) as u64 + 1, k);
            save(&img, &dir.join(class).join(format!("{class}_{i:02}.png")));
        }
    }
}

/// One image of colour class `k` (0 red, 1 green, 2 blue) with texture `seed`.
pub fn coloured(seed: u64, k: usize) -> RgbImage {
    let texture = pattern(seed, 48, 40);
    RgbImage::from_fn(48, 40, |x, y| {
        let t = texture.get_pixel(x, y);
        let mut p = [t[0] / 3, t[1] / 3, t[2] / 3];
        p[k] = p[k].saturating_add(170);
        image::Rgb(p)
    })
}

/// The embedded demo data (assets/demo, Fashion-MNIST).
pub fn demo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo")
}

/// A small folder of demo images: `per` of each of the first `classes` classes.
pub fn demo_subset(to: &Path, classes: usize, per: usize) {
    let mut names: Vec<_> = std::fs::read_dir(demo())
        .expect("demo")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for class in names.iter().take(classes) {
        let mut files: Vec<_> = std::fs::read_dir(demo().join(class))
            .expect("class")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        files.sort();
        // From the end: the split spreads the rest; these may be in any split.
        for f in files.iter().rev().take(per) {
            let dest = to.join(class).join(f.file_name().expect("name"));
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
            std::fs::copy(f, dest).expect("copy");
        }
    }
}
