//! `graft models` through the real binary, with an isolated cache. Fetching needs the network
//! and is not tested here; import + predict use the real weights under GRAFT_TEST_WEIGHTS_DIR.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn graft(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .env("GRAFT_CACHE", cache)
        .env("NO_COLOR", "1")
        .output()
        .expect("run graft")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn list_and_missing_cache_hint() {
    let cache = tempfile::tempdir().expect("tempdir");
    let o = graft(cache.path(), &["models", "list"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    for name in ["mobilenet-v2", "efficientnet-lite0", "efficientnet-lite2"] {
        assert!(out.contains(name), "{out}");
    }
    assert!(
        out.contains("not cached: graft models fetch mobilenet-v2"),
        "{out}"
    );

    let o = graft(
        cache.path(),
        &["models", "predict", "--encoder", "mobilenet-v2", "x.jpg"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("graft models fetch mobilenet-v2"),
        "{}",
        text(&o)
    );

    let o = graft(cache.path(), &["models", "fetch", "resnet"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("unknown encoder"), "{}", text(&o));
}

fn find(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let direct = dir.join(name);
    if direct.is_file() {
        return Some(direct);
    }
    let subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    (depth > 0)
        .then(|| subdirs.iter().find_map(|d| find(d, name, depth - 1)))
        .flatten()
}

#[test]
fn import_then_predict_real_photo() {
    let dir = std::env::var_os("GRAFT_TEST_WEIGHTS_DIR")
        .map(PathBuf::from)
        .expect("GRAFT_TEST_WEIGHTS_DIR is not set: run the tests with scripts/test.sh");
    let pth = find(&dir, "mobilenet_v2-b0353104.pth", 4).expect("weights");
    let photo = find(&dir, "coffee.png", 4).expect("photo");
    let cache = tempfile::tempdir().expect("tempdir");
    let pth = pth.to_string_lossy().into_owned();
    let o = graft(
        cache.path(),
        &["models", "import", &pth, "--arch", "efficientnet-lite0"],
    );
    assert!(!o.status.success(), "wrong arch must be refused");
    let o = graft(
        cache.path(),
        &["models", "import", &pth, "--arch", "mobilenet-v2"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let photo = photo.to_string_lossy().into_owned();
    let o = graft(cache.path(), &["models", "predict", &photo, "--top", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    let first = out.lines().nth(1).unwrap_or("");
    assert!(first.contains("espresso (967)"), "{out}");
}
