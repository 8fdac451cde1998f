//! graft against a real MLflow server (pip-installed by scripts/test.sh, started here on
//! 127.0.0.1): a training run on the demo data read back through MLflow's REST API and
//! checked against its run folder; the registry's versions and aliases round-tripped through
//! MLflow's registry and served; and a server killed mid-run — the run finishes, `graft runs
//! sync` sends the rest later, nothing twice.

mod common;
#[path = "serve/http.rs"]
mod http;
#[path = "mlflow/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{cache_with_mobilenet, coloured_folder, stderr, stdout};
use serde_json::Value;
use server::Mlflow;

fn graft(cache: &Path, cwd: &Path, mlflow: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_graft"));
    cmd.args(args)
        .current_dir(cwd)
        .env("GRAFT_CACHE", cache)
        .env("GRAFT_SYSTEM_METRICS_SECONDS", "0.3")
        .env_remove("MLFLOW_TRACKING_URI");
    if let Some(uri) = mlflow {
        cmd.env("MLFLOW_TRACKING_URI", uri);
    }
    cmd.output().expect("run graft")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    o
}

fn json(o: Output) -> Value {
    serde_json::from_slice(&ok(o).stdout).expect("json")
}

fn demo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo")
}

/// The tracked run of `name` in the store (graft runs list --json).
fn local_run(cache: &Path, cwd: &Path, name: &str, command: &str) -> Value {
    let runs = json(graft(cache, cwd, None, &["runs", "list", "--json"]));
    runs.as_array()
        .expect("array")
        .iter()
        .find(|r| r["name"] == name && r["command"] == command)
        .cloned()
        .unwrap_or_else(|| panic!("no {command} run {name}: {runs}"))
}

