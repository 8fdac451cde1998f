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
    let web = match args.format.as_str() {
        "onnx" => None,
        "web" => Some(args.out.clone().ok_or_else(|| {
            anyhow::anyhow!("--format web writes a folder: give it with --out DIR")
        })?),
        other => bail!("format {other:?} is not supported; use --format onnx or web"),
    };
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
    if let Some(out) = web {
        if !run.onnx(req.precision).is_file() {
            say!(
                "{} is not exported yet: exporting it first",
                run.onnx(req.precision).display()
            );
            tracked(Job::Export, &run, params, || export(&run, &req))?;
        }
        return export_web(&run, &args, &out);
    }
    tracked(Job::Export, &run, params, || export(&run, &req))
}

fn export_web(run: &RunDir, args: &ExportArgs, out: &std::path::Path) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.threshold) {
        bail!("--threshold {} must be between 0 and 1", args.threshold);
    }
    let req = graft_run::export_web::WebRequest {
        precision: args.precision,
        out,
        threshold: args.threshold,
        top: args.top,
        runtime: graft_run::export_web::ort_web_dir(),
        api: args.api.clone(),
    };
    if let Some(api) = &args.api {
        if api != "/" && graft_export::web::origin_of(api).is_none() {
            bail!("--api {api:?}: give / (the server that serves the page) or an http(s) URL");
        }
    }
    let w = graft_run::export_web::export_web(run, &req)?;
    let mb = |b: u64| b as f64 / 1e6;
    let size = |name: &str| {
        w.files
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, b)| *b)
    };
    say!(
        "Wrote {} ({} files, {:.1} MB: model {:.1} MB, ONNX Runtime Web {:.1} MB)",
        out.display(),
        w.files.len(),
        mb(w.bytes),
        mb(size("model.onnx")),
        mb(w.files
            .iter()
            .filter(|(n, _)| n.starts_with("ort/"))
            .map(|(_, b)| b)
            .sum())
    );
    say!(
        "Open it from a web server (a service worker needs one): graft serve --run {} --web {} \
         then http://127.0.0.1:8080/app/ — after the first visit it works offline and installs \
         as an app.",
        run.root().display(),
        out.display()
    );
    Ok(())
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
