//! `graft baseline` on a 32×32 dataset trained by `graft train`: the small-image note, a
//! ResNet-20 trained from scratch on the run's split and set beside the transfer result, the
//! report's section, an exact resume after kill -9, and clear errors.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{cache_with_mobilenet, graft_in, save, stderr, stdout};
use image::RgbImage;

/// Three classes of 32×32 images told apart by the orientation of their stripes (horizontal,
/// vertical, diagonal), with random phase, period and colours.
fn striped_folder(dir: &Path, per_class: usize) {
    for (k, class) in ["horizontal", "vertical", "diagonal"].iter().enumerate() {
        for i in 0..per_class {
            let mut s = ((k * 1000 + i) as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            let period = 4 + (next() % 5) as u32;
            let phase = (next() % 8) as u32;
            let (a, b) = ((next() % 90) as u8 + 150, (next() % 90) as u8);
            let img = RgbImage::from_fn(32, 32, |x, y| {
                let t = match k {
                    0 => y,
                    1 => x,
                    _ => x + y,
                };
                let on = ((t + phase) / (period / 2).max(1)).is_multiple_of(2);
                let v = if on { a } else { b };
                image::Rgb([v, v.saturating_sub(20), v])
            });
            save(&img, &dir.join(class).join(format!("{class}_{i:02}.png")));
        }
    }
}

fn metrics(run: &Path, arch: &str) -> serde_json::Value {
    let p = run.join("baseline").join(arch).join("metrics.json");
    serde_json::from_slice(&std::fs::read(&p).expect("metrics.json")).expect("JSON")
}

#[test]
fn resnet20_from_scratch_sits_beside_the_transfer_run_and_resumes_after_kill() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = cache_with_mobilenet(tmp.path());
    striped_folder(&tmp.path().join("photos"), 40);
    let o = graft_in(
        &cache,
        tmp.path(),
        &["train", "photos", "--name", "s", "--no-track"],
    );
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        said.contains("images are small") && said.contains("graft baseline runs/s --arch resnet20"),
        "{said}"
    );
    // A copy of the run, for the interrupted baseline below.
    let run = tmp.path().join("runs/s");
    let copy = tmp.path().join("runs/s2");
    copy_dir(&run, &copy);

    fn base<'a>(dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["baseline", dir];
        a.extend_from_slice(&["--epochs", "3", "--batch", "16", "--checkpoint-every", "1"]);
        a.extend_from_slice(extra);
        a
    }
    let o = graft_in(&cache, tmp.path(), &base("runs/s", &[]));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("reference") && out.contains("resnet20 from scratch"),
        "{out}"
    );
    let m = metrics(&run, "resnet20");
    let run_metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("metrics.json")).expect("run metrics"))
            .expect("JSON");
    // The same split: as many test images as the run scored.
    assert_eq!(m["test_images"], run_metrics["rows"]["test"], "{m}");
    assert_eq!(m["test_split"], "test");
    // ResNet-20 with projection shortcuts has 272,474 parameters for 10 classes; 3 here.
    assert_eq!(m["parameters"].as_u64(), Some(272_474 - 7 * (64 + 1)));
    let transfer = &m["transfer"]["test"]["macro_f1"];
    assert_eq!(*transfer, run_metrics["best"]["test_macro_f1"], "{m}");
    let history = std::fs::read_to_string(run.join("baseline/resnet20/history.csv")).expect("csv");
    assert_eq!(
        history.lines().count(),
        1 + m["epochs_run"].as_u64().expect("epochs") as usize
    );
    for f in ["curve.png", "model.safetensors", "augmented_batch.png"] {
        assert!(run.join("baseline/resnet20").join(f).is_file(), "{f}");
    }
    // The stripes are learnable from scratch in three epochs on 84 images.
    let f1 = m["val"]["macro_f1"].as_f64().expect("f1");
    assert!(f1 > 0.5, "val macro-F1 {f1}");

    // The baseline is a tracked run: its settings, val macro-F1 per epoch, the gap.
    let o = graft_in(&cache, tmp.path(), &["runs", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("runs JSON");
    let tracked = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["command"] == "baseline")
        .unwrap_or_else(|| panic!("the baseline in {listed}"));
    assert_eq!(tracked["status"], "finished");
    assert_eq!(tracked["params"]["arch"], "resnet20");
    assert_eq!(tracked["metrics"]["test_macro_f1"], m["test"]["macro_f1"]);

    // graft eval puts it in the report.
    let o = graft_in(
        &cache,
        tmp.path(),
        &["eval", "--run", "runs/s", "--no-track"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(run.join("report.html")).expect("report");
    assert!(html.contains("<h2>Baselines</h2>") && html.contains("resnet20 from scratch"));

    // Other settings on the same folder are refused, naming the fix.
    let o = graft_in(&cache, tmp.path(), &base("runs/s", &["--lr", "1e-2"]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--restart"), "{}", stderr(&o));

    // kill -9 once a checkpoint exists, rerun: the same result as the uninterrupted run.
    let ckpt = copy.join("baseline/resnet20/checkpoint.bin");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args(base("runs/s2", &[]))
        .current_dir(tmp.path())
        .env("GRAFT_CACHE", &cache)
        .env("GRAFT_NO_TRACK", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    while !ckpt.is_file() && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(ckpt.is_file(), "no checkpoint written");
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(
        !copy.join("baseline/resnet20/metrics.json").is_file(),
        "killed too late"
    );
    let o = graft_in(&cache, tmp.path(), &base("runs/s2", &[]));
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let resumed = metrics(&copy, "resnet20");
    for key in ["val", "test", "best_epoch", "epochs_run"] {
        assert_eq!(resumed[key], m[key], "{key}");
    }
    assert_eq!(
        std::fs::read(copy.join("baseline/resnet20/model.safetensors")).expect("w"),
        std::fs::read(run.join("baseline/resnet20/model.safetensors")).expect("w")
    );

    // A photo folder without its run names the command that makes it.
    let o = graft_in(&cache, tmp.path(), &["baseline", "photos"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("graft train photos"), "{}", stderr(&o));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}
