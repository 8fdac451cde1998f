//! `graft export --format web` in headless Chromium (offline, then back online) and
//! `POST /feedback`, on the serve tests' trained run.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::common::{self, png_bytes, stderr, stdout};
use super::http::{agent, assert_error, post, Server};
use super::{fixture, two_colours_seeded, webdriver, Fixture};

/// `graft predict --json -` on images: every class's probability, per image.
fn predicted(
    f: &Fixture,
    run: &str,
    images: &[PathBuf],
) -> Vec<std::collections::BTreeMap<String, f64>> {
    let o = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["predict", "--run", run, "--top", "3", "--json", "-"])
        .args(images)
        .current_dir(&f.root)
        .env("GRAFT_CACHE", &f.cache)
        .output()
        .expect("graft predict");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("predict JSON");
    let preds = v["predictions"].as_array().expect("predictions");
    preds
        .iter()
        .map(|p| {
            p["top"]
                .as_array()
                .expect("top")
                .iter()
                .map(|t| {
                    (
                        t["class"].as_str().expect("class").to_string(),
                        t["probability"].as_f64().expect("probability"),
                    )
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_exported_web_app_classifies_offline_in_the_browser_as_graft_predict_does() {
    let f = fixture();
    let runtime = common::required_dir("GRAFT_ORT_WEB_DIR");
    let out = f.root.join("webapp");
    let o = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args([
            "export",
            "--run",
            "runs/colours",
            "--format",
            "web",
            "--api",
            "/",
            "--out",
        ])
        .arg(&out)
        .current_dir(&f.root)
        .env("GRAFT_CACHE", &f.cache)
        .env("GRAFT_ORT_WEB_DIR", &runtime)
        .output()
        .expect("graft export --format web");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    for file in [
        "index.html",
        "app.js",
        "sw.js",
        "model.onnx",
        "model.json",
        "manifest.webmanifest",
        "icon-512.png",
        "ort/ort-wasm-simd-threaded.wasm",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let onnx = std::fs::read(out.join("model.onnx")).expect("web model");
    // Make the exported app an older model than the server's (another file, trained before):
    // online, the page then asks the server, offline it answers itself.
    let meta_path = out.join("model.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).expect("model.json")).expect("JSON");
    assert!(meta["trained_ms"].as_i64().is_some_and(|t| t > 0), "{meta}");
    let old_sha = "0".repeat(64);
    meta["sha256"] = serde_json::json!(old_sha);
    meta["trained_ms"] = serde_json::json!(1);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).expect("JSON")).expect("write");
    assert_eq!(
        onnx,
        std::fs::read(f.run.join("model.onnx")).expect("run model")
    );
    // One photo at the model's resize size (the resize is the identity), one of 97×61 (the
    // browser resamples as graft does); each with graft predict's probabilities and the
    // encoder's features from the same file in ONNX Runtime, from graft's preprocessing. The
    // colours model is sure of itself (probabilities 0 and 1); its features are not saturated,
    // so they are what shows a difference in preprocessing.
    let model = graft_train::HeadModel::load(&f.run).expect("model");
    let pre = model.meta.preprocess;
    let mut session = graft_model::ort_backend::session_from_onnx(&onnx, Default::default())
        .expect("ONNX Runtime (ORT_DYLIB_PATH)");
    let mut photos = Vec::new();
    for (name, (w, h), seed) in [("256x256", (256, 256), 11), ("97x61", (97, 61), 12)] {
        let img = image::imageops::resize(
            &two_colours_seeded(seed),
            w,
            h,
            image::imageops::FilterType::Triangle,
        );
        let p = f.root.join(format!("web-{name}.png"));
        std::fs::write(&p, png_bytes(&img)).expect("photo");
        let (_, decoded) = graft_data::decode::read_and_decode(&p).expect("decode");
        let features = graft_model::ort_backend::run_images(
            &mut session,
            &pre.apply(&decoded),
            1,
            pre.size as usize,
            "features",
        )
        .expect("features");
        photos.push((name, p, features));
    }
    let wants = predicted(
        f,
        "runs/colours",
        &photos.iter().map(|(_, p, _)| p.clone()).collect::<Vec<_>>(),
    );
    let paths: Vec<_> = photos
        .into_iter()
        .zip(wants)
        .map(|((name, p, feats), want)| (name, p, want, feats))
        .collect();

    let dir = out.to_str().expect("utf-8");
    let mut server = Server::start(&f.run, &f.cache, &["--web", dir]);
    // The folder is served with the types the browser needs.
    let a = agent();
    let wasm = a
        .get(server.url("/app/ort/ort-wasm-simd-threaded.wasm"))
        .call()
        .expect("wasm");
    assert_eq!(
        wasm.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/wasm")
    );
    let browser = webdriver::Browser::start();
    browser.goto(&server.url("/app/"));
    let ready = browser.wait_attribute("body", "data-ready", &["true", "error"], 60);
    assert_eq!(ready, "true", "{}", browser.text("#model"));
    // The service worker has cached every file.
    browser.wait_attribute("body", "data-offline", &["ready"], 60);
    // Online, with a newer model on the server: the server answers.
    browser.wait_attribute("body", "data-server", &["newer"], 30);
    let input = browser.find("#file");
    browser.send_keys(&input, paths[0].1.to_str().expect("utf-8"));
    let state = browser.wait_attribute("#result", "data-state", &["done", "error"], 60);
    assert_eq!(state, "done", "online: {}", browser.text("#status"));
    assert_eq!(browser.text("#badge"), "from server");
    let top_class = |m: &std::collections::BTreeMap<String, f64>| {
        m.iter()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(c, _)| c.clone())
    };
    let class = browser.attribute(&browser.find("#prediction"), "data-class");
    assert_eq!(class.as_str(), top_class(&paths[0].2).as_deref());
    // Offline: the browser off the network and the server gone.
    browser.cdp(
        "Network.emulateNetworkConditions",
        serde_json::json!({"offline": true, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}),
    );
    server.kill9();
    browser.goto(&server.url("/app/"));
    let ready = browser.wait_attribute("body", "data-ready", &["true", "error"], 60);
    assert_eq!(ready, "true", "offline: {}", browser.text("#model"));
    assert!(
        browser.text("#network").contains("offline"),
        "{}",
        browser.text("#network")
    );
    for (name, path, want, feats) in &paths {
        let input = browser.find("#file");
        browser.send_keys(&input, path.to_str().expect("utf-8"));
        let state = browser.wait_attribute("#result", "data-state", &["done", "error"], 60);
        assert_eq!(state, "done", "{name}: {}", browser.text("#status"));
        let probs: std::collections::BTreeMap<String, f64> = serde_json::from_str(
            browser
                .attribute(&browser.find("#answer"), "data-probs")
                .as_str()
                .expect("data-probs"),
        )
        .expect("probabilities");
        let top = |m: &std::collections::BTreeMap<String, f64>| {
            m.iter()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(c, _)| c.clone())
        };
        assert_eq!(top(&probs), top(want), "{name}: {probs:?} vs {want:?}");
        let class = browser.attribute(&browser.find("#prediction"), "data-class");
        assert_eq!(class.as_str(), top(want).as_deref());
        let diff = want
            .iter()
            .map(|(c, p)| (p - probs[c]).abs())
            .fold(0.0, f64::max);
        eprintln!("{name}: graft predict {want:?}, browser {probs:?}, max |diff| {diff:.2e}");
        assert!(
            diff < 1e-3,
            "{name}: browser {probs:?}, graft predict {want:?}"
        );
        let browser_feats: Vec<f32> = serde_json::from_str(
            browser
                .attribute(&browser.find("#answer"), "data-features")
                .as_str()
                .expect("data-features"),
        )
        .expect("features");
        assert_eq!(browser_feats.len(), feats.len());
        let scale = feats.iter().fold(0f32, |m, v| m.max(v.abs()));
        let fdiff = feats
            .iter()
            .zip(&browser_feats)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{name}: features max |diff| {fdiff:.2e} (largest feature {scale:.2})");
        // Same file, same input: only the two runtimes' arithmetic differs (WebAssembly SIMD
        // against native kernels); a pixel off by one level moves features by ~1e-2.
        assert!(
            fdiff < 1e-3 * scale.max(1.0),
            "{name}: features differ by {fdiff}"
        );
        assert_eq!(browser.text("#badge"), "on this device");
    }
    // Both predictions wait in the browser's queue while offline.
    browser.wait_attribute("body", "data-queued", &["2"], 30);
    let shot = f.root.join("web-offline.png");
    std::fs::write(&shot, browser.screenshot()).expect("screenshot");
    eprintln!("screenshot: {}", shot.display());
    // Back online, the server up again on the same address: the queue is sent to /feedback
    // and lands in the audit trail, once.
    let audit = f.root.join("web-audit.db");
    let _ = std::fs::remove_file(&audit);
    let port = server.base.rsplit(':').next().expect("port").to_string();
    let run = f.run.to_str().expect("utf-8");
    let audit_arg = audit.to_str().expect("utf-8");
    let _back = Server::spawn(
        &f.cache,
        Path::new("."),
        &[
            "--run", run, "--web", dir, "--port", &port, "--audit", audit_arg,
        ],
        &[],
    );
    browser.cdp(
        "Network.emulateNetworkConditions",
        serde_json::json!({"offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}),
    );
    browser.wait_attribute("body", "data-queued", &["0"], 60);
    let conn = rusqlite::Connection::open(&audit).expect("audit trail");
    let rows: Vec<(String, f64, String)> = conn
        .prepare("SELECT predicted, probability, sha256 FROM field_predictions ORDER BY seq")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read");
    assert_eq!(rows.len(), 2, "{rows:?}");
    // Recorded with the sha256 the device's model.json gave.
    let sha = old_sha;
    for ((row_class, row_p, row_sha), (name, _, want, _)) in rows.iter().zip(&paths) {
        let (class, p) = want.iter().max_by(|a, b| a.1.total_cmp(b.1)).expect("top");
        assert_eq!(row_class, class, "{name}");
        assert!((row_p - p).abs() < 1e-3, "{name}: {row_p} vs {p}");
        assert_eq!(row_sha, &sha);
    }
}

#[test]
fn feedback_records_field_predictions_once_and_answers_bad_input_with_4xx_json() {
    let f = fixture();
    let audit = f.root.join("feedback-audit.db");
    let _ = std::fs::remove_file(&audit);
    let audit_arg = audit.to_str().expect("utf-8");
    let server = Server::start(&f.run, &f.cache, &["--audit", audit_arg]);
    let a = agent();
    let url = server.url("/feedback");
    let json = Some("application/json");
    let body = serde_json::json!({"client": "phone-1", "predictions": [
        {"seq": 1, "made_ms": 1_700_000_000_000i64, "sha256": "ab", "predicted": "red",
         "probability": 0.9, "confident": true, "top": [["red", 0.9], ["green", 0.1]],
         "latency_ms": 61.5},
        {"seq": 2, "made_ms": 1_700_000_001_000i64, "sha256": "ab", "predicted": "green",
         "probability": 0.55, "confident": false, "top": [["green", 0.55]], "latency_ms": 58.0}
    ]});
    let bytes = body.to_string().into_bytes();
    let r = post(&a, &url, json, &bytes);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json["recorded"].as_u64(), r.json["duplicates"].as_u64()),
        (Some(2), Some(0))
    );
    // A resend (the device did not hear the answer) is recorded once.
    let r = post(&a, &url, json, &bytes);
    assert_eq!(
        (r.json["recorded"].as_u64(), r.json["duplicates"].as_u64()),
        (Some(0), Some(2))
    );
    let conn = rusqlite::Connection::open(&audit).expect("audit");
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM field_predictions", [], |r| r.get(0))
        .expect("count");
    assert_eq!(n, 2);
    // graft audit export --field reads them back.
    let o = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["audit", "export", "--audit", audit_arg, "--field"])
        .output()
        .expect("graft audit export");
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["client"], "phone-1");
    assert_eq!(rows[1]["predicted"], "green");
    assert_eq!(rows[1]["seq"], 2);
    // graft monitor judges them beside the served traffic (none here), under their own names:
    // both came from a file that is not the run's export.
    let out = f.root.join("feedback-monitor.json");
    let o = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["monitor", "--run"])
        .arg(&f.run)
        .args(["--audit", audit_arg, "--out"])
        .arg(&out)
        .env("GRAFT_CACHE", &f.cache)
        .output()
        .expect("graft monitor");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("2 predictions made offline by the web page"),
        "{}",
        stdout(&o)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("report")).expect("JSON");
    assert_eq!(report["field_predictions"], 2);
    let checks = report["checks"].as_array().expect("checks");
    let field: Vec<&str> = checks
        .iter()
        .filter(|c| c["kind"] == "field")
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(field.contains(&"field_class_mix"), "{field:?}");
    let stale = checks
        .iter()
        .find(|c| c["name"] == "field_other_model")
        .expect("field_other_model");
    assert_eq!(stale["value"], 1.0, "{stale}");
    // Bad input: 4xx JSON naming what is wrong.
    assert_error(&post(&a, &url, json, b"{not json"), 400, "bad_feedback");
    assert_error(
        &post(&a, &url, json, br#"{"client": "x"}"#),
        400,
        "bad_feedback",
    );
    let mut wrong = body.clone();
    wrong["predictions"][0]["probability"] = serde_json::json!(1.5);
    let r = post(&a, &url, json, wrong.to_string().as_bytes());
    assert_error(&r, 400, "bad_feedback");
    assert!(r.text.contains("prediction 0"), "{}", r.text);
    // Without an audit trail there is nowhere to record them.
    let quiet = Server::start(&f.run, &f.cache, &["--no-audit"]);
    let r = post(&a, &quiet.url("/feedback"), json, &bytes);
    assert_error(&r, 503, "no_audit_trail");
}
