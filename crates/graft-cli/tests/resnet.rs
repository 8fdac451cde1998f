//! A "bring your weights" encoder through the whole pipeline: ResNet-18 weights written here
//! (graft's deterministic synthetic ones: no offline package publishes ResNet weights) are
//! imported, a file with one wrong shape is refused naming the key and both shapes, a
//! fine-tuned checkpoint in a wrapper gives its backbone, and that encoder trains heads on
//! the demo data, fine-tunes one stage-2 epoch and exports to ONNX and INT8, validated
//! against the float classifier.

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
            "fc.weight" => synthetic::tensor(name, &[38, 512], 3),
            "fc.bias" => synthetic::tensor(name, &[38], 3),
            _ => t.clone(),
        };
        wrapped.insert(format!("module.backbone.{name}"), t);
    }
    wrapped.insert("module.extra.weight", synthetic::tensor("x", &[2, 2], 3));
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
    let run = cwd.join("runs/rn");
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
    let o = ok(graft_in(
        &cache,
        cwd,
        &[
            "finetune",
            "--run",
            "runs/rn",
            "--epochs",
            "0,1",
            "--batch",
            "8",
            "--micro-batch",
            "4",
            "--no-track",
        ],
    ));
    let history = std::fs::read_to_string(run.join("finetune/history.csv")).expect("history");
    assert!(
        history.lines().any(|l| l.starts_with("2,")),
        "no stage-2 epoch:\n{history}\n{}",
        stdout(&o)
    );

    for precision in ["fp32", "int8"] {
        let o = ok(graft_in(
            &cache,
            cwd,
            &[
                "export",
                "--run",
                "runs/rn",
                "--precision",
                precision,
                "--validate",
                "32",
                "--calibration",
                "32",
                "--no-track",
            ],
        ));
        println!("{precision}: {}", stdout(&o));
    }
}
