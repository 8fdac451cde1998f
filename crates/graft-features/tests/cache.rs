//! Cache logic end to end with a deterministic test encoder.

mod common;

use std::path::PathBuf;

use common::{files, make_folder, options, MeanStd};
use graft_features::format::{f16_bytes_to_f32, f32_to_f16_bytes, shard_name, tmp_name};
use graft_features::{extract, merge, FeatureCache, FeatureError, Shard, Source};
use graft_model::encoder::ImageEncoder;

fn run(out: &std::path::Path, src: &Source, opts: &graft_features::ExtractOptions) -> MeanStd {
    let mut enc = MeanStd::new();
    extract(out, src, &mut enc, opts, &mut |_| {}).expect("extract");
    enc
}

#[test]
fn round_trip_with_failed_image() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_folder(&data, 10, 3, &[4]);
    let src = Source::open(&data).expect("source");
    let out = tmp.path().join("cache");
    let mut enc = MeanStd::new();
    let mut last = None;
    let summary =
        extract(&out, &src, &mut enc, &options(), &mut |p| last = Some(p)).expect("extract");
    assert_eq!(summary.chunks_total, 3);
    assert_eq!(summary.chunks_written, 3);
    assert_eq!(summary.images_encoded, 9);
    assert!(summary.cache_complete);
    assert_eq!(last.map(|p| (p.done, p.todo)), Some((10, 10)));
    assert_eq!(summary.failed.len(), 1);
    let bad = src.items.iter().position(|i| i.path.ends_with(".jpg"));
    assert_eq!(Some(summary.failed[0].index), bad);

    let cache = FeatureCache::open(&out).expect("open");
    assert_eq!((cache.len(), cache.feature_dim()), (10, 6));
    let pre = common::preprocess();
    for i in 0..10 {
        let row = cache.row(i).expect("row");
        if Some(i) == bad {
            assert!(cache.is_failed(i));
            assert_eq!(row, vec![0.0; 6]);
            continue;
        }
        let (_, img) = graft_data::decode::read_and_decode(&src.files[i]).expect("decode");
        let want = MeanStd::new()
            .encode(&pre.apply(&img), 1, false)
            .expect("encode")
            .features;
        let mut rounded = vec![0.0; 6];
        f16_bytes_to_f32(&f32_to_f16_bytes(&want), &mut rounded);
        assert_eq!(row, rounded, "item {i}");
    }
    assert!(cache.row(10).is_none());
    assert!(cache.spatial_row(0).is_none());

    let all = cache.load_all();
    assert_eq!(all.len(), 9);
    assert!(!all.items.contains(&4) || bad != Some(4));
    for (j, &i) in all.items.iter().enumerate() {
        assert_eq!(all.row(j), cache.row(i).expect("row").as_slice());
        let label = &cache.header().items[i].label;
        assert_eq!(&cache.header().classes[all.labels[j]], label);
        assert_eq!(all.splits[j], None);
    }
}

#[test]
fn spatial_maps_are_stored() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_folder(&data, 5, 2, &[]);
    let src = Source::open(&data).expect("source");
    let out = tmp.path().join("cache");
    let mut opts = options();
    opts.spatial = true;
    run(&out, &src, &opts);
    let cache = FeatureCache::open(&out).expect("open");
    let dims = cache.header().spatial.expect("spatial dims");
    assert_eq!((dims.channels, dims.height, dims.width), (6, 2, 2));
    assert!(out.join("spatial-00001.f16").exists());
    let map = cache.spatial_row(4).expect("map");
    assert_eq!(map.len(), 24);
    // Mean of the four quadrant means is the channel mean (up to f16 rounding).
    let row = cache.row(4).expect("row");
    let mean0 = map[..4].iter().sum::<f32>() / 4.0;
    assert!((mean0 - row[0]).abs() < 1e-2, "{mean0} vs {}", row[0]);
}

