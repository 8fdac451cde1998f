//! `graft data split` driven through the real binary.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

fn read_manifest(path: &Path) -> Vec<(String, String, String, String)> {
    let mut r = csv::Reader::from_path(path).expect("manifest");
    assert_eq!(
        r.headers().expect("headers").iter().collect::<Vec<_>>(),
        vec!["path", "label", "split", "hash"]
    );
    r.records()
        .map(|rec| {
            let rec = rec.expect("row");
            (
                rec[0].to_string(),
                rec[1].to_string(),
                rec[2].to_string(),
                rec[3].to_string(),
            )
        })
        .collect()
}

fn split(dir: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "data",
        "split",
        dir.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    graft(&args)
}

#[test]
fn split_is_stratified_and_deterministic() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("data");
    let counts = [23usize, 40, 57, 7];
    make_folder(&d, &["a", "b", "c", "d"], &counts);
    let m1 = t.path().join("m1.csv");
    let m2 = t.path().join("m2.csv");
    let m3 = t.path().join("m3.csv");
    for m in [&m1, &m2] {
        let out = split(&d, m, &["--ratios", "70/15/15", "--seed", "42"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(
        std::fs::read(&m1).expect("m1"),
        std::fs::read(&m2).expect("m2"),
        "same seed must give a byte-identical manifest"
    );
    assert!(split(&d, &m3, &["--seed", "7"]).status.success());
    assert_ne!(
        std::fs::read(&m1).expect("m1"),
        std::fs::read(&m3).expect("m3")
    );

    let rows = read_manifest(&m1);
    assert_eq!(rows.len(), counts.iter().sum::<usize>());
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (path, label, split, hash) in &rows {
        assert!(t.path().join(path).is_file(), "{path} relative to manifest");
        assert!(path.starts_with(&format!("data/{label}/")));
        assert_eq!(hash.len(), 64);
        *per.entry((label.clone(), split.clone())).or_default() += 1;
    }
    let ratios = [("train", 0.70), ("val", 0.15), ("test", 0.15)];
    for (class, n) in ["a", "b", "c", "d"].iter().zip(counts) {
        for (s, r) in ratios {
            let got = per
                .get(&(class.to_string(), s.to_string()))
                .copied()
                .unwrap_or(0);
            let exact = n as f64 * r;
            assert!(
                (got as f64 - exact).abs() <= 1.0 && got > 0,
                "class {class} split {s}: {got} vs exact share {exact}"
            );
        }
    }
}

#[test]
fn near_duplicates_never_straddle_splits() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("data");
    make_folder(&d, &["a", "b"], &[40, 40]);
    // Plant 12 near-duplicate pairs (resized + re-encoded as JPEG) and 3 exact copies.
    let mut planted = Vec::new();
    for i in 0..12 {
        let class = if i % 2 == 0 { "a" } else { "b" };
        let src = d.join(class).join(format!("{class}_{i:03}.png"));
        let img = image::open(&src).expect("open").to_rgb8();
        let near = image::imageops::resize(&img, 61, 57, image::imageops::FilterType::Triangle);
        let dst = d.join(class).join(format!("near_{i:03}.jpg"));
        save(&near, &dst);
        planted.push((format!("{class}_{i:03}.png"), format!("near_{i:03}.jpg")));
    }
    for i in 20..23 {
        std::fs::copy(
            d.join(format!("a/a_{i:03}.png")),
            d.join(format!("a/copy_{i:03}.png")),
        )
        .expect("copy");
        planted.push((format!("a_{i:03}.png"), format!("copy_{i:03}.png")));
    }
    let m = t.path().join("m.csv");
    let out = split(&d, &m, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("15 duplicate/near-duplicate cluster(s) kept within one split"),
        "{}",
        stdout(&out)
    );
    let rows = read_manifest(&m);
    let split_of: BTreeMap<String, String> = rows
        .iter()
        .map(|(p, _, s, _)| (p.rsplit('/').next().expect("name").to_string(), s.clone()))
        .collect();
    for (a, b) in &planted {
        assert_eq!(split_of[a], split_of[b], "{a} and {b} were split apart");
    }
}

#[test]
fn too_small_classes_are_named_in_the_error() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("data");
    make_folder(&d, &["plenty", "rare", "tiny"], &[20, 3, 1]);
    let out = split(&d, &t.path().join("m.csv"), &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("rare (3 images)") && err.contains("tiny (1 images)"),
        "{err}"
    );
    assert!(!err.contains("plenty"), "{err}");
    assert!(!t.path().join("m.csv").exists());
}

