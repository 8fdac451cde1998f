//! `graft serve` as a real process on 127.0.0.1, with a run trained by `graft train` on real
//! MobileNetV2 weights: predictions, clear 4xx JSON for bad input, API keys and rate limits,
//! 10,000 malformed requests without a 5xx, the load benchmark, and the web page driven in
//! headless Chromium through chromedriver.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{cache_with_mobilenet, coloured, coloured_folder, png_bytes, stderr, stdout};
use serde_json::Value;

/// A trained and exported run, shared by every test of this file (trained once).
struct Fixture {
    root: PathBuf,
    cache: PathBuf,
    run: PathBuf,
}

fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-fixture");
            let _ = std::fs::remove_dir_all(&root);
            std::fs::create_dir_all(&root).expect("mkdir");
            let cache = cache_with_mobilenet(&root)?;
            coloured_folder(&root.join("photos"), 30);
            let graft = |args: &[&str]| {
                let o = Command::new(env!("CARGO_BIN_EXE_graft"))
                    .args(args)
                    .current_dir(&root)
                    .env("GRAFT_CACHE", &cache)
                    .output()
                    .expect("run graft");
                assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
            };
            graft(&["train", "photos", "--name", "colours"]);
            let run = root.join("runs/colours");
            graft(&["export", "--run", "runs/colours"]);
            std::fs::write(
                run.join("classes.toml"),
                "[red]\nmeaning = \"stop\"\naction = \"brake\"\n\n[green]\nmeaning = \"go\"\n",
            )
            .expect("classes.toml");
            Some(Fixture { root, cache, run })
        })
        .as_ref()
}

