//! `graft serve` as a real process on 127.0.0.1, with a run trained by `graft train` on real
//! MobileNetV2 weights: predictions, clear 4xx JSON for bad input, API keys and rate limits,
//! 10,000 malformed requests without a 5xx, the load benchmark, and the web page driven in
//! headless Chromium through chromedriver.

mod common;
#[path = "serve/http.rs"]
mod http;
#[path = "serve/webdriver.rs"]
mod webdriver;

// The exported web app (graft export --format web) and POST /feedback.
#[path = "serve/web_app.rs"]
mod web_app;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{cache_with_mobilenet, coloured, coloured_folder, png_bytes, stderr, stdout};
use http::{agent, assert_error, get, multipart, post, reply, Server};
use serde_json::Value;

/// A trained and exported run, shared by every test of this file (trained once).
struct Fixture {
    root: PathBuf,
    cache: PathBuf,
    run: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-fixture");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir");
        let cache = cache_with_mobilenet(&root);
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
        graft(&["export", "--run", "runs/colours", "--precision", "int8"]);
        std::fs::write(
            run.join("classes.toml"),
            "[red]\nmeaning = \"stop\"\naction = \"brake\"\n\n[green]\nmeaning = \"go\"\n",
        )
        .expect("classes.toml");
        Fixture { root, cache, run }
    })
}

fn red_png() -> Vec<u8> {
    png_bytes(&coloured(99_001, 0))
}

#[test]
fn serves_the_int8_model() {
    let f = fixture();
    let server = Server::start(&f.run, &f.cache, &["--precision", "int8"]);
    let a = agent();
    let v = get(&a, &server.url("/version"));
    assert_eq!(v.json["onnx"], "model.int8.onnx", "{}", v.text);
    let sha = graft_model::weights::sha256_file(&f.run.join("model.int8.onnx")).expect("sha");
    assert_eq!(v.json["sha256"], sha.as_str());
    let r = post(&a, &server.url("/predict"), Some("image/png"), &red_png());
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["prediction"], "red", "{}", r.text);
    let green = png_bytes(&coloured(99_002, 1));
    let r = post(&a, &server.url("/predict"), Some("image/png"), &green);
    assert_eq!(r.json["prediction"], "green", "{}", r.text);
}

