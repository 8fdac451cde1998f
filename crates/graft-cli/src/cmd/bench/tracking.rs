//! `graft bench tracking DIR`: what recording a run costs. The same `graft train DIR` runs as a
//! child process with tracking and with `--no-track`, alternating (on, off, off, on, …), each in
//! a fresh folder so no stage is skipped; the ratio of the medians is the overhead.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::cli::BenchTrackingArgs;

pub fn tracking(args: BenchTrackingArgs) -> anyhow::Result<()> {
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let exe = std::env::current_exe().context("finding the graft binary")?;
    let dir = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("{} is not a photo folder", args.dir.display()))?;
    let config = args
        .config
        .as_deref()
        .map(std::fs::canonicalize)
        .transpose()
        .context("--config")?;
    let work = tempfile::tempdir().context("a scratch folder")?;
    println!(
        "bench tracking: graft train {} ×{} with tracking and ×{} without (fresh folders)",
        dir.display(),
        args.repeat,
        args.repeat
    );
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for i in 0..args.repeat {
        // ABBA: on, off, off, on, …
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for tracked in order {
            let s = train_once(
                &exe,
                &dir,
                config.as_deref(),
                work.path(),
                i,
                tracked,
                &args,
            )?;
            println!(
                "  {:<16} {s:>8.2} s",
                if tracked { "tracked" } else { "--no-track" }
            );
            if tracked { &mut on } else { &mut off }.push(s);
        }
    }
    let (m_on, m_off) = (
        graft_eval::percentile(&mut on, 0.5),
        graft_eval::percentile(&mut off, 0.5),
    );
    println!("  median tracked {m_on:.2} s, --no-track {m_off:.2} s");
    println!(
        "  tracked / untracked = {:.3} ({:+.1} %)",
        m_on / m_off,
        (m_on / m_off - 1.0) * 100.0
    );
    Ok(())
}

fn train_once(
    exe: &Path,
    dir: &Path,
    config: Option<&Path>,
    work: &Path,
    i: usize,
    tracked: bool,
    args: &BenchTrackingArgs,
) -> anyhow::Result<f64> {
    let cwd = work.join(format!("{}-{i}", if tracked { "on" } else { "off" }));
    std::fs::create_dir_all(&cwd)?;
    let mut cmd = Command::new(exe);
    cmd.arg("train")
        .arg(dir)
        .args(["--name", "bench", "--quiet"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    if !tracked {
        cmd.arg("--no-track");
    }
    cmd.current_dir(&cwd).env_remove("MLFLOW_TRACKING_URI");
    if let (true, Some(uri)) = (tracked, &args.with_mlflow) {
        cmd.env("MLFLOW_TRACKING_URI", uri);
    }
    let t = Instant::now();
    let out = cmd.output().context("running graft train")?;
    let s = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "graft train failed in {}: {}",
            cwd.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(s)
}