/// `graft serve` on a free port; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(f: &Fixture, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
            .arg("serve")
            .arg("--run")
            .arg(&f.run)
            .args(["--port", "0"])
            .args(extra)
            .env("GRAFT_CACHE", &f.cache)
            .env_remove("GRAFT_API_KEYS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn graft serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("graft serve exited before listening")
                .expect("read");
            if let Some(rest) = line.trim().strip_prefix("web page  ") {
                break rest.trim_end_matches('/').to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Server { child, base }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, and the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "no exit 10 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// Status, headers we look at, and the body parsed as JSON (Null if it is not JSON).
struct Reply {
    status: u16,
    retry_after: Option<String>,
    text: String,
    json: Value,
}

fn reply(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let r = r.expect("request");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.into_body().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        retry_after,
        text,
        json,
    }
}

fn post(a: &ureq::Agent, url: &str, ctype: Option<&str>, body: &[u8]) -> Reply {
    let mut req = a.post(url);
    if let Some(c) = ctype {
        req = req.header("Content-Type", c);
    }
    reply(req.send(body))
}

fn get(a: &ureq::Agent, url: &str) -> Reply {
    reply(a.get(url).call())
}

/// A multipart/form-data body with one part per `(field, filename, bytes)`.
fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "graft-test-boundary-7d1f";
    let mut body = Vec::new();
    for (field, file, bytes) in parts {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn assert_error(r: &Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.json["code"], code, "{}", r.text);
    assert!(
        r.json["error"].as_str().is_some_and(|m| m.len() > 10),
        "error message: {}",
        r.text
    );
}

fn red_png() -> Vec<u8> {
    png_bytes(&coloured(99_001, 0))
}

#[test]
fn predicts_and_answers_bad_input_with_clear_4xx_json() {
    let Some(f) = fixture() else { return };
    let server = Server::start(f, &["--max-body-mb", "1"]);
    let a = agent();

    // A good image, as the raw body and as a multipart field.
    let r = post(&a, &server.url("/predict"), Some("image/png"), &red_png());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["prediction"], "red", "{}", r.text);
    let top = r.json["top"].as_array().expect("top");
    assert_eq!(top.len(), 3);
    let p: Vec<f64> = top
        .iter()
        .map(|t| t["probability"].as_f64().expect("p"))
        .collect();
    assert!(p[0] >= p[1] && p[1] >= p[2], "{p:?}");
    assert!(
        (p.iter().sum::<f64>() - 1.0).abs() < 1e-3,
        "3 classes sum to 1"
    );
    assert_eq!(r.json["confident"], p[0] >= 0.7);
    assert_eq!(
        top[0]["info"]["action"], "brake",
        "class info from classes.toml"
    );
    let (ctype, body) = multipart(&[("image", "red.png", &red_png())]);
    let r = post(&a, &server.url("/predict?top=1"), Some(&ctype), &body);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["prediction"], "red");
    assert_eq!(r.json["top"].as_array().map(Vec::len), Some(1));
    let green = png_bytes(&coloured(99_002, 1));
    let r = post(&a, &server.url("/predict"), None, &green);
    assert_eq!(r.json["prediction"], "green", "{}", r.text);

    // Bad input: each a 4xx with a JSON error, never a 5xx.
    let png = red_png();
    assert_error(
        &post(
            &a,
            &server.url("/predict"),
            Some("image/png"),
            &png[..png.len() / 2],
        ),
        422,
        "corrupt_image",
    );
    assert_error(
        &post(
            &a,
            &server.url("/predict"),
            Some("image/jpeg"),
            b"this is not a photo",
        ),
        415,
        "not_an_image",
    );
    assert_error(
        &post(&a, &server.url("/predict"), Some("text/plain"), &png),
        415,
        "unsupported_content_type",
    );
    assert_error(
        &post(&a, &server.url("/predict"), Some("image/png"), b""),
        400,
        "empty_image",
    );
    let big = vec![0x42u8; 2 << 20];
    assert_error(
        &post(&a, &server.url("/predict"), Some("image/jpeg"), &big),
        413,
        "too_large",
    );
    let (ctype, body) = multipart(&[("image", "big.jpg", &big)]);
    assert_error(
        &post(&a, &server.url("/predict"), Some(&ctype), &body),
        413,
        "too_large",
    );
    let (ctype, body) = multipart(&[("image", "a.png", &png), ("image", "b.png", &png)]);
    assert_error(
        &post(&a, &server.url("/predict"), Some(&ctype), &body),
        400,
        "too_many_images",
    );
    assert_error(
        &post(&a, &server.url("/predict?top=0"), Some("image/png"), &png),
        400,
        "bad_query",
    );
    assert_error(&get(&a, &server.url("/nope")), 404, "not_found");

    // A batch with one unreadable image answers the others.
    let (ctype, body) = multipart(&[
        ("images", "r.png", &png),
        ("images", "junk.png", b"junk"),
        ("images", "g.png", &green),
    ]);
    let r = post(&a, &server.url("/predict/batch"), Some(&ctype), &body);
    assert_eq!(r.status, 200, "{}", r.text);
    let preds = r.json["predictions"].as_array().expect("predictions");
    assert_eq!(preds.len(), 3);
    assert_eq!(preds[0]["prediction"], "red");
    assert_eq!(preds[1]["code"], "not_an_image");
    assert_eq!(preds[1]["image"], "junk.png");
    assert_eq!(preds[2]["prediction"], "green");

    // Health, version, metrics.
    let h = get(&a, &server.url("/health"));
    assert_eq!((h.status, h.json["status"].as_str()), (200, Some("ok")));
    let v = get(&a, &server.url("/version"));
    let onnx = std::fs::read(f.run.join("model.onnx")).expect("model.onnx");
    assert_eq!(v.json["onnx"], "model.onnx");
    assert_eq!(v.json["sha256"].as_str(), Some(sha256_hex(&onnx).as_str()));
    assert_eq!(v.json["classes"].as_array().map(Vec::len), Some(3));
    assert_eq!(v.json["auth_required"], false);
    let m = get(&a, &server.url("/metrics")).text;
    for needle in [
        "graft_http_requests_total{route=\"/predict\",status=\"200\"} 3",
        "graft_http_requests_total{route=\"/predict\",status=\"400\"} 3",
        "graft_http_requests_total{route=\"/predict\",status=\"413\"} 2",
        "graft_http_requests_total{route=\"/predict\",status=\"415\"} 2",
        "graft_http_requests_total{route=\"/predict\",status=\"422\"} 1",
        "graft_http_requests_total{route=\"other\",status=\"404\"} 1",
        "graft_predictions_total{class=\"red\"} 3",
        "graft_predictions_total{class=\"green\"} 2",
        "graft_http_request_duration_seconds_count{route=\"/predict\"}",
        "graft_low_confidence_ratio",
    ] {
        assert!(m.contains(needle), "{needle} missing from\n{m}");
    }

    // The web page and its assets are served from the binary.
    let page = get(&a, &server.url("/"));
    assert_eq!(page.status, 200);
    assert!(page.text.contains("id=\"file\"") && page.text.contains("/app.js"));
    assert_eq!(get(&a, &server.url("/app.js")).status, 200);

    // SIGTERM: a clean exit.
    assert!(server.terminate().success());
}

