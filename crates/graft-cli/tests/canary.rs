//! Canary serving on the real server: `graft serve --run A --canary B --canary-share 50`
//! answers each client (by API key) from one model, every time; the champion scores the
//! canary's requests in shadow; the audit trail, /version and /metrics name both models; and
//! `graft monitor --compare` sets them side by side on the shared requests. A canary with other
//! classes is refused before the server listens.

mod common;
#[path = "serve/http.rs"]
mod http;

use std::collections::BTreeMap;
use std::path::Path;

use common::{cache_with_mobilenet, coloured, coloured_folder, graft_in as graft, png_bytes};
use common::{stderr, stdout};
use http::{agent, get, multipart, reply, Server};
use serde_json::Value;

fn train(cache: &Path, cwd: &Path, photos: &str, name: &str, config: &str) {
    let o = graft(
        cache,
        cwd,
        &[
            "train",
            photos,
            "--name",
            name,
            "--config",
            config,
            "--no-track",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
}

/// A sample's value in Prometheus text.
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

#[test]
fn a_canary_answers_its_clients_and_monitor_compares_it_with_the_champion() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cache_with_mobilenet(cwd);
    coloured_folder(&cwd.join("photos"), 30);
    let heads = |lr: f64| {
        format!("[heads]\nheads = [\"linear\"]\nlrs = [{lr}]\nepochs = 10\n[eval]\nlatency = 0\n")
    };
    std::fs::write(cwd.join("a.toml"), heads(0.01)).expect("config");
    std::fs::write(cwd.join("b.toml"), heads(0.03)).expect("config");
    train(&cache, cwd, "photos", "champ", "a.toml");
    train(&cache, cwd, "photos", "chall", "b.toml");

    // Other classes: refused with what to do, before listening.
    coloured_folder(&cwd.join("two"), 30);
    std::fs::remove_dir_all(cwd.join("two/blue")).expect("rm");
    train(&cache, cwd, "two", "two", "a.toml");
    let o = graft(
        &cache,
        cwd,
        &[
            "serve",
            "--run",
            "runs/champ",
            "--canary",
            "runs/two",
            "--port",
            "0",
        ],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("same classes") && err.contains("runs/two"),
        "{err}"
    );
    let o = graft(
        &cache,
        cwd,
        &["serve", "--run", "runs/champ", "--canary-share", "10"],
    );
    assert!(!o.status.success(), "--canary-share needs --canary");

    let audit = cwd.join("canary.db");
    let server = Server::spawn(
        &cache,
        cwd,
        &[
            "--run",
            "runs/champ",
            "--canary",
            "runs/chall",
            "--canary-share",
            "50",
            "--audit",
            audit.to_str().expect("utf-8"),
        ],
        &[],
    );
    let a = agent();
    let version = get(&a, &server.url("/version")).json;
    assert_eq!(version["model"], "champ");
    assert_eq!(version["canary"]["model"], "chall");
    assert_eq!(version["canary"]["share_percent"], 50);
    assert_ne!(version["canary"]["sha256"], version["sha256"]);

    // 24 clients, 3 images each: each client always gets the same model.
    let mut arm_of: BTreeMap<String, String> = BTreeMap::new();
    let mut images = BTreeMap::<&str, usize>::new();
    for client in 0..24 {
        let key = format!("client-{client}");
        for i in 0..3 {
            let img = png_bytes(&coloured(
                50_000 + client * 10 + i,
                (client + i) as usize % 3,
            ));
            let r = reply(
                a.post(&server.url("/predict"))
                    .header("Content-Type", "image/png")
                    .header("X-API-Key", &key)
                    .send(&img[..]),
            );
            assert_eq!(r.status, 200, "{}", r.text);
            let arm = r.json["arm"].as_str().expect("arm").to_string();
            let model = r.json["model"].as_str().expect("model");
            assert_eq!(model, if arm == "canary" { "chall" } else { "champ" });
            let seen = arm_of.entry(key.clone()).or_insert_with(|| arm.clone());
            assert_eq!(*seen, arm, "{key} moved between models");
        }
        *images
            .entry(if arm_of[&key] == "canary" {
                "canary"
            } else {
                "champion"
            })
            .or_default() += 3;
    }
    assert!(
        images.get("canary").is_some_and(|&n| n > 0)
            && images.get("champion").is_some_and(|&n| n > 0),
        "both models answer at 50 %: {arm_of:?}"
    );
    // A batch from a canary client: both images from the canary.
    let key = arm_of
        .iter()
        .find(|(_, arm)| *arm == "canary")
        .map(|(k, _)| k.clone())
        .expect("a canary client");
    let (ctype, body) = multipart(&[
        ("image", "a.png", &png_bytes(&coloured(60_001, 0))),
        ("image", "b.png", &png_bytes(&coloured(60_002, 1))),
    ]);
    let r = reply(
        a.post(&server.url("/predict/batch"))
            .header("Content-Type", &ctype)
            .header("X-API-Key", &key)
            .send(&body[..]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.json["arm"].as_str(), r.json["model"].as_str()),
        (Some("canary"), Some("chall"))
    );
    *images.entry("canary").or_default() += 2;
    let (on_canary, on_champion) = (images["canary"], images["champion"]);

    let metrics = get(&a, &server.url("/metrics")).text;
    assert!(
        metrics.contains("graft_canary_info{run=\"chall\""),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "graft_answers_total{arm=\"canary\"}"),
        on_canary as f64
    );
    assert_eq!(
        sample(&metrics, "graft_answers_total{arm=\"champion\"}"),
        on_champion as f64
    );
    assert_eq!(
        sample(&metrics, "graft_canary_shadow_scored_total"),
        on_canary as f64
    );
    drop(server);

    // The trail: every canary answer beside the champion's shadow score of the same request.
    let o = graft(
        &cache,
        cwd,
        &["audit", "export", "--audit", audit.to_str().expect("utf-8")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(rows.len(), on_champion + 2 * on_canary);
    let canary_rows: Vec<&Value> = rows.iter().filter(|r| r["arm"] == "canary").collect();
    assert_eq!(canary_rows.len(), on_canary);
    for c in &canary_rows {
        assert_eq!(
            (c["model"].as_str(), c["answered"].as_bool()),
            (Some("chall"), Some(true))
        );
        let shadow = rows
            .iter()
            .find(|r| r["arm"] == "champion" && r["request_id"] == c["request_id"])
            .expect("the champion's shadow score");
        assert_eq!(
            (shadow["model"].as_str(), shadow["answered"].as_bool()),
            (Some("champ"), Some(false))
        );
    }

    // graft monitor judges the champion, which scored every request …
    let o = graft(
        &cache,
        cwd,
        &[
            "monitor",
            "--run",
            "runs/champ",
            "--audit",
            audit.to_str().expect("utf-8"),
            "--json",
        ],
    );
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", stderr(&o));
    let report: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(report["requests"], on_champion + on_canary);

    // … and --compare sets the two side by side on the canary's requests.
    let o = graft(
        &cache,
        cwd,
        &[
            "monitor",
            "--run",
            "runs/champ",
            "--audit",
            audit.to_str().expect("utf-8"),
            "--compare",
        ],
    );
    let text = stdout(&o);
    println!("{text}");
    assert!(o.status.success(), "{text}\n{}", stderr(&o));
    assert!(
        text.contains("chall") && text.contains("agreement"),
        "{text}"
    );
    let c: Value = serde_json::from_slice(
        &std::fs::read(cwd.join("runs/champ/compare.json")).expect("compare.json"),
    )
    .expect("json");
    assert_eq!(c["shared"], on_canary);
    assert_eq!(c["canary"]["answered"], on_canary);
    assert_eq!(c["champion"]["answered"], on_champion);
    assert_eq!(
        (
            c["champion"]["model"].as_str(),
            c["canary"]["model"].as_str()
        ),
        (Some("champ"), Some("chall"))
    );
    // Both are right on these colours, so they agree.
    assert!(c["agreement"].as_f64().expect("agreement") >= 0.9, "{c}");
    let mix: usize = c["canary"]["class_mix"]
        .as_object()
        .expect("mix")
        .values()
        .map(|v| v.as_u64().unwrap_or(0) as usize)
        .sum();
    assert_eq!(mix, on_canary);

    // A trail without canary answers: --compare says how to get some.
    let plain = cwd.join("plain.db");
    let server = Server::spawn(
        &cache,
        cwd,
        &[
            "--run",
            "runs/champ",
            "--audit",
            plain.to_str().expect("utf-8"),
        ],
        &[],
    );
    let r = http::post(
        &a,
        &server.url("/predict"),
        Some("image/png"),
        &png_bytes(&coloured(1, 0)),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.json.get("arm").is_none(),
        "no arm without a canary: {}",
        r.text
    );
    drop(server);
    let o = graft(
        &cache,
        cwd,
        &[
            "monitor",
            "--run",
            "runs/champ",
            "--audit",
            plain.to_str().expect("utf-8"),
            "--compare",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--canary"), "{}", stderr(&o));
}
