//! `graft export --run RUN`: the classifier as one ONNX file (float, or INT8 after calibration),
//! validated against graft on the run's held-out images, with a model card (graft-run's
//! `export`, which graft-export does the work for).

use anyhow::bail;
use graft_run::export::ExportRequest;
use graft_run::{RunDir, RunError};

use crate::cli::ExportArgs;
use crate::terminal::Terminal;

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
    let done = match graft_run::export::export(&RunDir::new(&args.run), &req, &Terminal) {
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