fn sha256_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).expect("write");
    let o = Command::new("sha256sum")
        .arg(&p)
        .output()
        .expect("sha256sum");
    stdout(&o)
        .split_whitespace()
        .next()
        .expect("hash")
        .to_string()
}

#[test]
fn api_keys_and_rate_limits() {
    let Some(f) = fixture() else { return };
    let server = Server::start(
        f,
        &[
            "--api-key",
            "k-one",
            "--api-key",
            "k-two",
            "--rate-limit",
            "3",
        ],
    );
    let a = agent();
    let png = red_png();
    let url = server.url("/predict");
    assert_error(
        &post(&a, &url, Some("image/png"), &png),
        401,
        "missing_api_key",
    );
    let r = reply(a.post(&url).header("X-API-Key", "k-three").send(&png[..]));
    assert_error(&r, 401, "bad_api_key");
    for i in 0..3 {
        let r = reply(
            a.post(&url)
                .header("Authorization", "Bearer k-one")
                .header("Content-Type", "image/png")
                .send(&png[..]),
        );
        assert_eq!(r.status, 200, "request {i}: {}", r.text);
    }
    let r = reply(
        a.post(&url)
            .header("Authorization", "Bearer k-one")
            .send(&png[..]),
    );
    assert_error(&r, 429, "rate_limited");
    assert_eq!(r.retry_after.as_deref(), Some("20"));
    // Limits are per key.
    let r = reply(a.post(&url).header("X-API-Key", "k-two").send(&png[..]));
    assert_eq!(r.status, 200, "{}", r.text);
    // Health, version and the page stay open.
    assert_eq!(get(&a, &server.url("/health")).status, 200);
    assert_eq!(get(&a, &server.url("/version")).json["auth_required"], true);
    assert_eq!(get(&a, &server.url("/")).status, 200);
}

