//! `graft train heads`: the head sweep on a feature cache, written to a run folder.

use graft_run::heads::{run_folder, train_heads, HeadsRequest};
use graft_run::{Job, RunDir};
use graft_track::Params;

use crate::cli::{LrArg, TrainHeadsArgs};
use crate::terminal::Terminal;
use crate::tracked::tracked;

pub fn run(mut args: TrainHeadsArgs) -> anyhow::Result<()> {
    let auto_lr = match args.lr {
        Some(LrArg::Auto(rule)) => Some(rule),
        Some(LrArg::Rate(lr)) => {
            args.lrs = vec![lr];
            None
        }
        None => None,
    };
    if args.heads.is_empty() || args.lrs.is_empty() {
        anyhow::bail!("nothing to train: give at least one --heads and one --lrs value");
    }
    // The folder first (the first free runs/train, train2, … unless named), so the tracked run
    // knows where it is.
    let dir = run_folder(&args.runs, args.name.as_deref())?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    let heads: Vec<String> = args.heads.iter().map(ToString::to_string).collect();
    let lrs: Vec<String> = args.lrs.iter().map(ToString::to_string).collect();
    let params = Params::from([
        ("features".into(), args.features.display().to_string()),
        ("heads".into(), heads.join(",")),
        (
            "lrs".into(),
            match auto_lr {
                Some(rule) => format!("auto:{rule}"),
                None => lrs.join(","),
            },
        ),
        ("epochs".into(), args.epochs.to_string()),
        ("batch".into(), args.batch.to_string()),
        ("weight_decay".into(), args.weight_decay.to_string()),
        ("label_smoothing".into(), args.label_smoothing.to_string()),
        (
            "balance".into(),
            format!("{:?}", args.balance).to_lowercase(),
        ),
        ("clip".into(), args.clip.to_string()),
        ("patience".into(), args.patience.to_string()),
        ("val_fraction".into(), args.val_fraction.to_string()),
        ("seed".into(), args.seed.to_string()),
        ("seeds".into(), args.seeds.to_string()),
    ]);
    tracked(Job::TrainHeads, &RunDir::new(&dir), params, || {
        train_heads(
            &HeadsRequest {
                features: args.features,
                name,
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
                auto_lr,
            },
            &Terminal,
        )?;
        Ok(())
    })
}
