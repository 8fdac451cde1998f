//! `graft export --run RUN`: the classifier as one ONNX file (float, or INT8 after calibration),
//! validated against graft on the run's held-out images, with a model card (graft-run's
//! `export`, which graft-export does the work for).

use anyhow::bail;
use graft_run::export::ExportRequest;
use graft_run::{Job, RunDir, RunError};
use graft_track::Params;

use crate::cli::ExportArgs;
use crate::terminal::Terminal;
use crate::tracked::tracked;

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    if args.format != "onnx" {
        bail!(
            "format {:?} is not supported; use --format onnx",
            args.format
        );
    }
    let req = ExportRequest {
        precision: args.precision,
        validate: args.validate,
        calibration: args.calibration,
        float_blocks: args.float_blocks,
        weights: args.int8_weights.resolve(),
        max_accuracy_drop: args.max_accuracy_drop,
        force: args.force,
    };
    let params = Params::from([
        ("precision".into(), req.precision.name().to_string()),
        ("validate".into(), req.validate.to_string()),
        ("calibration".into(), req.calibration.to_string()),
        ("float_blocks".into(), req.float_blocks.to_string()),
        ("int8_weights".into(), req.weights.name().to_string()),
        (
            "max_accuracy_drop".into(),
            req.max_accuracy_drop.to_string(),
        ),
        ("force".into(), req.force.to_string()),
    ]);
    let run = RunDir::new(&args.run);
    tracked(Job::Export, &run, params, || export(&run, &req))
}

fn export(run: &RunDir, req: &ExportRequest) -> anyhow::Result<()> {
    let done = match graft_run::export::export(run, req, &Terminal) {
        Ok(done) => done,
        Err(RunError::AccuracyLimit { drop, max }) => bail!(
            "INT8 loses {:.1} points of accuracy, more than --max-accuracy-drop {max}; \
             not written. Try --float-blocks with more blocks, --int8-weights 7, \
             more --validate images, or serve the float model.onnx (--force \
             writes it anyway)",
            drop * 100.0
        ),
        Err(e) => return Err(e.into()),
    };
    let r = &done.record;
    say!(
        "Wrote {} ({:.1} MB, sha256 {}) and model_card.md",
        done.path.display(),
        r.bytes as f64 / 1e6,
        &r.sha256[..16]
    );
    Ok(())
}