#[test]
fn resume_redoes_only_missing_truncated_and_tmp_chunks() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_folder(&data, 18, 3, &[]);
    let src = Source::open(&data).expect("source");
    let out = tmp.path().join("cache");
    let first = run(&out, &src, &options());
    assert_eq!(first.images, 18);
    let reference = files(&out);

    // Rerun with everything in place: nothing is encoded.
    assert_eq!(run(&out, &src, &options()).calls, 0);

    // Chunk 1 missing, chunk 2 truncated, chunk 3 replaced by a leftover .tmp (a crash mid-write).
    std::fs::remove_file(out.join(shard_name(1))).expect("rm");
    let s2 = out.join(shard_name(2));
    let bytes = std::fs::read(&s2).expect("read");
    std::fs::write(&s2, &bytes[..bytes.len() - 3]).expect("truncate");
    std::fs::remove_file(out.join(shard_name(3))).expect("rm");
    std::fs::write(out.join(tmp_name(&shard_name(3))), b"partial").expect("tmp");

    let mut enc = MeanStd::new();
    let s = extract(&out, &src, &mut enc, &options(), &mut |_| {}).expect("resume");
    assert_eq!(enc.images, 12, "three chunks of four redone");
    assert_eq!((s.chunks_skipped, s.chunks_written), (2, 3));
    assert_eq!(files(&out), reference, "byte-identical after resume");
}

#[test]
fn shards_and_merge_equal_a_single_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_folder(&data, 23, 4, &[7]);
    let src = Source::open(&data).expect("source");
    let single = tmp.path().join("single");
    run(&single, &src, &options());
    let reference = files(&single);

    // Separate folders, merged.
    let parts: Vec<PathBuf> = (0..3)
        .map(|i| tmp.path().join(format!("part{i}")))
        .collect();
    for (i, dir) in parts.iter().enumerate() {
        let mut o = options();
        o.shard = Shard { index: i, count: 3 };
        let mut enc = MeanStd::new();
        let s = extract(dir, &src, &mut enc, &o, &mut |_| {}).expect("shard");
        assert_eq!(s.chunks_owned, [2, 2, 2][i]);
        assert!(!s.cache_complete);
    }
    let merged = tmp.path().join("merged");
    // Without part 2, exactly its chunks (2 and 5) are reported missing.
    let partial = merge(&merged, &parts[..2]).expect("merge");
    assert_eq!(partial.missing, vec![2, 5]);
    assert_eq!(
        partial.describe_missing(),
        "chunks 2, 5 (images 8-11, 20-22)"
    );
    match FeatureCache::open(&merged) {
        Err(FeatureError::Incomplete { count: 2, .. }) => {}
        other => panic!("expected Incomplete, got {other:?}"),
    }
    let report = merge(&merged, &parts).expect("merge");
    assert!(report.is_complete());
    assert_eq!(report.copied.len(), 2);
    assert_eq!(files(&merged), reference);

    // One shared folder, three processes (run one after another here).
    let shared = tmp.path().join("shared");
    for i in 0..3 {
        let mut o = options();
        o.shard = Shard { index: i, count: 3 };
        run(&shared, &src, &o);
    }
    assert!(merge(&shared, &[]).expect("check").is_complete());
    assert_eq!(files(&shared), reference);
}

#[test]
fn a_different_cache_is_refused_unless_forced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_folder(&data, 6, 2, &[]);
    let src = Source::open(&data).expect("source");
    let out = tmp.path().join("cache");
    run(&out, &src, &options());
    std::fs::write(out.join("notes.txt"), "mine").expect("write");

    let mut changes: Vec<graft_features::ExtractOptions> = Vec::new();
    let mut o = options();
    o.weights = "weights-v2".into();
    changes.push(o);
    let mut o = options();
    o.encoder = graft_model::arch::EncoderKind::EfficientNetLite0.into();
    changes.push(o);
    let mut o = options();
    o.preprocess.mean = [0.4; 3];
    changes.push(o);
    let mut o = options();
    o.chunk = 5;
    changes.push(o);
    for o in &changes {
        let err = extract(&out, &src, &mut MeanStd::new(), o, &mut |_| {}).expect_err("refused");
        assert!(matches!(err, FeatureError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains("--force"), "{err}");
    }
    // A changed image list is refused too.
    let mut fewer = src.clone();
    fewer.items.pop();
    fewer.files.pop();
    let err =
        extract(&out, &fewer, &mut MeanStd::new(), &options(), &mut |_| {}).expect_err("refused");
    assert!(err.to_string().contains("image list"), "{err}");

    let mut forced = changes[0].clone();
    forced.force = true;
    let mut enc = MeanStd::new();
    extract(&out, &src, &mut enc, &forced, &mut |_| {}).expect("forced");
    assert_eq!(enc.images, 6);
    assert_eq!(
        FeatureCache::open(&out).expect("open").header().weights,
        "weights-v2"
    );
    assert!(
        out.join("notes.txt").exists(),
        "--force deletes only cache files"
    );
}

