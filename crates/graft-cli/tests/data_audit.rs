//! `graft data audit` driven through the real binary.

mod common;

use std::collections::BTreeSet;

use common::*;

#[test]
fn audit_lists_exactly_the_bad_files_and_exits_zero() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    make_folder(d, &["cat", "dog"], &[12, 12]);
    // Corrupt JPEG: a valid start-of-image marker followed by garbage.
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    jpeg.extend((0..2000u32).map(|i| (i * 7 % 251) as u8));
    std::fs::write(d.join("cat/corrupt.jpg"), jpeg).expect("write");
    // Truncated PNG: the first half of a valid file.
    let png = png_bytes(&pattern(99, 64, 64));
    std::fs::write(d.join("dog/truncated.png"), &png[..png.len() / 2]).expect("write");
    std::fs::write(d.join("dog/empty.jpg"), b"").expect("write");
    std::fs::write(d.join("cat/notes.txt"), b"shot on a phone").expect("write");
    save(&pattern(5, 1, 1), &d.join("dog/one_pixel.png"));

    let out = graft(&["data", "audit", d.to_str().expect("utf8"), "--json", "-"]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let bad: BTreeSet<String> = report["unreadable"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["path"].as_str().expect("path").to_string())
        .collect();
    let expected: BTreeSet<String> = [
        "cat/corrupt.jpg",
        "cat/notes.txt",
        "dog/empty.jpg",
        "dog/truncated.png",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(bad, expected);
    assert_eq!(report["images_ok"], 25);
    assert_eq!(report["files_found"], 29);
    assert_eq!(report["tiny_images"][0], "dog/one_pixel.png");
    let classes = report["classes"].as_array().expect("classes");
    assert_eq!(classes[0]["name"], "cat");
    assert_eq!(classes[0]["images"], 12);
    assert_eq!(classes[0]["unreadable"], 1);
    assert_eq!(classes[1]["images"], 13);

    // The human table names the same files.
    let out = graft(&["data", "audit", d.to_str().expect("utf8")]);
    assert!(out.status.success());
    let text = stdout(&out);
    for f in &expected {
        assert!(text.contains(f.as_str()), "{f} missing from:\n{text}");
    }
    assert!(text.contains("empty file"), "{text}");
}

#[test]
fn audit_finds_duplicates_label_conflicts_and_imbalance() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    make_folder(d, &["big", "small"], &[30, 5]);
    // Exact copy within a class, a resized near copy across classes.
    std::fs::copy(d.join("big/big_000.png"), d.join("big/copy.png")).expect("copy");
    let near = image::imageops::resize(
        &image::open(d.join("big/big_001.png"))
            .expect("open")
            .to_rgb8(),
        33,
        29,
        image::imageops::FilterType::Triangle,
    );
    save(&near, &d.join("small/near_of_big_001.jpg"));

    let out = graft(&["data", "audit", d.to_str().expect("utf8"), "--json", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let exact = r["exact_duplicates"].as_array().expect("exact");
    assert_eq!(exact.len(), 1);
    assert_eq!(exact[0]["files"][0], "big/big_000.png");
    assert_eq!(exact[0]["files"][1], "big/copy.png");
    assert_eq!(exact[0]["cross_class"], false);
    let near = r["near_duplicates"].as_array().expect("near");
    assert_eq!(near.len(), 1, "{near:?}");
    assert_eq!(near[0]["cross_class"], true);
    assert_eq!(r["label_conflicts"], 1);
    let ratio = r["imbalance"]["ratio"].as_f64().expect("ratio");
    assert!((ratio - 31.0 / 6.0).abs() < 1e-9, "{ratio}");
    let means = r["channels"]["mean"].as_array().expect("mean");
    assert_eq!(means.len(), 3);
    // Only one class has the 10 images the probe needs: no probe rather than a noisy one.
    assert!(r["background"].is_null());
}

#[test]
fn audit_flags_a_class_photographed_on_its_own_backdrop() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    // Three classes; "lab" images sit on a uniform blue backdrop, the others on their content.
    for (k, class) in ["field_a", "field_b", "lab"].iter().enumerate() {
        for i in 0..40u64 {
            let mut img = pattern(1000 * (k as u64 + 1) + i, 48, 48);
            if *class == "lab" {
                for (x, y, p) in img.enumerate_pixels_mut() {
                    if !(6..42).contains(&x) || !(6..42).contains(&y) {
                        *p = image::Rgb([20, 40, 220]);
                    }
                }
            }
            save(&img, &d.join(class).join(format!("{i}.png")));
        }
    }
    let out = graft(&["data", "audit", d.to_str().expect("utf8"), "--json", "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(r["background"]["flagged"], serde_json::json!(["lab"]));
}

#[test]
fn audit_plot_writes_a_png() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("data");
    make_folder(&d, &["a", "b", "c"], &[3, 6, 9]);
    let png = t.path().join("classes.png");
    let out = graft(&[
        "data",
        "audit",
        d.to_str().expect("utf8"),
        "--plot",
        png.to_str().expect("utf8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let img = image::open(&png).expect("plot is a readable PNG");
    assert!(img.width() >= 600 && img.height() >= 150);
}

#[test]
fn audit_of_missing_or_empty_folder_is_a_clear_error() {
    let t = tempfile::tempdir().expect("tempdir");
    let missing = t.path().join("nope");
    let out = graft(&["data", "audit", missing.to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    let out = graft(&["data", "audit", t.path().to_str().expect("utf8")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("class folders"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
}

/// `graft data augment`: a PNG grid of one batch, soft labels that sum to 1, the same batch for
/// the same seed, and an [augment] table read from the config file (typos refused).
#[test]
fn augment_preview_writes_a_reproducible_batch() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("photos");
    make_folder(&d, &["cat", "dog"], &[5, 5]);
    let dir = d.to_str().expect("utf8");
    let out = |name: &str| t.path().join(name).to_string_lossy().into_owned();
    let run = |extra: &[&str], png: &str| {
        let mut args = vec!["data", "augment", dir, "--out", png, "--batch", "6"];
        args.extend_from_slice(extra);
        graft(&args)
    };
    let (a, b) = (out("a.png"), out("b.png"));
    let o = run(&["--seed", "4"], &a);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = image::open(&a).expect("png");
    // 6 images of 224 px in a 3-wide grid with 4 px gaps.
    assert_eq!((img.width(), img.height()), (3 * 228 + 4, 2 * 228 + 4));
    let labels: Vec<String> = stdout(&o).lines().skip(1).map(str::to_string).collect();
    assert_eq!(labels.len(), 6, "{}", stdout(&o));
    assert!(labels
        .iter()
        .all(|l| l.contains("cat") || l.contains("dog")));
    assert!(run(&["--seed", "4"], &b).status.success());
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));

    let cfg = t.path().join("graft.toml");
    std::fs::write(
        &cfg,
        "[augment]\nrotation = 0.0\nhflip = 0.0\nmix_prob = 0.0\n",
    )
    .expect("w");
    let o = run(&["--config", cfg.to_str().expect("utf8")], &a);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("batch mixing: None"), "{}", stdout(&o));
    std::fs::write(&cfg, "[augment]\nrotaton = 5.0\n").expect("w");
    let o = run(&["--config", cfg.to_str().expect("utf8")], &a);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("graft.toml"), "{}", stderr(&o));
}
