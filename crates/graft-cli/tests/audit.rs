//! The audit trail of `graft serve`, on the real server: every answered prediction has its
//! row — also when the server is killed with SIGKILL in the middle of a load — with the
//! image's statistics and never the image, its bytes or its file name.

mod common;
#[path = "serve/http.rs"]
mod http;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{cache_with_mobilenet, coloured, coloured_folder, png_bytes, stderr, stdout};
use http::{agent, multipart, post, Server};
use serde_json::Value;

struct Fixture {
    cache: PathBuf,
    run: PathBuf,
}

/// A trained and exported run, shared by the tests of this file.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit-fixture");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("mkdir");
        let cache = cache_with_mobilenet(&root);
        coloured_folder(&root.join("photos"), 12);
        for args in [
            &["train", "photos", "--name", "colours", "--no-track"][..],
            &["export", "--run", "runs/colours", "--no-track"][..],
        ] {
            let o = Command::new(env!("CARGO_BIN_EXE_graft"))
                .args(args)
                .current_dir(&root)
                .env("GRAFT_CACHE", &cache)
                .output()
                .expect("run graft");
            assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        }
        Fixture {
            cache,
            run: root.join("runs/colours"),
        }
    })
}

fn export(path: &Path) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["audit", "export", "--audit"])
        .arg(path)
        .output()
        .expect("graft audit export");
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    v.as_array().cloned().expect("array")
}

const MARKER: &[u8] = b"GRAFT-PRIVATE-MARKER-5e1f";

#[test]
fn every_answer_is_recorded_with_its_statistics_and_never_the_image() {
    let f = fixture();
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("audit.db");
    let db_arg = db.to_str().expect("utf-8");
    let server = Server::start(&f.run, &f.cache, &["--audit", db_arg, "--api-key", "k-123"]);
    let a = agent();
    // A PNG with the marker after its end: decoders stop at IEND, a byte-level copy would not.
    let mut red = png_bytes(&coloured(5, 0));
    red.extend_from_slice(MARKER);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = a
            .post(server.url("/predict"))
            .header("x-api-key", "k-123")
            .content_type("image/png")
            .send(&red[..])
            .expect("post");
        let mut r = r;
        assert_eq!(r.status(), 200);
        let v: Value =
            serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json");
        ids.push(v["request_id"].as_str().expect("request id").to_string());
    }
    // A batch with a client file name carrying the marker.
    let name = format!("{}.png", String::from_utf8_lossy(MARKER));
    let green = png_bytes(&coloured(6, 1));
    let (ctype, body) = multipart(&[("image", &name, &green), ("image", "b.png", &red)]);
    let r = a
        .post(server.url("/predict/batch"))
        .header("authorization", "Bearer k-123")
        .content_type(&ctype)
        .send(&body[..])
        .expect("batch");
    assert_eq!(r.status(), 200);
    drop(server);

    let rows = export(&db);
    assert_eq!(rows.len(), 5, "3 single + 2 batch rows");
    let first = &rows[0];
    assert_eq!(first["request_id"], ids[0].as_str());
    assert_eq!(first["endpoint"], "/predict");
    assert_eq!(first["predicted"], "red");
    assert_eq!(first["model"], "colours");
    let sha = graft_model::weights::sha256_file(&f.run.join("model.onnx")).expect("sha");
    assert_eq!(first["sha256"], sha.as_str());
    let key = first["key_hash"].as_str().expect("key hash");
    assert_eq!(key.len(), 16);
    assert_ne!(key, "k-123");
    assert_eq!(rows[3]["key_hash"], key, "both header forms, one hash");
    let s = &first["stats"];
    assert!(s["width"].as_u64().is_some_and(|w| w > 0));
    // A red image: red mean high, green and blue low.
    let mean = s["mean"].as_array().expect("mean");
    assert!(mean[0].as_f64() > mean[1].as_f64(), "{s}");
    assert!(first["top"].as_array().is_some_and(|t| !t.is_empty()));
    assert!(first["latency_ms"].as_f64().is_some_and(|l| l > 0.0));
    assert_eq!(rows[3]["endpoint"], "/predict/batch");

    // Not the image, not its bytes, not the client's file name: anywhere in the files.
    for entry in std::fs::read_dir(tmp.path()).expect("dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER),
            "{} holds the marker",
            path.display()
        );
    }
    // CSV too.
    let o = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["audit", "export", "--csv", "--audit", db_arg])
        .output()
        .expect("csv");
    assert!(o.status.success());
    assert_eq!(stdout(&o).lines().count(), 6);
}

#[test]
fn a_server_killed_during_a_load_keeps_every_answered_request() {
    let f = fixture();
    let tmp = tempfile::tempdir().expect("tmp");
    let db = tmp.path().join("audit.db");
    let mut server = Server::start(&f.run, &f.cache, &["--audit", db.to_str().expect("utf-8")]);
    let url = server.url("/predict");
    let image = Arc::new(png_bytes(&coloured(7, 2)));
    let answered = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (url, image, answered, sent) =
                (url.clone(), image.clone(), answered.clone(), sent.clone());
            std::thread::spawn(move || {
                let a = agent();
                while sent.fetch_add(1, Ordering::SeqCst) < 1000 {
                    match a.post(&url).content_type("image/png").send(&image[..]) {
                        Ok(r) if r.status() == 200 => {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while answered.load(Ordering::SeqCst) < 150 {
        assert!(Instant::now() < deadline, "the load never got going");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill9();
    for c in clients {
        c.join().expect("client");
    }
    let answered = answered.load(Ordering::SeqCst);
    assert!(answered < 1000, "the kill came mid-load");

    let conn = rusqlite::Connection::open(&db).expect("the trail opens");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(check, "ok");
    drop(conn);
    let rows = export(&db);
    // Every answer the clients got is there; a row may exist whose answer was cut off.
    assert!(
        rows.len() >= answered,
        "{} rows, {answered} answered",
        rows.len()
    );
    assert!(
        rows.len() <= answered + 8,
        "{} rows, {answered} answered",
        rows.len()
    );
    // And the server starts again on the same trail.
    let server = Server::start(&f.run, &f.cache, &["--audit", db.to_str().expect("utf-8")]);
    let r = post(&agent(), &server.url("/predict"), Some("image/png"), &image);
    assert_eq!(r.status, 200);
    drop(server);
    assert_eq!(export(&db).len(), rows.len() + 1);
}