#[test]
fn manifest_order_and_changed_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_folder(&data, 6, 2, &[]);
    let dir_src = Source::open(&data).expect("source");
    // Manifest in reverse order; the last row's file changed after the manifest was written.
    let mut csv = String::from("path,label,split,hash\n");
    for (i, item) in dir_src.items.iter().enumerate().rev() {
        let split = ["train", "val", "test"][i % 3];
        let hash = if i == 0 {
            "0".repeat(64)
        } else {
            item.hash.clone()
        };
        csv += &format!("{},{},{split},{hash}\n", item.path, item.label);
    }
    let manifest = data.join("manifest.csv");
    std::fs::write(&manifest, csv).expect("write");
    let src = Source::open(&manifest).expect("manifest");
    assert_eq!(src.items[0].path, dir_src.items[5].path);
    let out = tmp.path().join("cache");
    let mut enc = MeanStd::new();
    let s = extract(&out, &src, &mut enc, &options(), &mut |_| {}).expect("extract");
    assert_eq!(s.failed.len(), 1);
    assert_eq!(s.failed[0].index, 5);
    assert!(
        s.failed[0].reason.contains("changed"),
        "{}",
        s.failed[0].reason
    );
    let cache = FeatureCache::open(&out).expect("open");
    assert_eq!(cache.failed(), s.failed.as_slice());
    let all = cache.load_all();
    assert_eq!(all.items, vec![0, 1, 2, 3, 4]);
    assert_eq!(all.splits[0], Some(graft_data::scan::Split::Test));
}

#[test]
fn bad_options_and_empty_input_are_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let empty = Source {
        items: vec![],
        files: vec![],
        classes: vec![],
    };
    let err = extract(
        tmp.path(),
        &empty,
        &mut MeanStd::new(),
        &options(),
        &mut |_| {},
    );
    assert!(matches!(err, Err(FeatureError::NoImages)));
    let mut o = options();
    o.batch = 0;
    let err = extract(tmp.path(), &empty, &mut MeanStd::new(), &o, &mut |_| {});
    assert!(matches!(err, Err(FeatureError::BadOption(_))));
    assert!(FeatureCache::open(tmp.path()).is_err());
}

#[test]
fn a_shard_another_process_holds_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    make_folder(&data, 12, 4, &[]);
    let src = Source::open(&data).expect("source");
    let out = tmp.path().join("cache");
    std::fs::create_dir_all(&out).expect("dir");
    let shard = Shard { index: 1, count: 2 };
    // Another process (here: a lock taken by the test) is extracting shard 1/2.
    let held = shard.lock(&out).expect("lock");
    let mut o = options();
    o.shard = shard;
    let mut enc = MeanStd::new();
    match extract(&out, &src, &mut enc, &o, &mut |_| {}) {
        Err(e @ FeatureError::Busy { .. }) => {
            assert!(e.to_string().contains("shard 1/2"), "{e}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    assert_eq!(common::shard_files(&out), 0);
    // Shard 0/2 is free meanwhile; shard 1/2 once its holder lets go.
    o.shard = Shard { index: 0, count: 2 };
    extract(&out, &src, &mut enc, &o, &mut |_| {}).expect("shard 0");
    drop(held);
    o.shard = shard;
    let s = extract(&out, &src, &mut enc, &o, &mut |_| {}).expect("shard 1");
    assert!(s.cache_complete);
}
