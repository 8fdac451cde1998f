//! `graft monitor` on the real server's audit trail: the demo model served held-out demo
//! images is healthy (exit 0); the same images darkened by 40 % drift (exit 1, naming the
//! statistics that moved); images of one class only trip the class-mix check.

mod common;
#[path = "serve/http.rs"]
mod http;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{cache_with_mobilenet, graft_in as graft, png_bytes, stderr, stdout};
use http::{agent, post, Server};

/// (path, label) of the run's test images, from its manifest.
fn test_images(run: &Path) -> Vec<(PathBuf, String)> {
    let manifest = run.join("manifest.csv");
    let mut r = csv::Reader::from_path(&manifest).expect("manifest");
    r.records()
        .map(|rec| rec.expect("row"))
        .filter(|rec| &rec[2] == "test")
        .map(|rec| (run.join(&rec[0]), rec[1].to_string()))
        .collect()
}

/// Serve `images` (bytes) one by one to a server writing `audit`, then `graft monitor`.
fn monitor_after(cache: &Path, cwd: &Path, run: &Path, audit: &Path, images: &[Vec<u8>]) -> Output {
    let server = Server::start(run, cache, &["--audit", audit.to_str().expect("utf-8")]);
    let a = agent();
    for img in images {
        let r = post(&a, &server.url("/predict"), Some("image/png"), img);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    drop(server);
    graft(
        cache,
        cwd,
        &[
            "monitor",
            "--run",
            run.to_str().expect("utf-8"),
            "--audit",
            audit.to_str().expect("utf-8"),
            "--on-alert",
            "echo >> alerted.txt",
        ],
    )
}

#[test]
fn held_out_images_are_healthy_and_darkened_or_one_class_traffic_alerts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cache_with_mobilenet(cwd);
    std::fs::write(
        cwd.join("quick.toml"),
        "[heads]\nheads = [\"linear\"]\nlrs = [0.01]\nepochs = 8\n[eval]\nlatency = 0\n",
    )
    .expect("config");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo");
    for args in [
        &[
            "train",
            demo.to_str().expect("utf-8"),
            "--name",
            "demo",
            "--config",
            "quick.toml",
            "--no-track",
        ][..],
        &["export", "--run", "runs/demo", "--no-track"][..],
    ] {
        let o = graft(&cache, cwd, args);
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    }
    let run = cwd.join("runs/demo");
    assert!(
        run.join("reference.json").is_file(),
        "graft export writes the profile"
    );
    let held = test_images(&run);
    assert!(held.len() >= 100, "{} test images", held.len());
    let bytes = |p: &Path| std::fs::read(p).expect("image");

    // In distribution: healthy.
    let same: Vec<Vec<u8>> = held.iter().map(|(p, _)| bytes(p)).collect();
    let o = monitor_after(&cache, cwd, &run, &cwd.join("same.db"), &same);
    println!("in distribution:\n{}", stdout(&o));
    assert!(
        o.status.success(),
        "healthy: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(!cwd.join("alerted.txt").exists());

    // Darkened by 40 %: the brightness and channel means move.
    let dark: Vec<Vec<u8>> = held
        .iter()
        .map(|(p, _)| {
            let img = image::open(p).expect("decode").to_rgb8();
            let d = image::RgbImage::from_fn(img.width(), img.height(), |x, y| {
                image::Rgb(
                    img.get_pixel(x, y)
                        .0
                        .map(|v| (f32::from(v) * 0.6).round() as u8),
                )
            });
            png_bytes(&d)
        })
        .collect();
    let o = monitor_after(&cache, cwd, &run, &cwd.join("dark.db"), &dark);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("ALERT") && err.contains("brightness"), "{err}");
    let text = stdout(&o);
    assert!(text.contains("brightness"), "{text}");
    let alerted = std::fs::read_to_string(cwd.join("alerted.txt")).expect("--on-alert ran");
    assert!(alerted.contains("monitor.json"), "{alerted}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("monitor.json")).expect("report"))
            .expect("json");
    assert!(report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .any(|c| c["name"] == "brightness" && c["alert"] == true));

    // One class only (each image twice, to have enough requests): the class mix.
    let first = held[0].1.clone();
    let one: Vec<Vec<u8>> = held
        .iter()
        .filter(|(_, l)| *l == first)
        .flat_map(|(p, _)| [bytes(p), bytes(p)])
        .collect();
    assert!(one.len() >= 30);
    let o = monitor_after(&cache, cwd, &run, &cwd.join("one.db"), &one);
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("class_mix"), "{}", stderr(&o));
}