#[test]
fn presplit_folder_is_kept_as_is() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("data");
    make_folder(&d.join("train"), &["x", "y"], &[10, 10]);
    make_folder(&d.join("test"), &["x", "y"], &[2, 3]);
    let m = t.path().join("out/m.csv");
    let out = split(&d, &m, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("--val-from-train"));
    let rows = read_manifest(&m);
    for (p, _, s, _) in &rows {
        assert!(p.starts_with(&format!("../data/{s}/")), "{p} {s}");
    }
    // Holding out val from train leaves test untouched.
    let out = split(&d, &m, &["--val-from-train", "20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows = read_manifest(&m);
    let count = |s: &str| rows.iter().filter(|r| r.2 == s).count();
    assert_eq!((count("train"), count("val"), count("test")), (16, 4, 5));
}

#[test]
fn diff_names_what_changed_between_two_manifests() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("data");
    make_folder(&d, &["a", "b"], &[12, 12]);
    let v1 = t.path().join("v1/manifest.csv");
    std::fs::create_dir_all(v1.parent().expect("dir")).expect("dir");
    assert!(split(&d, &v1, &[]).status.success());
    // One image relabelled (moved to the other class), one removed, one added.
    let a: Vec<_> = std::fs::read_dir(d.join("a"))
        .expect("a")
        .map(|e| e.expect("entry").path())
        .collect();
    let moved = a[0].clone();
    let name = moved.file_name().expect("name").to_owned();
    std::fs::rename(&moved, d.join("b").join(&name)).expect("relabel");
    std::fs::remove_file(&a[1]).expect("remove");
    save(&pattern(999, 40, 40), &d.join("a/new.png"));
    let v2 = t.path().join("v2.csv");
    assert!(split(&d, &v2, &[]).status.success());

    let o = graft(&[
        "data",
        "diff",
        v1.to_str().expect("utf8"),
        v2.to_str().expect("utf8"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(j["added"].as_array().expect("added").len(), 1);
    assert!(j["added"][0]["path"]
        .as_str()
        .expect("path")
        .ends_with("a/new.png"));
    assert_eq!(j["removed"].as_array().expect("removed").len(), 1);
    let relabelled: Vec<_> = j["changed"]
        .as_array()
        .expect("changed")
        .iter()
        .filter(|c| c["before"]["label"] != c["after"]["label"])
        .collect();
    assert_eq!(relabelled.len(), 1, "{j}");
    assert_eq!(relabelled[0]["before"]["label"], "a");
    assert_eq!(relabelled[0]["after"]["label"], "b");
    assert_eq!(j["classes"]["a"], serde_json::json!([12, 11]));
    assert_eq!(j["classes"]["b"], serde_json::json!([12, 13]));

    // The text form, and --exit-code.
    let o = graft(&[
        "data",
        "diff",
        v1.to_str().expect("utf8"),
        v2.to_str().expect("utf8"),
    ]);
    let text = stdout(&o);
    assert!(
        text.contains("1 relabelled") && text.contains("1 added"),
        "{text}"
    );
    let o = graft(&[
        "data",
        "diff",
        v1.to_str().expect("utf8"),
        v2.to_str().expect("utf8"),
        "--exit-code",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let same = graft(&[
        "data",
        "diff",
        v2.to_str().expect("utf8"),
        v2.to_str().expect("utf8"),
        "--exit-code",
    ]);
    assert!(same.status.success(), "{}", stderr(&same));
    assert!(stdout(&same).contains("Same images"));
    let missing = graft(&["data", "diff", "nope.csv", v2.to_str().expect("utf8")]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("nope.csv"),
        "{}",
        stderr(&missing)
    );
}
