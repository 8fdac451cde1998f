//! `graft train DIR` end to end with the real MobileNetV2 weights: every stage's files, stage
//! skipping on rerun, reproduction from the saved config, `graft predict`, and a SIGKILL during
//! extraction that the rerun recovers from without redoing finished stages.

mod common;

use std::path::{Path, PathBuf};

use common::{cache_with_mobilenet, coloured_folder, graft_in as run_graft, stderr, stdout};

fn metrics(run: &Path) -> serde_json::Value {
    let bytes = std::fs::read(run.join("metrics.json")).expect("metrics.json");
    serde_json::from_slice(&bytes).expect("json")
}

#[test]
fn train_dir_writes_a_run_skips_unchanged_stages_and_reproduces() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    let data = tmp.path().join("photos");
    coloured_folder(&data, 20);
    let o = run_graft(&cache, tmp.path(), &["train", "photos", "--name", "t"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let run = tmp.path().join("runs/t");
    for f in [
        "audit.json",
        "manifest.csv",
        "features/cache.json",
        "model.safetensors",
        "model.json",
        "sweep.csv",
        "history.csv",
        "metrics.json",
        "per_class.csv",
        "confusion_matrix.png",
        "reliability.png",
        "report.html",
        "config.toml",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let m = metrics(&run);
    let acc = m["eval"]["test"]["accuracy"]
        .as_f64()
        .expect("test accuracy");
    assert!(acc >= 0.8, "colour classes should be easy, got {acc}");
    assert_eq!(
        std::fs::read_to_string(run.join("sweep.csv"))
            .expect("sweep")
            .lines()
            .count(),
        10,
        "header + 9 configurations"
    );
    let html = std::fs::read_to_string(run.join("report.html")).expect("report");
    assert!(html.contains("macro-F1") && html.contains("data:image/png;base64,"));

    // Nothing changed: every stage is skipped.
    let o = run_graft(&cache, tmp.path(), &["train", "photos", "--name", "t"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).matches("skipped (unchanged)").count(),
        4,
        "{}",
        stdout(&o)
    );

    // A changed setting reruns only what depends on it.
    let o = run_graft(
        &cache,
        tmp.path(),
        &["train", "photos", "--name", "t", "--lrs", "1e-3"],
    );
    let said = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        said.contains("audit + split: data and settings unchanged, skipped"),
        "{said}"
    );
    assert!(said.contains("extract: cache complete, skipped"), "{said}");
    assert!(said.contains("Training 3 heads"), "{said}");

    // The saved config reproduces the run: same weights, same metrics.
    let o = run_graft(
        &cache,
        tmp.path(),
        &["train", "--config", "runs/t/config.toml", "--name", "again"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let again = tmp.path().join("runs/again");
    assert_eq!(
        std::fs::read(run.join("model.safetensors")).expect("model"),
        std::fs::read(again.join("model.safetensors")).expect("model")
    );
    assert_eq!(
        metrics(&run)["eval"]["test"]["macro_f1"],
        metrics(&again)["eval"]["test"]["macro_f1"]
    );

    // Predict: top-k with a confidence flag that follows the threshold; a bad file is named.
    let photo = data.join("blue/blue_00.png");
    let not_image = tmp.path().join("notes.txt");
    std::fs::write(&not_image, "hello").expect("write");
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "predict",
            "--run",
            "runs/t",
            photo.to_str().expect("utf8"),
            "--json",
            "-",
            "--threshold",
            "0.9",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let p = &v["predictions"][0];
    let top = p["top"][0]["probability"].as_f64().expect("probability");
    assert_eq!(p["top"][0]["class"], "blue");
    assert_eq!(p["confident"].as_bool(), Some(top >= 0.9));
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "predict",
            "--run",
            "runs/t",
            not_image.to_str().expect("utf8"),
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("notes.txt"), "{}", stderr(&o));

    // Export: one ONNX file that ONNX Runtime runs like graft, and a card naming its hash.
    common::require_ort_library();
    let o = run_graft(&cache, tmp.path(), &["export", "--run", "runs/t"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("same top-1 on 9/9"), "{}", stdout(&o));
    let onnx = std::fs::read(run.join("model.onnx")).expect("model.onnx");
    assert!(onnx.windows(13).any(|w| w == b"probabilities"));
    let card = std::fs::read_to_string(run.join("model_card.md")).expect("card");
    let sha = graft_model::weights::sha256_file(&run.join("model.onnx")).expect("sha");
    assert!(card.contains(&sha), "{card}");

    // INT8: `serve` refuses it until it is exported, with the command that writes it.
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "serve",
            "--run",
            "runs/t",
            "--precision",
            "int8",
            "--port",
            "0",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("model.int8.onnx does not exist")
            && stderr(&o).contains("graft export --run runs/t --precision int8"),
        "{}",
        stderr(&o)
    );
    let o = run_graft(
        &cache,
        tmp.path(),
        &["export", "--run", "runs/t", "--precision", "int8"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("Calibrating INT8"), "{}", stdout(&o));
    assert!(stdout(&o).contains("drop"), "{}", stdout(&o));
    let int8 = std::fs::read(run.join("model.int8.onnx")).expect("model.int8.onnx");
    assert!(int8.windows(14).any(|w| w == b"QuantizeLinear"));
    assert!(
        int8.len() * 2 < onnx.len(),
        "{} vs {}",
        int8.len(),
        onnx.len()
    );
    // The card and export.json describe both files.
    let card = std::fs::read_to_string(run.join("model_card.md")).expect("card");
    let sha8 = graft_model::weights::sha256_file(&run.join("model.int8.onnx")).expect("sha");
    assert!(card.contains(&sha) && card.contains(&sha8), "{card}");
    assert!(card.contains("activation ranges from"), "{card}");
    let records: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("export.json")).expect("export.json"))
            .expect("json");
    assert_eq!(records["fp32"]["file"], "model.onnx");
    assert_eq!(records["int8"]["file"], "model.int8.onnx");
    assert_eq!(records["int8"]["validated"], 9);
    let o = run_graft(
        &cache,
        tmp.path(),
        &["export", "--run", "runs/t", "--format", "tflite"],
    );
    assert!(!o.status.success() && stderr(&o).contains("--format onnx"));
}

fn shards(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("shard-") && n.ends_with(".f16")
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn killed_during_extraction_the_rerun_keeps_finished_stages_and_chunks() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    coloured_folder(&tmp.path().join("photos"), 16);
    // Small chunks and the burn engine: slow enough to be caught part-way.
    let config: PathBuf = tmp.path().join("graft.toml");
    std::fs::write(
        &config,
        "data = \"photos\"\nname = \"k\"\nbackend = \"burn\"\n[extract]\nchunk = 4\nbatch = 4\n\
         [heads]\nheads = [\"linear\"]\nlrs = [0.003]\nepochs = 3\n[eval]\nlatency = 0\n",
    )
    .expect("config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(["train", "--config", "graft.toml"])
        .current_dir(tmp.path())
        .env("GRAFT_CACHE", &cache)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let features = tmp.path().join("runs/k/features");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while shards(&features) < 2 {
        assert!(std::time::Instant::now() < deadline, "no chunk in 180 s");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let done = shards(&features);
    assert!(done < 12, "all chunks done before the kill");

    let o = run_graft(&cache, tmp.path(), &["train", "--config", "graft.toml"]);
    let said = stdout(&o);
    assert!(o.status.success(), "{said}\n{}", stderr(&o));
    assert!(
        said.contains("audit + split: data and settings unchanged, skipped"),
        "{said}"
    );
    assert!(said.contains(&format!("{done} already done")), "{said}");
    assert!(tmp.path().join("runs/k/report.html").is_file());
}

#[test]
fn presplit_folder_without_test_is_evaluated_on_val_with_a_note() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    coloured_folder(&tmp.path().join("photos/train"), 10);
    coloured_folder(&tmp.path().join("photos/val"), 4);
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "train", "photos", "--name", "v", "--heads", "linear", "--lrs", "0.003",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("no test images"), "{}", stderr(&o));
    let m = metrics(&tmp.path().join("runs/v"));
    assert_eq!(m["eval"]["val"]["images"], 12);
    assert_eq!(m["val_held_out_of_train"], false);
}

/// The attention-pool head end to end: `graft train DIR` extracts feature maps because a head
/// needs them, the sweep trains it beside a pooled head, and eval, predict and the ONNX export
/// (checked against graft) all read maps.
#[test]
fn attention_head_trains_on_feature_maps_and_exports() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    coloured_folder(&tmp.path().join("photos"), 30);
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "train",
            "photos",
            "--name",
            "a",
            "--heads",
            "linear,attention",
            "--lrs",
            "1e-2",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let run = tmp.path().join("runs/a");
    let header: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.join("features/cache.json")).expect("cache.json"),
    )
    .expect("json");
    assert_eq!(header["spatial"]["channels"], 1280, "{header}");
    let sweep = std::fs::read_to_string(run.join("sweep.csv")).expect("sweep.csv");
    assert!(sweep.contains("attention"), "{sweep}");

    // Train the attention head alone on the same cache, then use it everywhere.
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "train",
            "heads",
            "--features",
            "runs/a/features",
            "--heads",
            "attention",
            "--lrs",
            "1e-2",
            "--batch",
            "8",
            "--name",
            "attn",
        ],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let run = tmp.path().join("runs/attn");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("model.json")).expect("model.json"))
            .expect("json");
    assert_eq!(meta["head"]["kind"], "attention");
    assert_eq!(meta["locations"], 49);
    let o = run_graft(&cache, tmp.path(), &["eval", "--run", "runs/attn"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let acc = metrics(&run)["eval"]["test"]["accuracy"]
        .as_f64()
        .expect("accuracy");
    // Colour is what MobileNet's features carry least; the point here is the plumbing, so
    // clearly better than chance (1/3) on 12 test images is enough.
    assert!(acc > 0.5, "attention on colours: {acc}");
    let report = std::fs::read_to_string(run.join("report.html")).expect("report");
    assert!(report.contains("where the attention head looked"));
    let red = tmp.path().join("photos/red/red_00.png");
    let o = run_graft(
        &cache,
        tmp.path(),
        &["predict", "--run", "runs/attn", red.to_str().expect("utf8")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let first = stdout(&o).lines().nth(1).unwrap_or_default().to_string();
    assert!(
        ["red", "green", "blue"].iter().any(|c| first.ends_with(c)) && first.contains('%'),
        "{}",
        stdout(&o)
    );
    common::require_ort_library();
    let o = run_graft(&cache, tmp.path(), &["export", "--run", "runs/attn"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("same top-1 on"), "{}", stdout(&o));

    // A pooled-only cache cannot feed it: a clear error with the fix.
    let o = run_graft(
        &cache,
        tmp.path(),
        &["train", "photos", "--name", "p", "--heads", "linear"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_graft(
        &cache,
        tmp.path(),
        &[
            "train",
            "heads",
            "--features",
            "runs/p/features",
            "--heads",
            "attention",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--spatial"), "{}", stderr(&o));
}
