//! `graft lr-find --run RUN`: the learning-rate range test for a head.

use anyhow::bail;
use graft_run::lr_find::{lr_find, LrFindRequest};
use graft_run::RunDir;
use graft_train::lr_find::{RangeTest, Rule};

use crate::cli::{LrFindArgs, LrRule};

pub fn run(args: LrFindArgs) -> anyhow::Result<()> {
    if args.finetune {
        return fine_tune(&args);
    }
    if !(args.start > 0.0 && args.end > args.start) {
        bail!(
            "--start {} and --end {} must be positive with --end above --start (1e-6 and 1 \
             cover what heads use)",
            args.start,
            args.end
        );
    }
    if args.steps < 10 {
        bail!(
            "--steps {} is too few for a curve (200 is the default)",
            args.steps
        );
    }
    let dir = RunDir::new(&args.run);
    let rule = match args.rule {
        LrRule::Steepest => Rule::Steepest,
        LrRule::Valley => Rule::Valley,
    };
    let found = lr_find(&LrFindRequest {
        run: &dir,
        head: args.head,
        test: RangeTest {
            start: args.start,
            end: args.end,
            steps: args.steps,
            ..RangeTest::default()
        },
        rule,
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&found)?);
        return Ok(());
    }
    let c = &found.curve;
    let first = c.smoothed.first().copied().unwrap_or(0.0);
    let low = c.smoothed.iter().copied().fold(f32::INFINITY, f32::min);
    say!(
        "Range test of a {} head on {} training rows: {} steps from {:.0e} to {:.0e}{}",
        found.head,
        found.train_rows,
        c.lrs.len(),
        args.start,
        c.lrs.last().copied().unwrap_or(args.end),
        if c.diverged {
            " (stopped: the loss blew up)"
        } else {
            ""
        }
    );
    say!(
        "  smoothed loss {first:.3} → lowest {low:.3} at {:.1e}",
        c.minimum
    );
    match found.suggested {
        Some(lr) => say!(
            "Suggested learning rate ({} rule): {lr:.1e}   ([heads] lrs = [{lr:.1e}] in graft.toml)",
            match rule {
                Rule::Steepest => "steepest",
                Rule::Valley => "valley",
            }
        ),
        None => say!(
            "No suggestion: the loss never fell (the head may not learn from these features; \
             look at the picture)"
        ),
    }
    say!(
        "  curve: {}",
        dir.root().join("lr_find/lr_find.png").display()
    );
    Ok(())
}

/// `--finetune`: the fine-tune command's own range test, with its defaults.
fn fine_tune(args: &LrFindArgs) -> anyhow::Result<()> {
    use clap::Parser as _;
    let run = args.run.to_string_lossy().into_owned();
    let blocks = args.unfreeze_blocks.to_string();
    let rule = match args.rule {
        LrRule::Steepest => "auto",
        LrRule::Valley => "auto:valley",
    };
    let parsed = crate::cli::Cli::try_parse_from([
        "graft",
        "finetune",
        "--run",
        &run,
        "--lr-find",
        "--lr",
        rule,
        "--unfreeze-blocks",
        &blocks,
    ])?;
    match parsed.command {
        crate::cli::Command::Finetune(a) => crate::cmd::finetune::run(*a),
        other => anyhow::bail!("internal: parsed {other:?} instead of graft finetune"),
    }
}
