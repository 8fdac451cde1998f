//! `graft finetune` with the real MobileNetV2 weights on a small generated folder: a dry run,
//! a fine-tune that is SIGKILLed in stage 2 and resumed ends with the same files as an
//! uninterrupted one, and the refusals that protect finished and interrupted work.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{cache_with_mobilenet, coloured_folder, graft_in as graft, stderr, stdout};

/// Stage and update recorded in a fine-tune checkpoint (its JSON header), if readable.
fn checkpoint_position(path: &Path) -> Option<(u64, u64)> {
    let bytes = std::fs::read(path).ok()?;
    let len = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?) as usize;
    let v: serde_json::Value = serde_json::from_slice(bytes.get(16..16 + len)?).ok()?;
    Some((
        v["state"]["stage"].as_u64()?,
        v["state"]["stage_updates"].as_u64()?,
    ))
}

fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for f in [
        "model.json",
        "model.safetensors",
        "run.json",
        "metrics.json",
    ] {
        std::fs::copy(from.join(f), to.join(f)).expect("copy");
    }
}

const FT: [&str; 10] = [
    "--epochs",
    "1,3",
    "--batch",
    "8",
    "--micro-batch",
    "2",
    "--checkpoint-every",
    "1",
    "--patience",
    "5",
];

#[test]
fn killed_in_stage_two_resumes_to_the_same_weights_as_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    coloured_folder(&tmp.path().join("photos"), 16);
    std::fs::write(
        tmp.path().join("graft.toml"),
        "data = \"photos\"\nname = \"base\"\n[heads]\nheads = [\"mlp:32:0.2\"]\nlrs = [0.003]\n\
         epochs = 5\nbatch = 8\n[eval]\nlatency = 0\n",
    )
    .expect("config");
    let o = graft(&cache, tmp.path(), &["train", "--config", "graft.toml"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let base = tmp.path().join("runs/base");

    let o = graft(
        &cache,
        tmp.path(),
        &[
            "finetune",
            "--run",
            "runs/base",
            "--dry-run",
            "--memory",
            "1GB",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("largest micro batch within 1GB"),
        "{}",
        stdout(&o)
    );
    assert!(!base.join("finetune").exists(), "a dry run trains nothing");
    // float16 without loss scaling is refused, with the precision to use instead.
    let o = graft(
        &cache,
        tmp.path(),
        &["finetune", "--run", "runs/base", "--precision", "f16"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("use bf16"), "{}", stderr(&o));

    // Uninterrupted.
    let whole = tmp.path().join("runs/whole");
    copy_run(&base, &whole);
    let mut args = vec!["finetune", "--run", "runs/whole"];
    args.extend(FT);
    let o = graft(&cache, tmp.path(), &args);
    let said = stdout(&o);
    assert!(o.status.success(), "{said}\n{}", stderr(&o));
    assert!(said.contains("Frozen head: val macro-F1"), "{said}");
    assert!(said.contains("fine-tuned accuracy"), "{said}");
    for f in [
        "metrics.json",
        "history.csv",
        "encoder.safetensors",
        "model.json",
        "model.safetensors",
    ] {
        assert!(whole.join("finetune").join(f).is_file(), "{f} missing");
    }
    // The fine-tuned run exports (validated in ONNX Runtime against graft's own forward pass
    // with the fine-tuned encoder) and predicts.
    common::require_ort_library();
    let o = graft(
        &cache,
        tmp.path(),
        &["export", "--run", "runs/whole/finetune"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(whole.join("finetune/model.onnx").is_file());
    let img = tmp.path().join("photos/red/red_00.png");
    let o = graft(
        &cache,
        tmp.path(),
        &[
            "predict",
            "--run",
            "runs/whole/finetune",
            img.to_str().expect("utf8"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = graft(
        &cache,
        tmp.path(),
        &["eval", "--run", "runs/whole/finetune"],
    );
    assert!(stderr(&o).contains("fine-tuned encoder"), "{}", stderr(&o));
    // Finished work is not redone by accident.
    let o = graft(&cache, tmp.path(), &args);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("already fine-tuned"), "{}", stderr(&o));

    // SIGKILL part-way through stage 2, then --resume.
    let cut = tmp.path().join("runs/cut");
    copy_run(&base, &cut);
    let o = graft(&cache, tmp.path(), &["finetune", "--resume", "runs/cut"]);
    assert!(
        stderr(&o).contains("no fine-tune to resume"),
        "{}",
        stderr(&o)
    );
    let mut args = vec!["finetune", "--run", "runs/cut"];
    args.extend(FT);
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(&args)
        .current_dir(tmp.path())
        .env("GRAFT_CACHE", &cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start");
    let ckpt: PathBuf = cut.join("finetune/checkpoint.bin");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some((1, update)) = checkpoint_position(&ckpt) {
            if update >= 2 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "stage 2 never started");
        assert!(
            child.try_wait().expect("poll").is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        !cut.join("finetune/metrics.json").exists(),
        "killed before the end"
    );
    let o = graft(&cache, tmp.path(), &args);
    assert!(
        stderr(&o).contains("--resume"),
        "an interrupted fine-tune is not overwritten"
    );
    // Settings given with --resume are ignored: the fine-tune continues as it was started.
    let o = graft(
        &cache,
        tmp.path(),
        &[
            "finetune",
            "--resume",
            "runs/cut",
            "--unfreeze-blocks",
            "1",
            "--lr",
            "1",
        ],
    );
    let said = stdout(&o);
    assert!(o.status.success(), "{said}\n{}", stderr(&o));
    assert!(said.contains("Resuming from"), "{said}");
    for f in ["encoder.safetensors", "model.safetensors", "history.csv"] {
        assert_eq!(
            std::fs::read(whole.join("finetune").join(f)).expect("whole"),
            std::fs::read(cut.join("finetune").join(f)).expect("cut"),
            "{f} differs after kill -9 and resume"
        );
    }

    // The range test alone: the curve and a suggested --lr, nothing trained.
    let auto = tmp.path().join("runs/auto");
    copy_run(&base, &auto);
    let find = [
        "finetune",
        "--run",
        "runs/auto",
        "--lr-find",
        "--batch",
        "8",
        "--micro-batch",
        "2",
    ];
    let o = graft(&cache, tmp.path(), &find);
    let said = stdout(&o);
    assert!(o.status.success(), "{said}\n{}", stderr(&o));
    assert!(said.contains("suggested --lr"), "{said}");
    let dir = auto.join("finetune");
    assert!(dir.join("lr_find/lr_find.png").is_file());
    assert!(!dir.join("checkpoint.bin").exists() && !dir.join("settings.json").exists());
    let json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("JSON")
    };
    let suggested = json(dir.join("lr_find/lr_find.json"))["suggested"].clone();
    assert!(suggested.as_f64().is_some_and(|r| r > 0.0), "{suggested}");
    // --lr auto runs the same test and trains at its suggestion, recorded for a resume.
    let mut args = vec!["finetune", "--run", "runs/auto", "--lr", "auto"];
    args.extend(FT);
    let o = graft(&cache, tmp.path(), &args);
    let said = stdout(&o);
    assert!(o.status.success(), "{said}\n{}", stderr(&o));
    // The same f32, whatever digits each file's serialiser wrote.
    let f32_of = |v: &serde_json::Value| v.as_f64().map(|x| x as f32);
    let want = f32_of(&suggested);
    assert_eq!(f32_of(&json(dir.join("settings.json"))["lr"]), want);
    assert_eq!(
        f32_of(&json(dir.join("metrics.json"))["config"]["lr"]),
        want
    );
    // graft lr-find --finetune is the same test from the lr-find command.
    let o = graft(
        &cache,
        tmp.path(),
        &[
            "lr-find",
            "--run",
            "runs/auto",
            "--finetune",
            "--rule",
            "valley",
        ],
    );
    let said = stdout(&o);
    assert!(o.status.success(), "{said}\n{}", stderr(&o));
    assert!(said.contains("suggested --lr"), "{said}");
    assert_eq!(json(dir.join("lr_find/lr_find.json"))["rule"], "valley");
}