#[test]
fn predicts_and_answers_bad_input_with_clear_4xx_json() {
    let f = fixture();
    let server = Server::start(&f.run, &f.cache, &["--max-body-mb", "1"]);
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
    assert_eq!(r.json["threshold"], 0.7);
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
    assert_error(&get(&a, &server.url("/predict")), 405, "method_not_allowed");

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

/// Red texture on the left, green on the right: a map with somewhere to point.
fn two_colours() -> image::RgbImage {
    two_colours_seeded(99_003)
}

/// Red on the left, green on the right, textures from `seed`.
fn two_colours_seeded(seed: u64) -> image::RgbImage {
    let (red, green) = (coloured(seed, 0), coloured(seed + 1, 1));
    image::RgbImage::from_fn(96, 40, |x, y| {
        if x < 48 {
            *red.get_pixel(x, y)
        } else {
            *green.get_pixel(x - 48, y)
        }
    })
}

#[test]
fn explain_shows_where_the_model_looked_as_graft_explain_does() {
    use base64::Engine as _;
    let f = fixture();
    let server = Server::start(&f.run, &f.cache, &["--max-body-mb", "1"]);
    let a = agent();
    let version = get(&a, &server.url("/version"));
    assert_eq!(version.json["explain"], true, "{}", version.text);
    let photo = f.root.join("explain-two-colours.png");
    let bytes = png_bytes(&two_colours());
    std::fs::write(&photo, &bytes).expect("photo");

    let r = post(&a, &server.url("/explain"), Some("image/png"), &bytes);
    assert_eq!(r.status, 200, "{}", r.text);
    let e = &r.json;
    // The same prediction as /predict (the float graph; model.onnx is float too).
    let p = post(&a, &server.url("/predict"), Some("image/png"), &bytes);
    assert_eq!(
        e["prediction"], p.json["prediction"],
        "{}\n{}",
        r.text, p.text
    );
    let (pe, pp) = (e["probability"].as_f64(), p.json["probability"].as_f64());
    assert!(
        (pe.expect("p") - pp.expect("p")).abs() < 1e-4,
        "{pe:?} {pp:?}"
    );
    assert_eq!(e["explained"], e["prediction"]);
    assert_eq!(e["method"], "grad-cam");
    assert_eq!(e["layer"], "last feature map (7×7)");
    let map: Vec<f64> = e["map"]["values"]
        .as_array()
        .expect("map")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    assert_eq!(map.len(), 49);
    assert!(map.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(map.contains(&1.0), "scaled to its peak: {map:?}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(e["overlay_png"].as_str().expect("overlay"))
        .expect("base64");
    let overlay = image::load_from_memory(&png).expect("a PNG");
    assert_eq!((overlay.width(), overlay.height()), (224, 224));
    let (px, py) = (e["peak"]["x"].as_f64(), e["peak"]["y"].as_f64());
    assert!((0.0..96.0).contains(&px.expect("x")) && (0.0..40.0).contains(&py.expect("y")));

    // graft explain on the same photo: the same map, so the same metrics and peak (the two
    // maps differ by float rounding only, which can at most swap near-equal pixels' order).
    let out = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["explain", "--run"])
        .arg(&f.run)
        .arg(&photo)
        .args(["--json", "--save", "none", "--name", "serve-compare"])
        .current_dir(&f.root)
        .env("GRAFT_CACHE", &f.cache)
        .output()
        .expect("graft explain");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let rec: Value = text
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("a JSON record: {text}"));
    assert_eq!(rec["target"], e["explained"]);
    for m in [
        "confidence_drop",
        "confidence_increase",
        "concentration",
        "coverage",
        "deletion_auc",
        "insertion_auc",
    ] {
        let (cli, api) = (rec[m].as_f64(), e["metrics"][m].as_f64());
        assert!(
            (cli.expect(m) - api.expect(m)).abs() < 0.02,
            "{m}: graft explain {cli:?}, /explain {api:?}"
        );
    }
    // Within one cell of the map (a cell is 32 of the crop's 224 pixels; the crop is the
    // photo scaled by 256 / 40).
    let cell = 32.0 * 40.0 / 256.0;
    for axis in ["x", "y"] {
        let (cli, api) = (rec["peak"][axis].as_f64(), e["peak"][axis].as_f64());
        assert!(
            (cli.expect(axis) - api.expect(axis)).abs() <= cell + 1.0,
            "peak {axis}: graft explain {cli:?}, /explain {api:?}"
        );
    }
    assert_eq!(rec["suspicious"], e["suspicious"]);

    // Another class on request: its own map.
    let r = post(
        &a,
        &server.url("/explain?class=blue&top=1"),
        Some("image/png"),
        &bytes,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["explained"], "blue");
    assert_eq!(r.json["top"].as_array().map(Vec::len), Some(1));

    // Bad input, as /predict answers it: 4xx with a JSON error.
    assert_error(
        &post(
            &a,
            &server.url("/explain"),
            Some("image/png"),
            &bytes[..bytes.len() / 2],
        ),
        422,
        "corrupt_image",
    );
    assert_error(
        &post(&a, &server.url("/explain"), Some("image/png"), b""),
        400,
        "empty_image",
    );
    assert_error(
        &post(&a, &server.url("/explain"), Some("text/plain"), b"hello"),
        415,
        "unsupported_content_type",
    );
    let r = post(
        &a,
        &server.url("/explain?class=purple"),
        Some("image/png"),
        &bytes,
    );
    assert_error(&r, 400, "unknown_class");
    assert!(r.text.contains("blue, green, red"), "{}", r.text);
    assert_error(
        &post(
            &a,
            &server.url("/explain?colour=red"),
            Some("image/png"),
            &bytes,
        ),
        400,
        "bad_query",
    );
    let (ctype, body) = multipart(&[("image", "a.png", &bytes), ("image", "b.png", &bytes)]);
    assert_error(
        &post(&a, &server.url("/explain"), Some(&ctype), &body),
        400,
        "too_many_images",
    );
    assert_error(&get(&a, &server.url("/explain")), 405, "method_not_allowed");
    let big = vec![0u8; 2 << 20];
    let r = post(&a, &server.url("/explain"), Some("image/png"), &big);
    assert_eq!(r.status, 413, "{}", r.text);
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
    let f = fixture();
    let server = Server::start(
        &f.run,
        &f.cache,
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

#[test]
fn a_stalled_upload_times_out_with_json_408() {
    use std::io::{Read, Write};
    let f = fixture();
    let server = Server::start(&f.run, &f.cache, &["--timeout", "1"]);
    let addr = server.base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    // Announce 1000 bytes, send 10, then stall.
    conn.write_all(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .expect("write");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let started = Instant::now();
    // Headers and body may come in separate reads.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains('}') {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no complete response within 10 s: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"timeout\""), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));
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
    let f = fixture();
    let server = Server::start(&f.run, &f.cache, &["--max-body-mb", "1"]);
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
    let f = fixture();
    let json = f.root.join("bench-serve.json");
    let o = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["bench", "serve", "--run"])
        .arg(&f.run)
        .args([
            "--concurrency",
            "1,4",
            "--requests",
            "24",
            "--compare-audit",
            "--json",
        ])
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
    // The same levels without the audit trail, and the ratio.
    assert_eq!(v["audit"], true);
    let off = v["levels_without_audit"]
        .as_array()
        .expect("levels without audit");
    assert_eq!(off.len(), 2);
    assert!(out.contains("audit on") && out.contains("req/s"), "{out}");
}

#[test]
fn the_web_page_classifies_an_uploaded_photo_in_headless_chromium() {
    let f = fixture();
    let browser = webdriver::Browser::start();
    let server = Server::start(&f.run, &f.cache, &[]);
    let photo = f.root.join("upload-red.png");
    std::fs::write(&photo, red_png()).expect("photo");
    browser.goto(&server.url("/"));
    let input = browser.find("#file");
    browser.send_keys(&input, photo.to_str().expect("utf8"));
    let result = browser.find("#result");
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let s = browser.attribute(&result, "data-state");
        if s == "done" || s == "error" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no answer on the page (state {s})"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(state, "done", "page status: {}", browser.text("#status"));
    assert_eq!(
        browser.text("#prediction"),
        "red",
        "the page shows the prediction"
    );
    let bars = browser.text("#bars");
    assert!(bars.contains("green") && bars.contains('%'), "{bars}");
    let info = browser.text("#info");
    assert!(info.contains("brake"), "class info shown: {info}");
    assert!(browser.text("#model").contains("colours"));

    // "Where it looked": the heatmap over the photo, and what it is worth.
    let toggle = browser.find("#explain");
    browser.click(&toggle);
    let boxed = browser.find("#explain-box");
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let s = browser.attribute(&boxed, "data-state");
        if s == "shown" || s == "error" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no explanation on the page (state {s})"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let note = browser.text("#explain-note");
    assert_eq!(state, "shown", "{note}");
    assert!(
        note.contains("Grad-CAM for red") && note.contains("deletion AUC"),
        "{note}"
    );
    let preview = browser.find("#preview");
    let src = browser.attribute(&preview, "src");
    assert!(
        src.as_str()
            .is_some_and(|s| s.starts_with("data:image/png;base64,")),
        "the overlay replaces the photo"
    );

    let png = browser.screenshot();
    let img = image::load_from_memory(&png).expect("screenshot is an image");
    assert!(img.width() >= 600 && img.height() >= 600);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png");
    std::fs::write(&out, &png).expect("save screenshot");
    eprintln!("screenshot: {}", out.display());
}
