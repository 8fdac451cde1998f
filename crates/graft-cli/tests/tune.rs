//! `graft tune` on a run trained by `graft train`: the four methods, the files, a search killed
//! with SIGKILL and resumed equal to one never interrupted, best.toml reproducing the winner
//! as a run of its own, and clear errors.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{coloured_run, graft_in as run_graft, stderr, stdout};

/// A space where trials differ: learning rates down to 1e-6 barely move in 1–4 epochs.
const SPACE: &str = "\
[tune.space]
lr = { log = [1e-6, 1e-1] }
epochs = { int = [1, 4] }
head = { choice = [\"linear\", \"mlp\"] }
hidden = { choice = [16, 64] }
";

/// trials.csv without its timing column: what two runs of one search must share.
fn trials_without_seconds(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("trials.csv");
    text.lines()
        .map(|l| l.rsplit_once(',').map_or(l, |(a, _)| a).to_string())
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON")
}

#[test]
fn tune_searches_resumes_after_a_kill_and_its_best_toml_trains_the_winner() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = coloured_run(tmp.path());
    std::fs::write(tmp.path().join("tune.toml"), SPACE).expect("space");
    let tune = |extra: &[&str]| {
        let mut args = vec!["tune", "--run", "runs/t", "--config", "tune.toml"];
        args.extend_from_slice(extra);
        run_graft(&cache, tmp.path(), &args)
    };

    // An uninterrupted Bayesian search of 14 trials (6 random, then the estimator).
    let o = tune(&["--trials", "14", "--parallel", "2", "--name", "whole"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("Best trials"), "{}", stdout(&o));
    let whole = tmp.path().join("runs/t/tune/whole");
    for f in [
        "trials.csv",
        "results.csv",
        "best.toml",
        "tune.json",
        "search.json",
    ] {
        assert!(whole.join(f).is_file(), "{f}");
    }
    for f in ["objective.png", "parameters.png", "heatmap.png"] {
        let img = image::open(whole.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(img.width() >= 600, "{f}");
    }
    let rows = trials_without_seconds(&whole.join("trials.csv"));
    assert_eq!(rows.len(), 15, "header and 14 trials");
    let summary = json(&whole.join("tune.json"));
    assert_eq!(summary["trials_finished"], 14);
    assert_eq!(summary["method"], "bayes");
    let test = &summary["best"]["test"];
    assert!(test["rows"].as_u64().expect("test rows") > 0);
    // Training is deterministic: the retrained winner scores on val what its trial did.
    assert_eq!(
        test["retrained_val_macro_f1"], summary["best"]["val_macro_f1"],
        "{summary}"
    );
    // results.csv is best first, and its first row is the summary's best trial.
    let results = std::fs::read_to_string(whole.join("results.csv")).expect("results");
    let first = results.lines().nth(1).expect("a row");
    let best_trial = summary["best"]["trial"].as_u64().expect("trial");
    assert!(first.starts_with(&format!("1,{best_trial},")), "{first}");

    // The search is a tracked run of its own, its best and test scores as metrics.
    let o = run_graft(&cache, tmp.path(), &["runs", "list", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("runs JSON");
    let tracked = runs
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["command"] == "tune" && r["params"]["name"] == "whole")
        .unwrap_or_else(|| panic!("the tune in {runs}"));
    assert_eq!(tracked["status"], "finished");
    assert_eq!(tracked["params"]["method"], "bayes");
    assert_eq!(
        tracked["metrics"]["best_val_macro_f1"], summary["best"]["val_macro_f1"],
        "{tracked}"
    );
    assert_eq!(tracked["metrics"]["test_macro_f1"], test["macro_f1"]);
    assert_eq!(tracked["metrics"]["trials_finished"].as_f64(), Some(14.0));

    // The same search killed with SIGKILL after a few trials, then run again: it keeps what
    // finished and ends with the same trials as the uninterrupted one.
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args([
            "tune",
            "--run",
            "runs/t",
            "--config",
            "tune.toml",
            "--trials",
            "14",
            "--parallel",
            "2",
            "--name",
            "killed",
            "-q",
        ])
        .current_dir(tmp.path())
        .env("GRAFT_CACHE", &cache)
        .env("GRAFT_NO_TRACK", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(tmp.path().join("killed.log")).expect("log"))
        .spawn()
        .expect("spawn");
    let killed = tmp.path().join("runs/t/tune/killed/trials.csv");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        let n = std::fs::read_to_string(&killed).map_or(0, |t| t.lines().count());
        if n >= 4 || child.try_wait().expect("wait").is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    let log = std::fs::read_to_string(tmp.path().join("killed.log")).unwrap_or_default();
    assert!(killed.is_file(), "no trial finished before the kill: {log}");
    let kept = trials_without_seconds(&killed).len() - 1;
    let o = tune(&["--trials", "14", "--parallel", "2", "--name", "killed"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    if kept < 14 {
        assert!(
            stdout(&o).contains(&format!("{kept} finished before, kept")),
            "{}",
            stdout(&o)
        );
    }
    assert_eq!(trials_without_seconds(&killed), rows);

    // The same state made without racing the clock: the search's folder with only its first
    // 5 trials, as a kill leaves it. The rerun keeps those 5 rows as they are (their timings
    // too: not run again) and ends where the uninterrupted search did.
    let cut = tmp.path().join("runs/t/tune/cut");
    std::fs::create_dir_all(&cut).expect("cut");
    std::fs::copy(whole.join("search.json"), cut.join("search.json")).expect("copy");
    let full = std::fs::read_to_string(whole.join("trials.csv")).expect("trials");
    let first: Vec<&str> = full.lines().take(6).collect();
    std::fs::write(cut.join("trials.csv"), first.join("\n") + "\n").expect("cut");
    let o = tune(&["--trials", "14", "--parallel", "2", "--name", "cut"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("5 finished before, kept"),
        "{}",
        stdout(&o)
    );
    let resumed = std::fs::read_to_string(cut.join("trials.csv")).expect("trials");
    assert_eq!(resumed.lines().take(6).collect::<Vec<_>>(), first);
    assert_eq!(trials_without_seconds(&cut.join("trials.csv")), rows);

    // A larger budget extends a finished search; the first 14 trials stay as they were.
    let o = tune(&["--trials", "18", "--parallel", "2", "--name", "whole"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let more = trials_without_seconds(&whole.join("trials.csv"));
    assert_eq!(more.len(), 19);
    assert_eq!(&more[..15], &rows[..]);

    // best.toml trains the winner as a run of its own, with the same val score.
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "train",
            "--config",
            "runs/t/tune/whole/best.toml",
            "--no-track",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let summary = json(&whole.join("tune.json"));
    let metrics = json(&tmp.path().join("runs/t-whole/metrics.json"));
    let (tuned, trained) = (
        summary["best"]["val_macro_f1"].as_f64().expect("f1"),
        metrics["best"]["val_macro_f1"].as_f64().expect("f1"),
    );
    assert!(
        (tuned - trained).abs() < 1e-12,
        "tune {tuned}, train {trained}"
    );

    // Grid and genetic searches run; the grid stops at its size (2 levels each of lr and
    // epochs, 2 heads, 2 widths: 16 points).
    let grid_toml = "[tune]\ngrid_levels = 2\n\n".to_string() + SPACE;
    std::fs::write(tmp.path().join("grid.toml"), grid_toml).expect("grid");
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "tune",
            "--run",
            "runs/t",
            "--config",
            "grid.toml",
            "--method",
            "grid",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(s["trials_finished"], 16, "{s}");
    let o = tune(&["--method", "genetic", "--trials", "16", "--json"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let s: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(s["trials_finished"], 16, "{s}");

    // The benchmark runs (its timings are for people, not for asserts).
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "bench",
            "tune",
            "--run",
            "runs/t",
            "--trials",
            "6",
            "--no-reference",
            "--json",
            "bench.json",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let bench = json(&tmp.path().join("bench.json"));
    assert!(
        bench["graft"]["seconds"].as_f64().unwrap_or(0.0) > 0.0,
        "{bench}"
    );
    assert!(
        bench["graft"]["best_val_macro_f1"].as_f64().is_some(),
        "{bench}"
    );
    assert!(tmp.path().join("runs/t/tune/bench/trials.csv").is_file());

    // Errors say what to do.
    let o = tune(&["--name", "whole", "--seed", "7", "--trials", "3"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("another search")
            && stderr(&o).contains("seed")
            && stderr(&o).contains("--fresh"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        tmp.path().join("bad.toml"),
        "[tune.space]\nmomentum = { uniform = [0.8, 0.99] }\n",
    )
    .expect("bad");
    let o = run_graft(
        &cache,
        tmp.path(),
        &["tune", "--run", "runs/t", "--config", "bad.toml"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("momentum") && stderr(&o).contains("--help"),
        "{}",
        stderr(&o)
    );
    let o = run_graft(&cache, tmp.path(), &["tune", "--run", "photos"]);
    assert!(
        !o.status.success() && stderr(&o).contains("graft train"),
        "{}",
        stderr(&o)
    );
    let o = tune(&["--time", "soon"]);
    assert!(
        !o.status.success() && stderr(&o).contains("10m"),
        "{}",
        stderr(&o)
    );
}