fn tags(run: &Value) -> BTreeMap<String, String> {
    run["data"]["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|kv| {
                    (
                        kv["key"].as_str().unwrap_or_default().to_string(),
                        kv["value"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sha256(bytes: &[u8]) -> String {
    graft_model::weights::sha256_bytes(bytes)
}

/// Weak and strong heads on the same split of the demo data: the paired test must tell them
/// apart.
const STRONG: &str =
    "[heads]\nheads = [\"linear\"]\nlrs = [0.01]\nepochs = 8\n[eval]\nlatency = 0\n";
const WEAK: &str =
    "[heads]\nheads = [\"linear\"]\nlrs = [0.00001]\nepochs = 1\n[eval]\nlatency = 0\n";

#[test]
fn demo_training_and_the_registry_round_trip_through_mlflow() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    let server = Mlflow::start(&tmp.path().join("mlflow"));
    let uri = Some(server.uri.as_str());
    let cwd = tmp.path();
    std::fs::write(cwd.join("strong.toml"), STRONG).expect("config");
    std::fs::write(cwd.join("weak.toml"), WEAK).expect("config");
    let demo = demo_dir();
    let demo = demo.to_str().expect("utf-8");

    // Train on the demo data, sent to MLflow as it runs; export (its own run).
    let o = ok(graft(
        &cache,
        cwd,
        uri,
        &["train", demo, "--name", "strong", "--config", "strong.toml"],
    ));
    assert!(stderr(&o).contains("Sent to MLflow at"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    ok(graft(&cache, cwd, uri, &["export", "--run", "runs/strong"]));

    let local = local_run(&cache, cwd, "strong", "train");
    let id = local["id"].as_str().expect("id");
    let remote = server.runs_of("demo-training", id);
    assert_eq!(remote.len(), 1, "one MLflow run per graft run: {remote:?}");
    let remote = &remote[0];
    let rid = remote["info"]["run_id"].as_str().expect("run id");
    assert_eq!(remote["info"]["status"], "FINISHED");
    assert_eq!(remote["info"]["run_name"], "strong");

    // Parameters: every one of the store's, with its value.
    let params: BTreeMap<String, String> = remote["data"]["params"]
        .as_array()
        .expect("params")
        .iter()
        .map(|p| {
            (
                p["key"].as_str().expect("key").to_string(),
                p["value"].as_str().expect("value").to_string(),
            )
        })
        .collect();
    for (k, v) in local["params"].as_object().expect("params") {
        assert_eq!(params.get(k).map(String::as_str), v.as_str(), "param {k}");
    }
    assert_eq!(params.get("heads.epochs").map(String::as_str), Some("8"));
    let t = tags(remote);
    assert_eq!(t.get("graft.command").map(String::as_str), Some("train"));
    assert_eq!(
        t.get("graft.dataset_hash").map(String::as_str),
        local["dataset_hash"].as_str()
    );

    // Per-epoch metrics: the run folder's history.csv, epoch by epoch.
    let history = std::fs::read_to_string(cwd.join("runs/strong/history.csv")).expect("history");
    let mut lines = history.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = header
        .iter()
        .position(|h| *h == "train_loss")
        .expect("train_loss column");
    let want: Vec<f64> = lines
        .map(|l| {
            l.split(',')
                .nth(col)
                .expect("cell")
                .parse()
                .expect("number")
        })
        .collect();
    let mut got = server.history(rid, "train_loss");
    got.sort_by_key(|m| m["step"].as_i64());
    assert_eq!(got.len(), want.len(), "one value per epoch");
    for (i, (m, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(m["step"].as_i64(), Some(i as i64 + 1));
        let v = m["value"].as_f64().expect("value");
        // history.csv holds the value as printed; the store keeps the f64 parsed from it.
        assert!(
            (v - w).abs() <= 1e-12 * w.abs().max(1.0),
            "epoch {}: {v} vs {w}",
            i + 1
        );
    }
    // Final metrics: the run folder's metrics.json.
    let metrics: Value = serde_json::from_slice(
        &std::fs::read(cwd.join("runs/strong/metrics.json")).expect("metrics"),
    )
    .expect("json");
    let acc = server.history(rid, "test_accuracy");
    assert!(!acc.is_empty());
    assert_eq!(acc[0]["value"], metrics["eval"]["test"]["accuracy"]);
    // System metrics, under MLflow's names, as many as the store sampled.
    for key in [
        "system/cpu_utilization_percentage",
        "system/system_memory_usage_megabytes",
        "system/process_memory_rss_megabytes",
    ] {
        let n = server.history(rid, key).len();
        assert!(n >= 1, "{key}");
        assert_eq!(Some(n as u64), local["metric_steps"][key].as_u64(), "{key}");
    }
    // Files: each one the store lists, byte for byte.
    for a in local["artifacts"].as_array().expect("artifacts") {
        let path = a["path"].as_str().expect("path");
        let bytes = server.artifact(rid, path);
        assert_eq!(
            bytes.len() as u64,
            a["bytes"].as_u64().expect("bytes"),
            "{path}"
        );
        assert_eq!(sha256(&bytes), a["sha256"].as_str().expect("sha"), "{path}");
    }
    for must in [
        "report.html",
        "config.toml",
        "model.safetensors",
        "metrics.json",
    ] {
        assert!(
            local["artifacts"]
                .as_array()
                .expect("artifacts")
                .iter()
                .any(|a| a["path"] == must),
            "{must} recorded"
        );
    }
    // The export run carries model.onnx and the model card.
    let export = local_run(&cache, cwd, "strong", "export");
    let eid = export["id"].as_str().expect("id");
    let er = server.runs_of("demo-export", eid);
    assert_eq!(er.len(), 1);
    let erid = er[0]["info"]["run_id"].as_str().expect("id");
    let onnx = std::fs::read(cwd.join("runs/strong/model.onnx")).expect("onnx");
    assert_eq!(sha256(&server.artifact(erid, "model.onnx")), sha256(&onnx));
    assert!(!server.artifact(erid, "model_card.md").is_empty());

    // A weak model on the same split: the first champion, beaten by the strong one.
    ok(graft(
        &cache,
        cwd,
        uri,
        &["train", demo, "--name", "weak", "--config", "weak.toml"],
    ));
    ok(graft(&cache, cwd, uri, &["export", "--run", "runs/weak"]));
    let o = ok(graft(
        &cache,
        cwd,
        uri,
        &["registry", "register", "runs/weak", "--name", "demo"],
    ));
    assert!(stdout(&o).contains("version 1"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("Sent version 1 of demo"),
        "{}",
        stderr(&o)
    );
    let v2 = json(graft(
        &cache,
        cwd,
        uri,
        &[
            "registry",
            "register",
            "runs/strong",
            "--name",
            "demo",
            "--json",
        ],
    ));
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["run_id"], id);
    assert_eq!(v2["onnx_sha256"].as_str(), Some(sha256(&onnx).as_str()));
    assert_eq!(v2["dataset_hash"], local["dataset_hash"]);
    assert!(v2["config"].as_str().is_some_and(|c| c.contains("[heads]")));
    assert!(v2["card"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(v2["metrics"]["test_accuracy"].as_f64().is_some());

    let alias = |name: &str| -> Value {
        server.get(
            "registered-models/alias",
            &[("name", "demo"), ("alias", name)],
        )["model_version"]
            .clone()
    };
    ok(graft(
        &cache,
        cwd,
        uri,
        &["registry", "promote", "demo", "1"],
    ));
    assert_eq!(alias("champion")["version"], "1");
    // MLflow's version 2 is graft's 2, from the strong run.
    let mv2 = server.get("model-versions/get", &[("name", "demo"), ("version", "2")]);
    assert_eq!(mv2["model_version"]["run_id"], rid);

    let promoted = json(graft(
        &cache,
        cwd,
        uri,
        &["registry", "promote", "demo", "2", "--json"],
    ));
    assert_eq!(promoted["forced"], false, "{promoted}");
    let test = &promoted["paired_test"];
    assert!(
        test["candidate_only"].as_u64() > test["current_only"].as_u64(),
        "{test}"
    );
    assert!(test["p_value"].as_f64().is_some_and(|p| p < 0.05), "{test}");
    assert_eq!(test["same_images"], true);
    assert_eq!(alias("champion")["version"], "2");

    // The weak one cannot take it back without --force.
    let o = graft(&cache, cwd, uri, &["registry", "promote", "demo", "1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(alias("champion")["version"], "2");

    // Forced past the test: recorded as forced, and mirrored.
    ok(graft(
        &cache,
        cwd,
        uri,
        &["registry", "promote", "demo", "1", "--force"],
    ));
    assert_eq!(alias("champion")["version"], "1");
    let shown = json(graft(
        &cache,
        cwd,
        None,
        &["registry", "show", "demo", "--json"],
    ));
    let last = shown["alias_events"]
        .as_array()
        .and_then(|e| e.last().cloned())
        .expect("event");
    assert_eq!(last["action"], "promote");
    assert_eq!(last["version"], 1);
    assert_eq!(last["forced"], true, "{last}");

    // Rollback: back to the champion before (2).
    let o = ok(graft(&cache, cwd, uri, &["registry", "rollback", "demo"]));
    assert!(stdout(&o).contains("version 2"), "{}", stdout(&o));
    assert_eq!(alias("champion")["version"], "2");
    ok(graft(
        &cache,
        cwd,
        uri,
        &["registry", "alias", "demo", "2", "challenger"],
    ));
    assert_eq!(alias("challenger")["version"], "2");
    let o = graft(&cache, cwd, uri, &["registry", "promote", "demo", "2"]);
    assert!(!o.status.success(), "2 is already the champion");

    // Serve by alias: from the local registry, and from MLflow's (fetched into the cache).
    let local_serve = http::Server::spawn(&cache, cwd, &["--model", "demo@challenger"], &[]);
    let v = version(&local_serve.url("/version"));
    assert_eq!(v["registered"]["name"], "demo");
    assert_eq!(v["registered"]["version"], "2");
    assert_eq!(v["registered"]["alias"], "challenger");
    assert_eq!(v["sha256"].as_str(), Some(sha256(&onnx).as_str()));
    drop(local_serve);
    let remote_serve = http::Server::spawn(
        &cache,
        cwd,
        &["--model", "models:/demo@challenger"],
        &[("MLFLOW_TRACKING_URI", &server.uri)],
    );
    let v = version(&remote_serve.url("/version"));
    assert_eq!(v["registered"]["version"], "2");
    assert_eq!(v["registered"]["registry"], server.uri.as_str());
    assert_eq!(v["sha256"].as_str(), Some(sha256(&onnx).as_str()));
}

fn version(url: &str) -> Value {
    let mut r = http::agent().get(url).call().expect("version");
    serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json")
}

#[test]
fn a_server_killed_mid_run_loses_nothing_and_sync_sends_it_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    let cwd = tmp.path();
    coloured_folder(&cwd.join("photos"), 16);
    // The burn engine and small chunks: slow enough for the server to die mid-run.
    std::fs::write(
        cwd.join("slow.toml"),
        "backend = \"burn\"\n[extract]\nchunk = 4\nbatch = 4\n[heads]\nheads = [\"linear\", \
         \"mlp:64:0.1\"]\nlrs = [0.003]\nepochs = 6\n[eval]\nlatency = 0\n",
    )
    .expect("config");
    let mut server = Mlflow::start(&cwd.join("mlflow"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["train", "photos", "--config", "slow.toml", "--name", "slow"])
        .current_dir(cwd)
        .env("GRAFT_CACHE", &cache)
        .env("GRAFT_SYSTEM_METRICS_SECONDS", "0.3")
        .env("MLFLOW_TRACKING_URI", &server.uri)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn graft");

    // Once the run is on the server, the server dies.
    let deadline = Instant::now() + Duration::from_secs(120);
    let db = cwd.join("runs/graft.db");
    let id = loop {
        assert!(Instant::now() < deadline, "the run never reached MLflow");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "graft ended before the kill"
        );
        if db.is_file() {
            let runs = json(graft(&cache, cwd, None, &["runs", "list", "--json"]));
            if let Some(id) = runs[0]["id"].as_str() {
                if !server.runs_of("photos-training", id).is_empty() {
                    break id.to_string();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    server.kill();
    let out = child.wait_with_output().expect("graft");
    assert!(out.status.success(), "the run finishes: {}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("warning").count(), 1, "one warning: {err}");
    assert!(err.contains("graft runs sync"), "{err}");
    assert!(!err.contains("Sent to MLflow"), "{err}");
    let local = local_run(&cache, cwd, "slow", "train");
    assert_eq!(local["status"], "finished");

    // Back up: the server has the run as it was when it died.
    server.restart();
    let before = server.runs_of("photos-training", &id);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["info"]["status"], "RUNNING");
    let rid = before[0]["info"]["run_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(server.history(&rid, "train_loss").is_empty());

    let o = ok(graft(&cache, cwd, Some(&server.uri), &["runs", "sync"]));
    assert!(stdout(&o).contains(&rid), "{}", stdout(&o));
    let after = server.runs_of("photos-training", &id);
    assert_eq!(after.len(), 1, "not created twice");
    assert_eq!(after[0]["info"]["status"], "FINISHED");
    // Every metric value once: as many values as the store holds.
    for (key, n) in local["metric_steps"].as_object().expect("steps") {
        let h = server.history(&rid, key);
        assert_eq!(Some(h.len() as u64), n.as_u64(), "{key}");
    }
    for a in local["artifacts"].as_array().expect("artifacts") {
        let path = a["path"].as_str().expect("path");
        assert_eq!(
            sha256(&server.artifact(&rid, path)),
            a["sha256"].as_str().expect("sha")
        );
    }
    // A second sync has nothing to send.
    let o = ok(graft(&cache, cwd, Some(&server.uri), &["runs", "sync"]));
    assert!(stdout(&o).contains("has every run"), "{}", stdout(&o));
    for (key, n) in local["metric_steps"].as_object().expect("steps") {
        assert_eq!(
            Some(server.history(&rid, key).len() as u64),
            n.as_u64(),
            "{key}"
        );
    }
}

#[test]
fn no_server_is_one_warning_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    let cwd = tmp.path();
    coloured_folder(&cwd.join("photos"), 8);
    std::fs::write(
        cwd.join("quick.toml"),
        "[heads]\nheads = [\"linear\"]\nlrs = [0.003]\nepochs = 2\n[eval]\nlatency = 0\n",
    )
    .expect("config");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let uri = format!("http://127.0.0.1:{port}");
    let o = ok(graft(
        &cache,
        cwd,
        Some(&uri),
        &["train", "photos", "--config", "quick.toml"],
    ));
    let err = stderr(&o);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(err.contains(&uri), "{err}");
    assert!(err.contains("Recorded as run"), "{err}");
    let o = graft(&cache, cwd, Some(&uri), &["runs", "sync"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("did not answer"), "{}", stderr(&o));
    let o = graft(&cache, cwd, None, &["runs", "sync"]);
    assert!(stderr(&o).contains("--mlflow"), "{}", stderr(&o));
}
