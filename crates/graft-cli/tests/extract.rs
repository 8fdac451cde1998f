//! `graft extract`: merging shard folders and the message while no encoder backend is built in.

mod common;

use common::{graft, make_folder, stderr, stdout};
use graft_data::preprocess::Preprocess;
use graft_features::{ExtractOptions, Shard, Source};
use graft_model::arch::EncoderKind;
use graft_model::encoder::{EncoderError, EncoderOutput, ImageEncoder};

/// Mean of each input channel: enough to fill a cache.
struct ChannelMean;

impl ImageEncoder for ChannelMean {
    fn kind(&self) -> EncoderKind {
        EncoderKind::MobileNetV2
    }
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
    };
    let parts: Vec<_> = (0..2)
        .map(|i| tmp.path().join(format!("part{i}")))
        .collect();
    for (i, dir) in parts.iter().enumerate() {
        let mut o = ExtractOptions::new("test", "w", pre);
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
fn extract_says_encoders_are_missing() {
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
    let o = graft(&args);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("encoders not yet available"),
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
