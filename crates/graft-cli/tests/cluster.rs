//! `graft cluster` on a real one-node Slurm (scripts/test.sh starts it with
//! scripts/slurm-local.sh and sets SLURM_CONF): extraction as a 4-task array, the merge and
//! head sweep after it, byte-identical to a local `graft train`; one cancelled task resumed
//! alone; a search of 8 trials and an ablation of 4 cells as arrays, equal to the same
//! search and ablation run locally; and, without Slurm, a clear message while --dry-run
//! still writes the scripts.

mod common;
#[path = "cluster/dry_run.rs"]
mod dry_run;
#[path = "cluster/k8s.rs"]
mod k8s;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{cache_with_mobilenet, demo_subset, graft_in, require_ort_library, stderr, stdout};
use serde_json::Value;

const QUICK: &str = "[extract]\nchunk = 8\n[heads]\nheads = [\"linear\"]\nlrs = [0.01]\n\
epochs = 10\n[eval]\nlatency = 0\n";

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    o
}

fn require_slurm() {
    assert!(
        std::env::var_os("SLURM_CONF").is_some(),
        "SLURM_CONF is not set: run the tests with scripts/test.sh, which starts a one-node \
         Slurm (scripts/slurm-local.sh start DIR)"
    );
}

fn book(run: &Path) -> Value {
    let text = std::fs::read_to_string(run.join("cluster/jobs.json")).expect("jobs.json");
    serde_json::from_str(&text).expect("jobs.json parses")
}

fn job_ids(run: &Path) -> Vec<String> {
    book(run)["submissions"]
        .as_array()
        .expect("submissions")
        .iter()
        .map(|s| s["job_id"].as_str().expect("id").to_string())
        .collect()
}

fn slurm(tool: &str, args: &[&str]) -> String {
    let o = Command::new(tool).args(args).output().expect(tool);
    assert!(o.status.success(), "{tool} {args:?}: {}", stderr(&o));
    stdout(&o)
}

/// Wait until none of the run's jobs is pending or running.
fn wait_for(run: &Path) {
    let ids = job_ids(run).join(",");
    let start = Instant::now();
    loop {
        let active = slurm(
            "squeue",
            &[
                "--noheader",
                "--array",
                "--jobs",
                &ids,
                "--states=PENDING,RUNNING,CONFIGURING,COMPLETING",
            ],
        );
        if active.trim().is_empty() {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "jobs still queued after 10 min:\n{active}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A cache's files by name, a head's weights, its test scores.
type RunResult = (Vec<(String, Vec<u8>)>, Vec<u8>, Value);

/// The cache's files, the head's weights and the test scores. Not the shard locks, nor
/// `source.json`, which names the run's own manifest (checked here instead).
fn result(run: &Path) -> RunResult {
    let source = std::fs::read_to_string(run.join("features/source.json")).expect("source");
    let source: Value = serde_json::from_str(&source).expect("source.json parses");
    let manifest = source["data"].as_str().expect("data");
    assert!(
        Path::new(manifest).ends_with(
            run.strip_prefix(run.parent().expect("runs"))
                .expect("name")
                .join("manifest.csv")
        ),
        "{manifest}"
    );
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(run.join("features"))
        .expect("features")
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !name.starts_with(".lock-") && name != "source.json"
        })
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    let model = std::fs::read(run.join("model.safetensors")).expect("model.safetensors");
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).expect("metrics"))
            .expect("metrics parse");
    (files, model, metrics["eval"].clone())
}

