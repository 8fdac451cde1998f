//! A "bring your weights" encoder through the whole pipeline: ResNet-18 weights written here
//! (graft's deterministic synthetic ones: no offline package publishes ResNet weights) are
//! imported, a file with one wrong shape is refused naming the key and both shapes, a
//! fine-tuned checkpoint in a wrapper gives its backbone, and that encoder trains heads on
//! the demo data, is explained by Grad-CAM (at the last map and an earlier block), fine-tunes
//! one stage-2 epoch and exports to ONNX and INT8, validated against the float classifier.

mod common;

use std::path::Path;
use std::process::Output;

use common::{demo_subset, graft_in, require_ort_library, stderr, stdout};
use graft_model::arch::EncoderKind;
use graft_model::synthetic;
use graft_model::weights::{save_safetensors, DType, Tensor};

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    o
}

fn run_json(run: &Path, file: &str) -> serde_json::Value {
    let path = run.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn imported_resnet18_trains_fine_tunes_and_exports() {
    require_ort_library();
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cwd.join("cache");
    let sd = synthetic::state_dict(EncoderKind::ResNet18, 11).expect("resnet18");

    // One tensor of the wrong shape: refused, named with both shapes, nothing cached.
    let mut bad = sd.clone();
    bad.insert(
        "layer3.1.conv2.weight",
        Tensor {
            shape: vec![256, 256, 1, 1],
            data: vec![0.0; 256 * 256],
            dtype: DType::F32,
        },
    );
    save_safetensors(&bad, &cwd.join("bad.safetensors")).expect("write");
    let o = graft_in(
        &cache,
        cwd,
        &["models", "import", "bad.safetensors", "--arch", "resnet18"],
    );
    assert!(!o.status.success());
    let msg = stderr(&o);
    assert!(
        msg.contains("layer3.1.conv2.weight")
            && msg.contains("[256, 256, 1, 1]")
            && msg.contains("[256, 256, 3, 3]"),
        "{msg}"
    );
    assert!(!cache.join("models/resnet18.safetensors").exists());
    // Before the import, training says where ResNet weights come from.
    demo_subset(&cwd.join("photos"), 4, 16);
    let o = graft_in(
        &cache,
        cwd,
        &["train", "photos", "--encoder", "resnet18", "--no-track"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("graft models import FILE.pth --arch resnet18"),
        "{}",
        stderr(&o)
    );

    save_safetensors(&sd, &cwd.join("resnet18.safetensors")).expect("write");
    ok(graft_in(
        &cache,
        cwd,
        &[
            "models",
            "import",
            "resnet18.safetensors",
            "--arch",
            "resnet18",
        ],
    ));
    let list = stdout(&ok(graft_in(&cache, cwd, &["models", "list"])));
    let row = list
        .lines()
        .find(|l| l.starts_with("resnet18 "))
        .unwrap_or_else(|| panic!("{list}"));
    for part in ["512", "11.7M", "1.81", "bring your weights", "cached"] {
        assert!(row.contains(part), "{part}: {row}");
    }

    // A colleague's fine-tuned checkpoint: wrapped (`module.backbone.`) and with a 38-class
    // classifier. The backbone is taken, the classifier stripped, and both are said.
    let mut wrapped = graft_model::StateDict::new("best_model.safetensors");
    for (name, t) in sd.iter() {
        let t = match name {
            "fc.weight" => synthetic::tensor(EncoderKind::ResNet18, name, &[38, 512], 3),
            "fc.bias" => synthetic::tensor(EncoderKind::ResNet18, name, &[38], 3),
            _ => t.clone(),
        };
        wrapped.insert(format!("module.backbone.{name}"), t);
    }
    wrapped.insert(
        "module.extra.weight",
        synthetic::tensor(EncoderKind::ResNet18, "x", &[2, 2], 3),
    );
    save_safetensors(&wrapped, &cwd.join("best_model.safetensors")).expect("write");
    let o = ok(graft_in(
        &cache,
        cwd,
        &[
            "models",
            "import",
            "best_model.safetensors",
            "--arch",
            "resnet18",
        ],
    ));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        said.contains("`module.backbone.`") && said.contains("(38 classes)"),
        "{said}"
    );
    // No ImageNet classifier is left to predict with: said, not a panic.
    let o = graft_in(
        &cache,
        cwd,
        &[
            "models",
            "predict",
            "--encoder",
            "resnet18",
            "bad.safetensors",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no ImageNet classifier"),
        "{}",
        stderr(&o)
    );

    std::fs::write(
        cwd.join("graft.toml"),
        "encoder = \"resnet18\"\n[heads]\nheads = [\"linear\"]\nlrs = [0.01]\nepochs = 30\n\
         [eval]\nlatency = 0\n",
    )
    .expect("config");
    ok(graft_in(
        &cache,
        cwd,
        &[
            "train",
            "photos",
            "--name",
            "rn",
            "--config",
            "graft.toml",
            "--no-track",
        ],
    ));
    let header = run_json(&cwd.join("runs/rn/features"), "cache.json");
    assert_eq!(header["encoder"], "resnet18");
    // The imported file's identity, not a published one.
    assert!(
        header["weights"]
            .as_str()
            .is_some_and(|w| w.starts_with("resnet18-")),
        "{header}"
    );
    assert_eq!(header["feature_dim"], 512, "{header}");

    // One stage-2 epoch over the top two blocks (both with ReLU after the sum; block 4 of
    // ResNet-18's 9 has a projection, and stage 2 starts above it).
    explain(&cache, cwd, "rn", 6);
    finetune_one_epoch(&cache, cwd, "rn");
    export(&cache, cwd, "rn", &["fp32", "int8"]);

    // What the exported file takes and gives.
    let o = ok(graft_in(
        &cache,
        cwd,
        &["models", "inspect", "runs/rn/model.onnx"],
    ));
    let shown = stdout(&o);
    for line in [
        "opset 13",
        "input   input",
        "[N, 3, 224, 224]",
        "output  probabilities",
        "[N, 4]",
    ] {
        assert!(shown.contains(line), "{line}: {shown}");
    }
    let o = graft_in(&cache, cwd, &["models", "inspect", "resnet18.safetensors"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not a readable ONNX model"),
        "{}",
        stderr(&o)
    );
}

/// Grad-CAM on `runs/NAME` at the last map and at block `layer` (a backward pass through the
/// blocks above it), with the sanity check's re-drawn blocks: one record per image each.
fn explain(cache: &Path, cwd: &Path, name: &str, layer: usize) {
    let run = format!("runs/{name}");
    let photos: Vec<String> = std::fs::read_dir(cwd.join("photos"))
        .expect("photos")
        .filter_map(Result::ok)
        .take(2)
        .filter_map(|class| std::fs::read_dir(class.path()).ok()?.next()?.ok())
        .map(|f| f.path().display().to_string())
        .collect();
    assert_eq!(photos.len(), 2);
    let layer = layer.to_string();
    for (out, extra) in [
        ("last", vec!["--sanity"]),
        ("early", vec!["--layer", &layer]),
    ] {
        let mut args = vec!["explain", "--run", &run, "--name", out, "--no-track"];
        args.extend(extra);
        args.extend(photos.iter().map(String::as_str));
        ok(graft_in(cache, cwd, &args));
        let jsonl = cwd
            .join(&run)
            .join("explain")
            .join(out)
            .join("explain.jsonl");
        let text = std::fs::read_to_string(&jsonl).expect("explain.jsonl");
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(records.len(), 2, "{text}");
        for r in &records {
            assert!(
                r["deletion_auc"].as_f64().is_some_and(f64::is_finite),
                "{r}"
            );
            assert_eq!(r["layer"] == "last", out == "last", "{r}");
        }
    }
}

/// One stage-2 epoch of `graft finetune` on `runs/NAME`.
fn finetune_one_epoch(cache: &Path, cwd: &Path, name: &str) {
    let run = format!("runs/{name}");
    let o = ok(graft_in(
        cache,
        cwd,
        &[
            "finetune",
            "--run",
            &run,
            "--epochs",
            "0,1",
            "--batch",
            "8",
            "--micro-batch",
            "4",
            "--no-track",
        ],
    ));
    let history =
        std::fs::read_to_string(cwd.join(&run).join("finetune/history.csv")).expect("history");
    assert!(
        history.lines().any(|l| l.starts_with("2,")),
        "no stage-2 epoch:\n{history}\n{}",
        stdout(&o)
    );
}

/// `graft export` of `runs/NAME` at each precision, validated against graft's classifier.
fn export(cache: &Path, cwd: &Path, name: &str, precisions: &[&str]) {
    let run = format!("runs/{name}");
    for precision in precisions {
        let o = ok(graft_in(
            cache,
            cwd,
            &[
                "export",
                "--run",
                &run,
                "--precision",
                precision,
                "--validate",
                "32",
                "--calibration",
                "32",
                "--no-track",
            ],
        ));
        println!("{name} {precision}: {}", stdout(&o));
    }
}

/// Synthetic weights of `kind` imported into `cache`, and heads trained on a demo subset as
/// `runs/NAME`.
fn imported_run(cache: &Path, cwd: &Path, kind: EncoderKind, name: &str) {
    let sd = synthetic::state_dict(kind, 5).expect("a layout");
    let file = format!("{kind}.safetensors");
    save_safetensors(&sd, &cwd.join(&file)).expect("write");
    ok(graft_in(
        cache,
        cwd,
        &["models", "import", &file, "--arch", kind.name()],
    ));
    if !cwd.join("photos").exists() {
        demo_subset(&cwd.join("photos"), 4, 16);
    }
    std::fs::write(
        cwd.join(format!("{name}.toml")),
        format!(
            "encoder = \"{kind}\"\n[heads]\nheads = [\"linear\"]\nlrs = [0.01]\nepochs = 30\n\
             [eval]\nlatency = 0\n"
        ),
    )
    .expect("config");
    let config = format!("{name}.toml");
    ok(graft_in(
        cache,
        cwd,
        &[
            "train",
            "photos",
            "--name",
            name,
            "--config",
            &config,
            "--no-track",
        ],
    ));
}

/// MobileNetV3-Small (hard-swish, squeeze-and-excitation with a hard-sigmoid gate) fine-tunes
/// a stage-2 epoch; EfficientNet-B0 (SiLU, sigmoid-gated squeeze-and-excitation) exports to
/// INT8, validated against the float classifier.
#[test]
fn imported_mobilenet_v3_fine_tunes_and_efficientnet_b0_exports_int8() {
    require_ort_library();
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cwd.join("cache");
    imported_run(&cache, cwd, EncoderKind::MobileNetV3Small, "v3");
    // Block 9 of MobileNetV3-Small: squeeze-and-excitation and hard-swish above it.
    explain(&cache, cwd, "v3", 9);
    finetune_one_epoch(&cache, cwd, "v3");
    export(&cache, cwd, "v3", &["fp32"]);
    imported_run(&cache, cwd, EncoderKind::EfficientNetB0, "b0");
    export(&cache, cwd, "b0", &["int8"]);
}