/// Deterministic xorshift bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn ten_thousand_malformed_requests_get_no_server_error() {
    let Some(f) = fixture() else { return };
    let server = Server::start(f, &["--max-body-mb", "1"]);
    let png = red_png();
    let mut jpeg = Vec::new();
    image::DynamicImage::ImageRgb8(coloured(5, 2))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .expect("jpeg");
    const N: usize = 10_000;
    const CLIENTS: usize = 4;
    let statuses: Vec<Vec<u16>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (png, jpeg, server) = (&png, &jpeg, &server);
                s.spawn(move || {
                    let a = agent();
                    let mut rng = Rng(0x5eed_0000 + c as u64 * 7919);
                    let mut out = Vec::new();
                    for i in (c..N).step_by(CLIENTS) {
                        let ctypes = [
                            None,
                            Some("image/jpeg"),
                            Some("image/png"),
                            Some("application/octet-stream"),
                            Some("text/plain"),
                            Some("application/json"),
                            Some("multipart/form-data"),
                            Some("multipart/form-data; boundary=x"),
                            Some("image/x-weird; q=\"\""),
                            Some("multipart/form-data; boundary="),
                        ];
                        let ctype = ctypes[rng.below(ctypes.len())];
                        let body: Vec<u8> = match i % 6 {
                            0 => {
                                let n = rng.below(4096);
                                rng.bytes(n)
                            }
                            1 => jpeg[..rng.below(jpeg.len())].to_vec(),
                            2 => png[..rng.below(png.len())].to_vec(),
                            3 => {
                                // A real header with garbage after it.
                                let mut b = jpeg[..jpeg.len().min(200)].to_vec();
                                let n = rng.below(2000);
                                b.extend(rng.bytes(n));
                                b
                            }
                            4 => {
                                let (_, mut b) = multipart(&[("image", "x.jpg", &rng.bytes(300))]);
                                b.truncate(rng.below(b.len()));
                                b
                            }
                            _ => {
                                let mut b = png.clone();
                                for _ in 0..8 {
                                    let at = rng.below(b.len());
                                    b[at] = rng.next() as u8;
                                }
                                b
                            }
                        };
                        let path = match i % 5 {
                            0 => "/predict/batch",
                            1 => "/predict?top=abc",
                            _ => "/predict",
                        };
                        let mut req = a.post(server.url(path));
                        if let Some(c) = ctype {
                            req = req.header("Content-Type", c);
                        }
                        let status = match req.send(&body[..]) {
                            Ok(r) => {
                                let st = r.status().as_u16();
                                let _ = r.into_body().read_to_vec();
                                st
                            }
                            Err(e) => panic!("request {i} failed at the transport level: {e}"),
                        };
                        out.push(status);
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client"))
            .collect()
    });
    let all: Vec<u16> = statuses.into_iter().flatten().collect();
    assert_eq!(all.len(), N);
    let server_errors: Vec<u16> = all.iter().copied().filter(|&s| s >= 500).collect();
    assert!(
        server_errors.is_empty(),
        "{} server errors: {:?}",
        server_errors.len(),
        &server_errors[..server_errors.len().min(20)]
    );
    let mut counts = std::collections::BTreeMap::new();
    for s in &all {
        *counts.entry(*s).or_insert(0usize) += 1;
    }
    eprintln!("statuses over {N} malformed requests: {counts:?}");
    let a = agent();
    assert_eq!(get(&a, &server.url("/health")).status, 200);
    let r = post(&a, &server.url("/predict"), Some("image/png"), &png);
    assert_eq!(r.json["prediction"], "red", "still predicting: {}", r.text);
}

#[test]
fn bench_serve_reports_latency_levels_without_errors() {
    let Some(f) = fixture() else { return };
    let json = f.root.join("bench-serve.json");
    let o = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["bench", "serve", "--run"])
        .arg(&f.run)
        .args(["--concurrency", "1,4", "--requests", "24", "--json"])
        .arg(&json)
        .env("GRAFT_CACHE", &f.cache)
        .output()
        .expect("bench serve");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("P95 ms") && out.contains("0 errors; server healthy"),
        "{out}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("parse");
    let levels = v["levels"].as_array().expect("levels");
    assert_eq!(levels.len(), 2);
    for l in levels {
        assert_eq!(l["requests"], 24);
        assert_eq!(l["errors"], 0);
        let (p50, p95, p99) = (
            l["p50_ms"].as_f64().expect("p50"),
            l["p95_ms"].as_f64().expect("p95"),
            l["p99_ms"].as_f64().expect("p99"),
        );
        assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{l}");
    }
}

