//! `graft extract`: merging shard folders and the message while no encoder backend is built in.

mod common;

use common::{
    cache_with_mobilenet, graft, graft_with_cache, make_folder, require_ort_library, stderr, stdout,
};
use graft_data::preprocess::Preprocess;
use graft_features::{ExtractOptions, Shard, Source};
use graft_model::encoder::{EncoderError, EncoderOutput, ImageEncoder};

/// Mean of each input channel: enough to fill a cache.
struct ChannelMean;

impl ImageEncoder for ChannelMean {
    fn feature_dim(&self) -> usize {
        3
    }
    fn backend(&self) -> &'static str {
        "test"
    }
    fn encode(&mut self, input: &[f32], n: usize, _: bool) -> Result<EncoderOutput, EncoderError> {
        let plane = input.len() / (3 * n);
        let features = input
            .chunks_exact(plane)
            .map(|c| c.iter().sum::<f32>() / plane as f32)
            .collect();
        Ok(EncoderOutput {
            features,
            ..Default::default()
        })
    }
}

#[test]
fn merge_reports_missing_chunks_then_completes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_folder(&data, &["a", "b"], &[5, 4]);
    let src = Source::open(&data).expect("source");
    let pre = Preprocess {
        size: 8,
        resize_shorter: 8,
        mean: [0.5; 3],
        std: [0.5; 3],
        filter: Default::default(),
    };
    let parts: Vec<_> = (0..2)
        .map(|i| tmp.path().join(format!("part{i}")))
        .collect();
    for (i, dir) in parts.iter().enumerate() {
        let mut o = ExtractOptions::new(graft_model::arch::EncoderKind::MobileNetV2, "w", pre);
        o.chunk = 2;
        o.shard = Shard { index: i, count: 2 };
        graft_features::extract(dir, &src, &mut ChannelMean, &o, &mut |_| {}).expect("part");
    }
    let out = tmp.path().join("features");
    let out_s = out.to_str().expect("utf8");
    let p0 = parts[0].to_str().expect("utf8");
    let p1 = parts[1].to_str().expect("utf8");

    let o = graft(&["extract", "--merge", "--out", out_s, "--from", p0]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("2 of 5 chunks are missing: chunks 1, 3 (images 2-3, 6-7)"),
        "{}",
        stderr(&o)
    );
    let o = graft(&["extract", "--merge", "--out", out_s, "--from", p1]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Cache complete: 5 chunks (2 copied in), 9 images"));
    let cache = graft_features::FeatureCache::open(&out).expect("open");
    assert_eq!(cache.load_all().len(), 9);
}

#[test]
fn extract_without_weights_says_how_to_fetch_them() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_folder(&data, &["a"], &[1]);
    let out = tmp.path().join("f");
    let args = [
        "extract",
        "--data",
        data.to_str().expect("utf8"),
        "--encoder",
        "mobilenet-v2",
        "--out",
        out.to_str().expect("utf8"),
    ];
    let o = graft_with_cache(&tmp.path().join("cache"), &args);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("graft models fetch mobilenet-v2"),
        "{}",
        stderr(&o)
    );
    let o = graft(&[
        "extract",
        "--data",
        "x",
        "--encoder",
        "resnet",
        "--out",
        "y",
    ]);
    assert!(stderr(&o).contains("unknown encoder"), "{}", stderr(&o));
}

/// Real MobileNetV2 weights through both engines: the caches must agree (f16 storage).
#[test]
fn onnx_runtime_and_burn_extract_the_same_features() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    let data = tmp.path().join("data");
    make_folder(&data, &["a", "b"], &[3, 2]);
    let mut rows = Vec::new();
    for backend in ["ort", "burn"] {
        if backend == "ort" {
            require_ort_library();
        }
        let out = tmp.path().join(backend);
        let o = graft_with_cache(
            &cache,
            &[
                "extract",
                "--data",
                data.to_str().expect("utf8"),
                "--encoder",
                "mobilenet-v2",
                "--backend",
                backend,
                "--out",
                out.to_str().expect("utf8"),
            ],
        );
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        let cache = graft_features::FeatureCache::open(&out).expect("complete cache");
        assert_eq!(cache.len(), 5);
        rows.push(
            (0..5)
                .map(|i| cache.row(i).expect("row"))
                .collect::<Vec<_>>(),
        );
    }
    let mut max = 0f32;
    for (a, b) in rows[0].iter().zip(&rows[1]) {
        assert_eq!(a.len(), 1280);
        for (x, y) in a.iter().zip(b) {
            max = max.max((x - y).abs() / (1.0 + x.abs()));
        }
    }
    // Both engines compute in f32 and differ ~1e-5; the cache rounds to f16 (rel. 1e-3).
    assert!(max < 2e-3, "ORT and burn features differ by {max}");
}

fn shard_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("shard-") && n.ends_with(".f16"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every file of a cache folder, by name, with its bytes; not the shard locks (empty dot
/// files, left by whichever processes extracted).
fn folder_bytes(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("cache folder")
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".lock-"))
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// The real binary, the real encoder, SIGKILL part-way: the rerun finishes the missing chunks
/// and the cache is byte-identical to an uninterrupted run.
#[test]
fn kill_9_mid_extraction_then_rerun_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    let data = tmp.path().join("data");
    make_folder(&data, &["a", "b"], &[20, 20]);
    let chunks = 10; // 40 images in chunks of 4
    let args = |out: &std::path::Path| {
        vec![
            "extract".to_string(),
            "--data".into(),
            data.to_string_lossy().into_owned(),
            "--encoder".into(),
            "mobilenet-v2".into(),
            // burn: slow enough to be caught part-way, and no library needed.
            "--backend".into(),
            "burn".into(),
            "--chunk".into(),
            "4".into(),
            "--batch".into(),
            "4".into(),
            "--out".into(),
            out.to_string_lossy().into_owned(),
        ]
    };

    let killed = tmp.path().join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args(&killed))
        .env("GRAFT_CACHE", &cache)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start graft extract");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while shard_files(&killed).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no chunk written in 120 s"
        );
        if child.try_wait().expect("poll").is_some() {
            panic!("graft extract ended before it could be killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
    child.wait().expect("reap");
    let done_at_kill = shard_files(&killed).len();
    assert!(
        done_at_kill < chunks,
        "all {chunks} chunks were done before the kill; the test proves nothing"
    );

    let o = graft_with_cache(
        &cache,
        &args(&killed).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let said = stdout(&o);
    assert!(
        said.contains(&format!("{done_at_kill} already done")),
        "rerun should skip the {done_at_kill} finished chunks: {said}"
    );

    let clean = tmp.path().join("clean");
    let o = graft_with_cache(
        &cache,
        &args(&clean).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (folder_bytes(&killed), folder_bytes(&clean));
    let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "same files (no leftover .tmp)");
    assert_eq!(shard_files(&clean).len(), chunks);
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(
            x == y,
            "{name} differs between the resumed and the clean run"
        );
    }
}
