//! `graft monitor` on the real server's audit trail: the demo model served held-out demo
//! images is healthy (exit 0); the same images darkened by 40 % drift (exit 1, naming the
//! statistics that moved, the encoder's embeddings among them); images of one class only trip
//! the class-mix check. Bad uploads count as client errors, not in the error rate.

mod common;
#[path = "serve/http.rs"]
mod http;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{cache_with_mobilenet, graft_in as graft, png_bytes, stderr, stdout};
use http::{agent, get, post, Server};

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

/// Serve `images` (bytes) one by one to a server writing `audit`, and `bad` uploads that are
/// not images, then `graft monitor`; with the server's `/metrics` before it stopped.
fn monitor_after(
    cache: &Path,
    cwd: &Path,
    run: &Path,
    audit: &Path,
    images: &[Vec<u8>],
    bad: usize,
) -> (Output, String) {
    let server = Server::start(run, cache, &["--audit", audit.to_str().expect("utf-8")]);
    let a = agent();
    for img in images {
        let r = post(&a, &server.url("/predict"), Some("image/png"), img);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    for _ in 0..bad {
        let r = post(
            &a,
            &server.url("/predict"),
            Some("image/png"),
            b"not a picture",
        );
        assert_eq!(r.status, 415, "{}", r.text);
    }
    let metrics = get(&a, &server.url("/metrics")).text;
    drop(server);
    let o = graft(
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
    );
    (o, metrics)
}

/// A sample's value in Prometheus text.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
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
    let run = cwd.join("runs/demo");
    let o = graft(
        &cache,
        cwd,
        &[
            "train",
            demo.to_str().expect("utf-8"),
            "--name",
            "demo",
            "--config",
            "quick.toml",
            "--no-track",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let profile =
        std::fs::read(run.join("reference.json")).expect("graft train writes the profile");
    let o = graft(&cache, cwd, &["export", "--run", "runs/demo", "--no-track"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(
        std::fs::read(run.join("reference.json")).expect("profile"),
        profile,
        "graft export keeps a current profile"
    );
    let reference: serde_json::Value = serde_json::from_slice(&profile).expect("json");
    let embeddings = reference["embeddings"].as_array().expect("embeddings");
    assert!(embeddings.len() >= 100, "{} embeddings", embeddings.len());
    assert_eq!(embeddings[0].as_array().map(Vec::len), Some(32));
    let held = test_images(&run);
    assert!(held.len() >= 100, "{} test images", held.len());
    let bytes = |p: &Path| std::fs::read(p).expect("image");

    // In distribution: healthy.
    let same: Vec<Vec<u8>> = held.iter().map(|(p, _)| bytes(p)).collect();
    let (o, metrics) = monitor_after(&cache, cwd, &run, &cwd.join("same.db"), &same, 3);
    let brightness = "graft_drift_psi{statistic=\"brightness\"}";
    assert!(sample(&metrics, brightness) < 0.25, "{metrics}");
    assert!(
        sample(&metrics, "graft_drift_class_mix_psi") < 0.25,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "graft_drift_window_images"),
        held.len() as f64
    );
    assert_eq!(
        sample(&metrics, "graft_prediction_confidence_count"),
        held.len() as f64
    );
    println!("in distribution:\n{}", stdout(&o));
    assert!(
        o.status.success(),
        "healthy: {}\n{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(!cwd.join("alerted.txt").exists());
    let checks = |o: &Output| -> Vec<serde_json::Value> {
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("monitor.json")).expect("report"))
                .expect("json");
        assert!(o.status.code().is_some());
        report["checks"].as_array().expect("checks").clone()
    };
    let check = |all: &[serde_json::Value], name: &str| -> serde_json::Value {
        all.iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check in {all:?}"))
            .clone()
    };
    let healthy = checks(&o);
    assert_eq!(check(&healthy, "embedding_mmd")["alert"], false);
    let errors = check(&healthy, "error_rate");
    assert_eq!(errors["value"], 0.0);
    let detail = errors["detail"].as_str().expect("detail");
    assert!(detail.contains("3 refused as bad input"), "{detail}");

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
    let (o, metrics) = monitor_after(&cache, cwd, &run, &cwd.join("dark.db"), &dark, 0);
    assert!(sample(&metrics, brightness) > 0.25, "{metrics}");
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("ALERT") && err.contains("brightness"), "{err}");
    let text = stdout(&o);
    assert!(text.contains("brightness"), "{text}");
    let alerted = std::fs::read_to_string(cwd.join("alerted.txt")).expect("--on-alert ran");
    assert!(alerted.contains("monitor.json"), "{alerted}");
    let dark = checks(&o);
    assert_eq!(check(&dark, "brightness")["alert"], true);
    let page = std::fs::read_to_string(run.join("monitor.html")).expect("monitor.html");
    assert!(
        page.contains("ALERT: ") && page.contains("brightness"),
        "{page}"
    );
    assert!(
        page.contains("data:image/png;base64,"),
        "the page has its figures"
    );
    assert_eq!(check(&dark, "embedding_mmd")["alert"], true);

    // One class only (each image twice, to have enough requests): the class mix.
    let first = held[0].1.clone();
    let one: Vec<Vec<u8>> = held
        .iter()
        .filter(|(_, l)| *l == first)
        .flat_map(|(p, _)| [bytes(p), bytes(p)])
        .collect();
    assert!(one.len() >= 30);
    let (o, metrics) = monitor_after(&cache, cwd, &run, &cwd.join("one.db"), &one, 0);
    assert!(
        sample(&metrics, "graft_drift_class_mix_psi") > 0.25,
        "{metrics}"
    );
    assert_eq!(o.status.code(), Some(1), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("class_mix"), "{}", stderr(&o));
}