/// chromedriver's W3C WebDriver API, over plain HTTP on 127.0.0.1.
struct WebDriver {
    agent: ureq::Agent,
    base: String,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Ending the session closes Chromium, also when an assertion failed.
impl Drop for WebDriver {
    fn drop(&mut self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.agent.delete(&url).call();
    }
}

impl WebDriver {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let r = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            ("DELETE", _) => self.agent.delete(&url).call(),
            (_, b) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(
                    b.unwrap_or(Value::Object(Default::default()))
                        .to_string()
                        .as_bytes(),
                ),
        };
        let r = reply(r);
        assert_eq!(r.status, 200, "WebDriver {method} {path}: {}", r.text);
        r.json["value"].clone()
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(serde_json::json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().expect("element id").to_string()
    }

    fn attribute(&self, el: &str, name: &str) -> Value {
        self.call("GET", &format!("/element/{el}/attribute/{name}"), None)
    }

    fn text(&self, el: &str) -> String {
        self.call("GET", &format!("/element/{el}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= u32::from(val(c)) << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn the_web_page_classifies_an_uploaded_photo_in_headless_chromium() {
    let Some(f) = fixture() else { return };
    let chromium = Path::new("/usr/bin/chromium");
    let driver = Path::new("/usr/bin/chromedriver");
    if !chromium.exists() || !driver.exists() {
        assert!(
            std::env::var_os("GRAFT_REQUIRE_BROWSER").is_none(),
            "GRAFT_REQUIRE_BROWSER is set but chromium or chromedriver is missing \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: install chromium and chromium-driver to run the browser test");
        return;
    }
    let server = Server::start(f, &[]);
    let photo = f.root.join("upload-red.png");
    std::fs::write(&photo, red_png()).expect("photo");
    let port = free_port();
    let mut chromedriver = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut chromedriver);
    let base = format!("http://127.0.0.1:{port}");
    let a = agent();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_ok(&a, &format!("{base}/status")).is_none() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = tempfile::tempdir().expect("profile");
    let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=900,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        },
    }}});
    let r = reply(
        a.post(format!("{base}/session"))
            .header("Content-Type", "application/json")
            .send(caps.to_string().as_bytes()),
    );
    assert_eq!(r.status, 200, "new session: {}", r.text);
    let wd = WebDriver {
        agent: a,
        base,
        session: r.json["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_string(),
    };
    wd.call(
        "POST",
        "/url",
        Some(serde_json::json!({"url": server.url("/")})),
    );
    let input = wd.find("#file");
    wd.call(
        "POST",
        &format!("/element/{input}/value"),
        Some(serde_json::json!({"text": photo.to_str().expect("utf8")})),
    );
    let result = wd.find("#result");
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let s = wd.attribute(&result, "data-state");
        if s == "done" || s == "error" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no answer on the page (state {s})"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = wd.text(&wd.find("#status"));
    assert_eq!(state, "done", "page status: {status}");
    let prediction = wd.text(&wd.find("#prediction"));
    assert_eq!(prediction, "red", "the page shows the prediction");
    let bars = wd.text(&wd.find("#bars"));
    assert!(bars.contains("green") && bars.contains('%'), "{bars}");
    let info = wd.text(&wd.find("#info"));
    assert!(info.contains("brake"), "class info shown: {info}");
    let model = wd.text(&wd.find("#model"));
    assert!(model.contains("colours"), "{model}");

    let shot = wd.call("GET", "/screenshot", None);
    let png = decode_base64(shot.as_str().expect("base64 screenshot"));
    let img = image::load_from_memory(&png).expect("screenshot is an image");
    assert!(img.width() >= 600 && img.height() >= 600);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png");
    std::fs::write(&out, &png).expect("save screenshot");
    eprintln!("screenshot: {}", out.display());
}

fn get_ok(a: &ureq::Agent, url: &str) -> Option<()> {
    let r = a.get(url).call().ok()?;
    (r.status() == 200).then_some(())
}
