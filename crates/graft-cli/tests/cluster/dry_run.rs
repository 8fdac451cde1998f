//! Without Slurm: --dry-run writes the scripts (resources from flags over [cluster]),
//! submitting names what is missing, and a node that cannot see the run folder stops.

use std::process::Command;

use super::common::{cache_with_mobilenet, demo_subset, stderr, stdout};
use super::QUICK;

#[test]
fn without_slurm_dry_run_writes_the_scripts_and_submitting_names_what_is_missing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cwd = tmp.path();
    let cache = cache_with_mobilenet(cwd);
    demo_subset(&cwd.join("photos"), 2, 10);
    std::fs::write(
        cwd.join("graft.toml"),
        format!("{QUICK}[cluster]\npartition = \"cpu\"\ntime = \"30:00\"\ngres = \"gpu:1\"\n"),
    )
    .expect("config");
    // A PATH with no Slurm on it.
    let empty = cwd.join("empty-path");
    std::fs::create_dir_all(&empty).expect("dir");
    let run_graft = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_graft"))
            .args(args)
            .current_dir(cwd)
            .env("GRAFT_CACHE", &cache)
            .env("PATH", &empty)
            .output()
            .expect("graft")
    };
    let base = [
        "--no-track",
        "cluster",
        "slurm",
        "extract",
        "photos",
        "--name",
        "r",
        "--config",
        "graft.toml",
        "--tasks",
        "3",
        "--time",
        "10:00",
    ];
    let o = run_graft(&[&base[..], &["--dry-run"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let script = std::fs::read_to_string(cwd.join("runs/r/cluster/extract.sbatch")).expect("sh");
    // Flags over [cluster]; [cluster] over the cluster's defaults.
    for line in [
        "#SBATCH --array=0-2",
        "#SBATCH --partition=cpu",
        "#SBATCH --time=10:00",
        "#SBATCH --gres=gpu:1",
        "--shard \"${SLURM_ARRAY_TASK_ID}/3\"",
        "--chunk 8",
    ] {
        assert!(script.contains(line), "{line} missing from\n{script}");
    }
    let collect =
        std::fs::read_to_string(cwd.join("runs/r/cluster/collect.sbatch")).expect("collect");
    assert!(collect.contains("extract --merge --out"), "{collect}");
    assert!(collect.contains("--no-track train --config"), "{collect}");
    assert!(
        !collect.contains("--gres"),
        "the collect job needs no GPU: {collect}"
    );
    assert!(stdout(&o).contains("sbatch --parsable"), "{}", stdout(&o));

    let o = run_graft(&base);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("sbatch not found"), "{err}");
    assert!(err.contains("apt-get install slurm-client"), "{err}");
    assert!(err.contains("--dry-run"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // The script run by hand as task 0 would: shard 0 of 3 (chunk 0 of the 3 chunks).
    let o = Command::new("bash")
        .arg(cwd.join("runs/r/cluster/extract.sbatch"))
        .current_dir(cwd)
        .env("SLURM_ARRAY_TASK_ID", "0")
        .env("GRAFT_CACHE", &cache)
        .output()
        .expect("bash");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(cwd.join("runs/r/features/shard-00000.f16").is_file());
    assert!(!cwd.join("runs/r/features/shard-00001.f16").exists());

    // Another chunk size for the same run is refused before anything is submitted.
    std::fs::write(
        cwd.join("chunk4.toml"),
        QUICK.replace("chunk = 8", "chunk = 4"),
    )
    .expect("config");
    let mut other = base.to_vec();
    other[8] = "chunk4.toml";
    let o = run_graft(&[&other[..], &["--dry-run"]].concat());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("in chunks of 8, not mobilenet-v2 in chunks of 4"),
        "{}",
        stderr(&o)
    );
    // New photos make a new split: the cache of the old one is cleared, not mixed in.
    let extra = cwd.join("photos").join(
        std::fs::read_dir(cwd.join("photos"))
            .expect("photos")
            .filter_map(Result::ok)
            .next()
            .expect("a class")
            .file_name(),
    );
    let first = std::fs::read_dir(&extra)
        .expect("class")
        .filter_map(Result::ok)
        .next()
        .expect("a photo")
        .path();
    let mut img = image::open(&first).expect("decode").to_rgb8();
    img.put_pixel(0, 0, image::Rgb([255, 0, 0]));
    img.save(extra.join("extra.png")).expect("save");
    let o = run_graft(&[&base[..], &["--dry-run"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("cleared"), "{}", stderr(&o));
    assert!(!cwd.join("runs/r/features/shard-00000.f16").exists());

    // A node that cannot see the run folder stops with the reason, before graft runs.
    std::fs::rename(cwd.join("runs"), cwd.join("moved")).expect("move");
    let o = Command::new("bash")
        .arg(cwd.join("moved/r/cluster/extract.sbatch"))
        .current_dir(cwd)
        .env("SLURM_ARRAY_TASK_ID", "0")
        .output()
        .expect("bash");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("filesystem every node mounts at the same path"),
        "{}",
        stderr(&o)
    );
}
