//! `graft eval --run RUN`: metrics, figures and report.html for a trained run.

use graft_data::scan::Split;
use graft_run::evaluate::{evaluate, EvalRequest};
use graft_run::{Job, RunDir, RunError};
use graft_track::Params;

use crate::cli::EvalArgs;
use crate::terminal::Terminal;
use crate::tracked::tracked;

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let split: Split = args.split.parse().map_err(anyhow::Error::msg)?;
    let req = EvalRequest {
        run: args.run,
        split,
        features: args.features,
        latency: args.latency,
    };
    let params = Params::from([
        ("split".into(), args.split.clone()),
        ("latency".into(), args.latency.to_string()),
    ]);
    tracked(
        Job::Eval,
        &RunDir::new(&req.run),
        params,
        || match evaluate(&req, &Terminal) {
            Ok(_) => Ok(()),
            Err(e @ RunError::NoImages { .. }) => Err(anyhow::anyhow!("{e}; try --split val")),
            Err(e) => Err(e.into()),
        },
    )
}