#[test]
fn slurm_array_equals_a_local_train_and_resume_reruns_only_the_cancelled_shard() {
    require_ort_library();
    require_slurm();
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cache_with_mobilenet(cwd);
    demo_subset(&cwd.join("photos"), 4, 16);
    std::fs::write(cwd.join("graft.toml"), QUICK).expect("config");
    let train = [
        "--no-track",
        "train",
        "photos",
        "--name",
        "local",
        "--config",
        "graft.toml",
    ];
    ok(graft_in(&cache, cwd, &train));
    let local = result(&cwd.join("runs/local"));

    // 64 images in chunks of 8: 8 chunks, two per task.
    let mut args = vec!["--no-track", "cluster", "slurm", "extract", "photos"];
    args.extend(["--name", "slurm", "--config", "graft.toml", "--tasks", "4"]);
    let o = ok(graft_in(&cache, cwd, &args));
    assert!(
        stdout(&o).contains("4 extraction task(s), shard(s) 0-3 of 4"),
        "{}",
        stdout(&o)
    );
    let run = cwd.join("runs/slurm");
    wait_for(&run);
    let script = std::fs::read_to_string(run.join("cluster/extract.sbatch")).expect("script");
    assert!(script.contains("#SBATCH --array=0-3"), "{script}");
    assert!(
        script.contains("--shard \"${SLURM_ARRAY_TASK_ID}/4\""),
        "{script}"
    );
    let logs = std::fs::read_dir(run.join("cluster/logs"))
        .expect("logs")
        .count();
    assert_eq!(logs, 5, "four task logs and the collect job's");
    let on_slurm = result(&run);
    assert_eq!(on_slurm.0.len(), local.0.len());
    assert!(on_slurm.0 == local.0, "the caches differ");
    assert!(on_slurm.1 == local.1, "the heads differ");
    assert_eq!(on_slurm.2, local.2);
    let o = ok(graft_in(&cache, cwd, &["cluster", "status", "runs/slurm"]));
    assert!(
        stdout(&o).contains("Cache: 8 of 8 chunks"),
        "{}",
        stdout(&o)
    );

    // Held, shard 2 cancelled before it starts, then released: the job after the array is
    // cancelled (its dependency can never be met) and shard 2's chunks (2 and 6) are missing.
    let mut args = vec!["--no-track", "cluster", "slurm", "extract", "photos"];
    args.extend([
        "--name",
        "held",
        "--config",
        "graft.toml",
        "--tasks",
        "4",
        "--hold",
    ]);
    ok(graft_in(&cache, cwd, &args));
    let run = cwd.join("runs/held");
    let first = book(&run)["submissions"][0]["job_id"]
        .as_str()
        .expect("id")
        .to_string();
    slurm("scancel", &[&format!("{first}_2")]);
    slurm("scontrol", &["release", &first]);
    wait_for(&run);
    assert!(!run.join("model.safetensors").exists());
    assert!(!run.join("features/shard-00002.f16").exists());
    assert!(run.join("features/shard-00001.f16").exists());
    let o = ok(graft_in(&cache, cwd, &["cluster", "status", "runs/held"]));
    assert!(
        stdout(&o).contains("Cache: 6 of 8 chunks; shard(s) still missing chunks: 2"),
        "{}",
        stdout(&o)
    );
    // The other shards' files, by modification time: a resume must not write them again.
    let others = || -> Vec<std::time::SystemTime> {
        [0, 1, 3, 4, 5, 7]
            .iter()
            .map(|k| {
                let p = run.join(format!("features/shard-{k:05}.f16"));
                std::fs::metadata(p)
                    .expect("shard")
                    .modified()
                    .expect("mtime")
            })
            .collect()
    };
    let before = others();
    let o = ok(graft_in(
        &cache,
        cwd,
        &["--no-track", "cluster", "slurm", "resume", "runs/held"],
    ));
    assert!(
        stdout(&o).contains("1 extraction task(s), shard(s) 2 of 4"),
        "{}",
        stdout(&o)
    );
    let b = book(&run);
    let subs = b["submissions"].as_array().expect("subs");
    assert_eq!(subs.len(), 4);
    assert_eq!(subs[2]["array"], "2");
    wait_for(&run);
    let after = others();
    assert_eq!(before, after, "only shard 2's chunks may be written again");
    let resumed = result(&run);
    assert!(resumed.0 == local.0, "the resumed cache differs");
    assert!(resumed.1 == local.1, "the resumed head differs");
    // Nothing left to do: resume says so and only reruns the job after the array.
    let o = ok(graft_in(
        &cache,
        cwd,
        &[
            "--no-track",
            "cluster",
            "slurm",
            "resume",
            "runs/held",
            "--dry-run",
        ],
    ));
    assert!(
        stdout(&o).contains("Missing shards: none"),
        "{}",
        stdout(&o)
    );

    // A search of 8 trials as an array, 4 at once, against the same search run here.
    let search = [
        "--method",
        "bayes",
        "--trials",
        "8",
        "--parallel",
        "4",
        "--seed",
        "7",
    ];
    let mut args = vec![
        "--no-track",
        "tune",
        "--run",
        "runs/local",
        "--name",
        "here",
    ];
    args.extend(search);
    ok(graft_in(&cache, cwd, &args));
    let mut args = vec![
        "--no-track",
        "cluster",
        "slurm",
        "tune",
        "--run",
        "runs/local",
    ];
    args.extend(["--name", "array"]);
    args.extend(search);
    let o = ok(graft_in(&cache, cwd, &args));
    assert!(
        stdout(&o).contains("8 trial(s), 4 at once (--array=0-7%4)"),
        "{}",
        stdout(&o)
    );
    let local_run = cwd.join("runs/local");
    wait_for(&local_run);
    let tune = local_run.join("tune");
    assert_eq!(
        std::fs::read_dir(tune.join("array/trials"))
            .expect("trial files")
            .count(),
        8
    );
    assert_eq!(
        trials_without_seconds(&tune.join("array/trials.csv")),
        trials_without_seconds(&tune.join("here/trials.csv"))
    );
    let summary = |name: &str| -> Value {
        let text = std::fs::read_to_string(tune.join(name).join("tune.json")).expect("tune.json");
        serde_json::from_str(&text).expect("tune.json parses")
    };
    let (a, h) = (summary("array"), summary("here"));
    assert_eq!(a["best"], h["best"]);
    assert_eq!(a["trials_finished"], 8);
    let o = ok(graft_in(&cache, cwd, &["cluster", "status", "runs/local"]));
    assert!(
        stdout(&o).contains("tune array: 8 of 8 trials written; summary:"),
        "{}",
        stdout(&o)
    );

    // An ablation of 4 cells × 2 seeds as an array of 4 tasks, against the same one here.
    std::fs::write(
        cwd.join("plan.toml"),
        "seeds = 2\n[factors]\nlr = [3e-3, 1e-5]\nhead = [\"linear\", \"mlp\"]\nepochs = [3]\n",
    )
    .expect("plan");
    let here = [
        "--no-track",
        "ablate",
        "--run",
        "runs/local",
        "plan.toml",
        "--name",
        "here",
    ];
    ok(graft_in(&cache, cwd, &here));
    let mut args = vec![
        "--no-track",
        "cluster",
        "slurm",
        "ablate",
        "--run",
        "runs/local",
    ];
    args.extend(["plan.toml", "--name", "array"]);
    let o = ok(graft_in(&cache, cwd, &args));
    assert!(
        stdout(&o).contains("4 cell(s) (--array=0-3)"),
        "{}",
        stdout(&o)
    );
    wait_for(&local_run);
    let ablate = local_run.join("ablate");
    assert_eq!(
        std::fs::read_dir(ablate.join("array/cells"))
            .expect("cell files")
            .count(),
        4
    );
    let table = |name: &str| -> Value {
        let text =
            std::fs::read_to_string(ablate.join(name).join("ablation.json")).expect("summary");
        serde_json::from_str(&text).expect("ablation.json parses")
    };
    let (a, h) = (table("array"), table("here"));
    assert_eq!(a["cells"], h["cells"]);
    assert_eq!(
        std::fs::read(ablate.join("array/runs.csv")).expect("runs"),
        std::fs::read(ablate.join("here/runs.csv")).expect("runs")
    );
}

/// trials.csv without its `seconds` column (the only one timing changes).
fn trials_without_seconds(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("trials.csv");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    let seconds = lines[0]
        .split(',')
        .position(|c| c == "seconds")
        .expect("seconds column");
    lines
        .iter()
        .map(|l| {
            l.split(',')
                .enumerate()
                .filter(|(i, _)| *i != seconds)
                .map(|(_, f)| f)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}
