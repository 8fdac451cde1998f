//! `graft train heads`: the head sweep on a feature cache, written to a run folder.

use graft_run::heads::{train_heads, HeadsRequest};

use crate::cli::TrainHeadsArgs;
use crate::terminal::Terminal;

pub fn run(args: TrainHeadsArgs) -> anyhow::Result<()> {
    if args.heads.is_empty() || args.lrs.is_empty() {
        anyhow::bail!("nothing to train: give at least one --heads and one --lrs value");
    }
    train_heads(
        &HeadsRequest {
            features: args.features,
            name: args.name,
            runs: args.runs,
            heads: args.heads,
            lrs: args.lrs,
            epochs: args.epochs,
            batch: args.batch,
            weight_decay: args.weight_decay,
            label_smoothing: args.label_smoothing,
            balance: args.balance,
            clip: args.clip,
            patience: args.patience,
            val_fraction: args.val_fraction,
            seed: args.seed,
            seeds: args.seeds,
        },
        &Terminal,
    )?;
    Ok(())
}
