//! Tracking end to end: `graft train` records runs in runs/graft.db (parameters, per-epoch and
//! final metrics, system metrics, files with their SHA-256), `graft runs` lists, shows and
//! compares them, and a run killed with SIGKILL is marked killed without harming the others.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{cache_with_mobilenet, coloured_folder, stderr, stdout};

fn graft(cache: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .current_dir(cwd)
        .env("GRAFT_CACHE", cache)
        .env("GRAFT_SYSTEM_METRICS_SECONDS", "0.2")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .expect("run graft")
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}\n{}", stdout(o), stderr(o));
    serde_json::from_slice(&o.stdout).expect("json")
}

const CONFIG: &str = "[heads]\nheads = [\"linear\", \"mlp:64:0.1\"]\nlrs = [0.003]\nepochs = 4\n\
                      [eval]\nlatency = 0\n";

/// A folder of photos, the real MobileNetV2 in a cache, and a quick graft.toml.
fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    coloured_folder(&tmp.path().join("photos"), 16);
    std::fs::write(tmp.path().join("graft.toml"), CONFIG).expect("config");
    (tmp, cache)
}

#[test]
fn train_runs_are_recorded_listed_and_compared() {
    let (tmp, cache) = setup();
    for (name, seed) in [("a", "1"), ("b", "2")] {
        let o = graft(
            &cache,
            tmp.path(),
            &[
                "train",
                "photos",
                "--config",
                "graft.toml",
                "--name",
                name,
                "--seed",
                seed,
            ],
        );
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
        assert!(stderr(&o).contains("Recorded as run"), "{}", stderr(&o));
    }
    assert!(tmp.path().join("runs/graft.db").is_file());
    let runs = json(&graft(&cache, tmp.path(), &["runs", "list", "--json"]));
    let runs = runs.as_array().expect("array");
    assert_eq!(runs.len(), 2);
    let b = &runs[0];
    assert_eq!(b["name"], "b", "newest first");
    assert_eq!(b["status"], "finished");
    assert_eq!(b["command"], "train");
    assert_eq!(b["experiment"], "photos-training");
    assert_eq!(b["params"]["heads.seed"], "2");
    assert_eq!(b["params"]["heads.epochs"], "4");
    // --seed also seeds the split: other splits, another dataset version.
    let hash_a = runs[1]["dataset_hash"].as_str().expect("hash");
    assert_eq!(hash_a.len(), 64);
    assert_ne!(runs[0]["dataset_hash"], runs[1]["dataset_hash"]);
    let on_a = json(&graft(
        &cache,
        tmp.path(),
        &["runs", "list", "--dataset", &hash_a[..10], "--json"],
    ));
    assert_eq!(on_a.as_array().expect("array").len(), 1);
    assert_eq!(on_a[0]["name"], "a");
    // Final metrics match the run folder.
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(tmp.path().join("runs/b/metrics.json")).expect("metrics"),
    )
    .expect("json");
    assert_eq!(b["metrics"]["test_accuracy"], m["eval"]["test"]["accuracy"]);
    // One value per epoch of the best head.
    let history = std::fs::read_to_string(tmp.path().join("runs/b/history.csv")).expect("hist");
    let epochs = history.lines().count() - 1;
    assert_eq!(b["metric_steps"]["train_loss"], epochs);
    assert!(b["metric_steps"]["system/process_memory_rss_megabytes"]
        .as_u64()
        .is_some_and(|n| n >= 1));
    // Files with their SHA-256.
    let arts = b["artifacts"].as_array().expect("artifacts");
    let weights = arts
        .iter()
        .find(|a| a["path"] == "model.safetensors")
        .expect("model.safetensors recorded");
    let bytes = std::fs::read(tmp.path().join("runs/b/model.safetensors")).expect("weights");
    assert_eq!(weights["bytes"], bytes.len());
    assert!(arts.iter().any(|a| a["path"] == "report.html"));

    // Filters and sorting.
    let seed1 = json(&graft(
        &cache,
        tmp.path(),
        &["runs", "list", "--param", "heads.seed=1", "--json"],
    ));
    assert_eq!(seed1.as_array().expect("array").len(), 1);
    assert_eq!(seed1[0]["name"], "a");
    let table = graft(
        &cache,
        tmp.path(),
        &["runs", "list", "--sort", "val_macro_f1"],
    );
    assert!(table.status.success());
    assert!(
        stdout(&table).contains("VAL_MACRO_F1"),
        "{}",
        stdout(&table)
    );

    // Compare: the seed differs, and the curves are drawn.
    let (ia, ib) = (
        runs[1]["id"].as_str().expect("id"),
        runs[0]["id"].as_str().expect("id"),
    );
    let o = graft(
        &cache,
        tmp.path(),
        &["runs", "compare", &ia[..8], &ib[..8], "--out", "cmp.png"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("heads.seed"), "{text}");
    assert!(
        !text.contains("heads.epochs"),
        "equal parameters are not listed: {text}"
    );
    let png = std::fs::read(tmp.path().join("cmp.png")).expect("curves png");
    assert_eq!(&png[1..4], b"PNG");

    // Bad ids get a clear error.
    let o = graft(&cache, tmp.path(), &["runs", "show", "ffffffffff"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no run"), "{}", stderr(&o));

    // --no-track records nothing.
    let o = graft(
        &cache,
        tmp.path(),
        &["eval", "--run", "runs/a", "--no-track"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let after = json(&graft(&cache, tmp.path(), &["runs", "list", "--json"]));
    assert_eq!(after.as_array().expect("array").len(), 2);
    // Eval is tracked in its own experiment.
    let o = graft(&cache, tmp.path(), &["eval", "--run", "runs/a"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let evals = json(&graft(
        &cache,
        tmp.path(),
        &[
            "runs",
            "list",
            "--experiment",
            "photos-evaluation",
            "--json",
        ],
    ));
    assert_eq!(evals.as_array().expect("array").len(), 1);
    assert_eq!(evals[0]["command"], "eval");
}

#[test]
fn a_run_killed_mid_way_is_marked_killed_and_the_store_survives() {
    let (tmp, cache) = setup();
    let o = graft(
        &cache,
        tmp.path(),
        &[
            "train",
            "photos",
            "--config",
            "graft.toml",
            "--name",
            "done",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The burn engine and small chunks: slow enough to be caught while running.
    std::fs::write(
        tmp.path().join("slow.toml"),
        format!("backend = \"burn\"\n[extract]\nchunk = 4\nbatch = 4\n{CONFIG}"),
    )
    .expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args([
            "train",
            "photos",
            "--config",
            "slow.toml",
            "--name",
            "killed",
        ])
        .current_dir(tmp.path())
        .env("GRAFT_CACHE", &cache)
        .env("GRAFT_SYSTEM_METRICS_SECONDS", "0.05")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no running run in 120 s");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "finished before it could be killed"
        );
        let o = graft(
            &cache,
            tmp.path(),
            &["runs", "list", "--status", "running", "--json"],
        );
        if o.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
            let sampled = v[0]["metric_steps"]["system/cpu_utilization_percentage"]
                .as_u64()
                .unwrap_or(0);
            if sampled >= 2 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let runs = json(&graft(&cache, tmp.path(), &["runs", "list", "--json"]));
    let runs = runs.as_array().expect("array");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["name"], "killed");
    assert_eq!(runs[0]["status"], "killed");
    assert!(runs[0]["end_ms"].as_i64().is_some());
    assert_eq!(runs[1]["name"], "done");
    assert_eq!(runs[1]["status"], "finished");
    assert!(runs[1]["metrics"]["test_accuracy"].is_number());
}

#[test]
fn two_demo_runs_with_different_seeds_compare_with_their_curves() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    std::fs::write(
        tmp.path().join("quick.toml"),
        "[heads]\nheads = [\"linear\"]\nlrs = [0.01]\nepochs = 3\n[eval]\nlatency = 0\n",
    )
    .expect("config");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo");
    let demo = demo.to_str().expect("utf-8");
    for (name, seed) in [("s1", "1"), ("s2", "2")] {
        let o = graft(
            &cache,
            tmp.path(),
            &[
                "train",
                demo,
                "--config",
                "quick.toml",
                "--name",
                name,
                "--seed",
                seed,
            ],
        );
        assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    }
    let runs = json(&graft(&cache, tmp.path(), &["runs", "list", "--json"]));
    let ids: Vec<&str> = runs
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(runs[0]["experiment"], "demo-training");
    let o = graft(
        &cache,
        tmp.path(),
        &["runs", "compare", ids[0], ids[1], "--out", "seeds.png"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("heads.seed") && text.contains("split.seed"),
        "{text}"
    );
    assert!(text.contains("test_accuracy"), "{text}");
    let png = std::fs::read(tmp.path().join("seeds.png")).expect("png");
    assert_eq!(&png[1..4], b"PNG");
}
