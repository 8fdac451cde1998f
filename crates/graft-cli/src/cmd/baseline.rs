//! `graft baseline DIR`: a net trained from scratch, set beside the run's transfer result.

use std::path::{Path, PathBuf};

use anyhow::bail;
use graft_run::baseline::{baseline, BaselineMetrics, BaselineRequest, Scores};
use graft_run::RunDir;
use graft_train::baseline::BaselineConfig;

use crate::cli::BaselineArgs;
use crate::terminal::Terminal;

pub fn run(args: BaselineArgs) -> anyhow::Result<()> {
    let run = run_of(&args.dir, &args.runs)?;
    let config = BaselineConfig {
        size: args.size,
        epochs: args.epochs,
        batch: args.batch,
        lr: args.lr,
        weight_decay: args.weight_decay,
        label_smoothing: args.label_smoothing,
        patience: args.patience,
        checkpoint_every: args.checkpoint_every,
        seed: args.seed,
        ..BaselineConfig::new(args.arch)
    };
    config.check()?;
    let device =
        graft_model::burn_backend::device_named(&args.backend).map_err(anyhow::Error::msg)?;
    let reporter: &dyn graft_run::Reporter = if args.json {
        &graft_run::Silent
    } else {
        &Terminal
    };
    let req = BaselineRequest {
        run: &run,
        config,
        augment: !args.no_augment,
        limit: args.limit,
        restart: args.restart,
        device,
    };
    let params = graft_track::Params::from([
        ("arch".to_string(), args.arch.to_string()),
        ("size".to_string(), args.size.to_string()),
        ("epochs".to_string(), args.epochs.to_string()),
        ("batch".to_string(), args.batch.to_string()),
        ("lr".to_string(), args.lr.to_string()),
        ("weight_decay".to_string(), args.weight_decay.to_string()),
        (
            "label_smoothing".to_string(),
            args.label_smoothing.to_string(),
        ),
        ("augment".to_string(), (!args.no_augment).to_string()),
        (
            "limit".to_string(),
            args.limit.map_or("all".into(), |n| n.to_string()),
        ),
        ("seed".to_string(), args.seed.to_string()),
        ("backend".to_string(), args.backend.clone()),
    ]);
    let m = crate::tracked::tracked(graft_run::Job::Baseline, &run, params, || {
        baseline(&req, reporter).map_err(|e| {
            let hint = if e.to_string().contains("other settings") {
                " (--restart trains it again with the new ones)"
            } else {
                " (see `graft baseline --help`)"
            };
            anyhow::anyhow!("{e}{hint}")
        })
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&m)?);
        return Ok(());
    }
    print_table(&m);
    say!(
        "Wrote {} (metrics.json, history.csv, curve.png, model.safetensors); `graft eval --run \
         {}` adds it to report.html",
        graft_run::baseline::BaselineDir::of(&run, m.arch)
            .root()
            .display(),
        run.root().display()
    );
    Ok(())
}

/// The run folder DIR names: itself when it holds a trained run, else the run `graft train
/// DIR` made from that photo folder.
fn run_of(dir: &Path, runs: &Path) -> anyhow::Result<RunDir> {
    let as_run = RunDir::new(dir);
    if as_run.model_meta().is_file() {
        return Ok(as_run);
    }
    if !dir.is_dir() {
        bail!(
            "{} is not a folder; give a run folder (runs/NAME) or a photo folder",
            dir.display()
        );
    }
    let settings = graft_run::Settings {
        data: Some(dir.to_path_buf()),
        runs: runs.to_path_buf(),
        ..graft_run::Settings::default()
    };
    let made = graft_run::pipeline::run_dir(&settings)?;
    if made.model_meta().is_file() {
        return Ok(made);
    }
    let guess: PathBuf = made.root().to_path_buf();
    bail!(
        "{} holds no trained run, and {} (the run `graft train {}` makes) does not exist yet; a \
         baseline uses a run's split and compares with its result: run `graft train {}` first, \
         or give the run folder",
        dir.display(),
        guess.display(),
        dir.display(),
        dir.display()
    )
}

fn print_table(m: &BaselineMetrics) {
    let split = &m.test_split;
    say!(
        "{:<40}  {:>10}  {:>9}  {:>9}  {:>9}  {:>9}",
        "model",
        "parameters",
        "val F1",
        &format!("{split} acc"),
        &format!("{split} F1"),
        "vs transfer"
    );
    let cell = |s: Option<Scores>, f: fn(Scores) -> f64| {
        s.map_or("–".to_string(), |s| format!("{:.4}", f(s)))
    };
    if let Some(t) = &m.transfer {
        say!(
            "{:<40}  {:>10}  {:>9.4}  {:>9}  {:>9}  {:>9}",
            format!("{} (frozen) + {} head", t.encoder, t.head),
            "–",
            t.val.macro_f1,
            cell(t.test, |s| s.accuracy),
            cell(t.test, |s| s.macro_f1),
            "reference"
        );
    }
    say!(
        "{:<40}  {:>10}  {:>9.4}  {:>9.4}  {:>9.4}  {:>9}",
        format!(
            "{} from scratch ({} epochs{})",
            m.arch,
            m.epochs_run,
            if m.stopped_early {
                ", stopped early"
            } else {
                ""
            }
        ),
        m.parameters,
        m.val.macro_f1,
        m.test.accuracy,
        m.test.macro_f1,
        m.gap().map_or("–".to_string(), |g| format!("{g:+.4}"))
    );
    if let Some(g) = m.gap() {
        let verdict = if g > 0.005 {
            "the net trained from scratch beats the frozen encoder here: ImageNet features may not \
             transfer to these images (try `graft finetune`, or keep the baseline)"
        } else if g < -0.005 {
            "the frozen encoder beats the net trained from scratch: the pretrained features earn \
             their keep"
        } else {
            "the two are level on these images"
        };
        say!("{split} macro-F1 {g:+.4}: {verdict}.");
    }
}
