//! A real process is SIGKILLed in the middle of an extraction; the rerun must finish the cache
//! byte-identical to an uninterrupted run.
//!
//! The child is this test binary itself, re-executed with `KILL9_CHILD_OUT` set, running only
//! `kill9_child` with a slowed encoder.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{files, make_folder, options, shard_files, MeanStd};
use graft_features::{extract, FeatureCache, Source};

const CHILD_ENV: &str = "KILL9_CHILD_OUT";
const DATA_ENV: &str = "KILL9_CHILD_DATA";
const IMAGES: usize = 40; // 10 chunks of 4

/// Not a test on its own: the body of the child process (a no-op when run normally).
#[test]
fn kill9_child() {
    let (Some(out), Some(data)) = (std::env::var_os(CHILD_ENV), std::env::var_os(DATA_ENV)) else {
        return;
    };
    let src = Source::open(Path::new(&data)).expect("source");
    let mut enc = MeanStd::new();
    enc.delay = Duration::from_millis(60);
    extract(Path::new(&out), &src, &mut enc, &options(), &mut |_| {}).expect("child extract");
}

#[test]
fn sigkill_mid_extraction_then_resume_is_byte_identical() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_folder(&data, IMAGES, 3, &[9]);
    let src = Source::open(&data).expect("source");

    let reference = tmp.path().join("reference");
    extract(
        &reference,
        &src,
        &mut MeanStd::new(),
        &options(),
        &mut |_| {},
    )
    .expect("reference");

    let out = tmp.path().join("killed");
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["kill9_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &out)
        .env(DATA_ENV, &data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let deadline = Instant::now() + Duration::from_secs(60);
    while shard_files(&out) < 3 {
        assert!(Instant::now() < deadline, "child made no progress");
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("child finished before it could be killed: {status}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL"); // SIGKILL on Unix
    child.wait().expect("reap");
    let done = shard_files(&out);
    assert!(
        done < 10,
        "the child was killed before finishing ({done} chunks)"
    );
    assert!(
        FeatureCache::open(&out).is_err(),
        "an interrupted cache is not opened"
    );

    let mut enc = MeanStd::new();
    let s = extract(&out, &src, &mut enc, &options(), &mut |_| {}).expect("resume");
    assert!(s.chunks_skipped >= 3 && s.cache_complete);
    assert!(enc.images < IMAGES - 1, "finished chunks were not redone");
    assert_eq!(files(&out), files(&reference));
}
