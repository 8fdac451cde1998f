//! `graft bench …`: graft against a reference, measured in the same run, reported as ratios.

mod audit;
mod explain;
mod extract;
mod finetune;
mod heads;
mod serve;
mod tracking;
mod tune;

pub use audit::audit;
pub use explain::explain;
pub use extract::extract;
pub use finetune::finetune;
pub use heads::heads;
pub use serve::serve;
pub use tracking::tracking;
pub use tune::tune_bench as tune;

/// The cached weights file of `kind` that a PyTorch reference reads, or how to fetch it.
fn reference_weights(kind: graft_model::arch::EncoderKind) -> anyhow::Result<std::path::PathBuf> {
    let weights = graft_model::fetch::model_path(&graft_model::fetch::cache_dir(), kind);
    if !weights.exists() {
        let fill = match graft_model::fetch::known(kind) {
            Some(_) => format!("graft models fetch {kind}"),
            None => format!("graft models import FILE.pth --arch {kind}"),
        };
        anyhow::bail!("{} missing: run `{fill}`", weights.display());
    }
    Ok(weights)
}

/// Fail with the install hint unless `python` can import every module of `modules`.
fn require_python(python: &std::path::Path, modules: &[&str]) -> anyhow::Result<()> {
    use anyhow::Context;
    let probe = std::process::Command::new(python)
        .args(["-c", &format!("import {}", modules.join(", "))])
        .output()
        .with_context(|| format!("{} not runnable", python.display()))?;
    if !probe.status.success() {
        anyhow::bail!(
            "{} cannot import {} (pip install {}, then --python PATH)",
            python.display(),
            modules.join(" and "),
            modules.join(" ")
        );
    }
    Ok(())
}
