//! `graft train DIR` as one call: audit → split → extract → heads → eval in one run folder,
//! each stage skipped when its inputs are unchanged (fingerprints in `stages.json`), every
//! stage's output written atomically, so an interrupted run continues where it stopped.

use std::path::PathBuf;
use std::time::Instant;

use graft_data::scan::Split;
use graft_train::HeadSpec;

use crate::error::Context;
use crate::evaluate::{evaluate, EvalRequest};
use crate::extract::{cache_stale, extract, other_weights, spatial_changed, ExtractRequest};
use crate::files::write_file;
use crate::heads::{train_heads, HeadsRequest};
use crate::prepare::prepare;
use crate::report::{Event, Reporter};
use crate::settings::Settings;
use crate::stages::{data_fingerprint, file_hash, hash_parts, Outcome, StageRun};
use crate::{RunDir, RunError, Stage, StageBook};

/// A finished `graft train DIR`.
#[derive(Debug)]
pub struct Trained {
    pub run: RunDir,
    /// The resolved settings, saved in the run (`graft train --config` reproduces it).
    pub config: PathBuf,
    pub stages: Vec<StageRun>,
    pub seconds: f64,
}

/// The run folder `settings` name: `runs/NAME`, or `runs/<data folder>-<encoder>`.
pub fn run_name(settings: &Settings) -> Option<String> {
    let data = settings.data.as_ref()?;
    Some(settings.name.clone().unwrap_or_else(|| {
        let base = std::fs::canonicalize(data)
            .ok()
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "data".into());
        format!("{base}-{}", settings.encoder.short_name())
    }))
}

/// The run folder `graft train` with `settings` works in, once its photo folder is checked
/// (for callers that set up around the run, such as tracking, before [`train`]).
pub fn run_dir(settings: &Settings) -> Result<RunDir, RunError> {
    let (_, name) = target(settings)?;
    Ok(RunDir::new(settings.runs.join(name)))
}

/// The photo folder, checked, and the run's name.
fn target(settings: &Settings) -> Result<(PathBuf, String), RunError> {
    let (Some(data), Some(name)) = (settings.data.clone(), run_name(settings)) else {
        return Err(RunError::Invalid(
            "which photos? Give a folder (graft train photos/) or a config file with data = \"…\""
                .into(),
        ));
    };
    if !data.is_dir() {
        return Err(RunError::Invalid(format!(
            "{} is not a folder; graft train expects DIR/<class>/*.jpg (or DIR/train/<class>/…)",
            data.display()
        )));
    }
    Ok((data, name))
}

/// The run folder set up and its first stage (audit + split) done: what `graft cluster`
/// needs before it hands extraction to a scheduler.
struct Begun {
    run: RunDir,
    name: String,
    config_path: PathBuf,
    book: StageBook,
    timings: Vec<StageRun>,
    started: Instant,
}

/// Write the run's settings and run (or skip) audit + split, as `graft train` starts: the
/// run folder `graft cluster` then extracts into with array tasks.
pub fn prepare_only(settings: &Settings, reporter: &dyn Reporter) -> Result<RunDir, RunError> {
    Ok(begin(&settings.resolved()?, reporter)?.run)
}

/// Whether `settings`' heads read feature maps, so the cache must keep them.
pub fn spatial_needed(settings: &Settings) -> Result<bool, RunError> {
    Ok(settings.head_specs()?.iter().any(HeadSpec::spatial))
}

/// `settings` resolved ([`Settings::resolved`]) by the caller.
fn begin(settings: &Settings, reporter: &dyn Reporter) -> Result<Begun, RunError> {
    let (data, name) = target(settings)?;
    let cfg = settings;
    let run = RunDir::new(cfg.runs.join(&name));
    std::fs::create_dir_all(run.root()).map_err(|e| RunError::write(run.root(), e))?;
    let config_path = run.config();
    let mut saved = cfg.clone();
    saved.name = Some(name.clone());
    write_file(&config_path, saved.to_toml(&config_path)?.as_bytes())?;
    let mut book = StageBook::load(&run);
    let started = Instant::now();
    let mut timings: Vec<StageRun> = Vec::new();
    reporter.event(Event::Run {
        root: run.root(),
        encoder: &cfg.encoder,
        data: &data,
    });
    let header = |stage: Stage, what: &str| reporter.event(Event::Stage { stage, what });

    // 1. audit + split
    let manifest = run.manifest();
    let fp = data_fingerprint(&data, toml_of(&cfg.split)?.as_bytes())
        .with_context(|| format!("scanning {}", data.display()))?;
    timings.push(book.run(
        Stage::Prepare,
        fp,
        &manifest,
        || {
            header(
                Stage::Prepare,
                "audit + split: data and settings unchanged, skipped",
            )
        },
        || {
            header(Stage::Prepare, "audit + split");
            let prepared = prepare(&data, &run, &cfg.split, reporter)?;
            reporter.event(Event::Prepared(&prepared));
            if let Some(note) = crate::prepare::small_images_note(&prepared.audit, &run) {
                reporter.event(Event::Note(note));
            }
            Ok::<_, RunError>(Outcome::Done)
        },
    )?);
    Ok(Begun {
        run,
        name,
        config_path,
        book,
        timings,
        started,
    })
}

/// Run every stage of `settings` that is not done yet.
pub fn train(settings: &Settings, reporter: &dyn Reporter) -> Result<Trained, RunError> {
    let settings = &settings.resolved()?;
    let cfg = settings;
    let Begun {
        run,
        name,
        config_path,
        mut book,
        mut timings,
        started,
    } = begin(settings, reporter)?;
    let header = |stage: Stage, what: &str| reporter.event(Event::Stage { stage, what });
    let manifest = run.manifest();

    // 2. extract (resumable by itself: finished chunks are kept)
    let features = run.features();
    let heads: Vec<HeadSpec> = cfg.head_specs()?;
    // Feature maps only when a head reads them: they are H·W times larger.
    let spatial = spatial_needed(cfg)?;
    // A known encoder by its name (its weights are checked by the cache itself); a file by
    // its contents, output and preprocessing too.
    let encoder_fp = match &cfg.encoder {
        graft_model::Encoder::Known(k) => k.name().to_string(),
        graft_model::Encoder::Onnx(o) => format!(
            "{}{}",
            crate::encoder::weights_id(&cfg.encoder)?,
            serde_json::to_string(o).map_err(|e| RunError::Invalid(e.to_string()))?
        ),
    };
    let fp = hash_parts(&[
        file_hash(&manifest).as_bytes(),
        encoder_fp.as_bytes(),
        &cfg.extract.chunk.to_le_bytes(),
        &[u8::from(spatial)],
    ]);
    timings.push(book.run(
        Stage::Extract,
        fp,
        &features.join(graft_features::format::HEADER_FILE),
        || header(Stage::Extract, "extract: cache complete, skipped"),
        || {
            header(Stage::Extract, "extract");
            ensure_weights(&cfg.encoder, reporter)?;
            extract(
                &ExtractRequest {
                    data: manifest.clone(),
                    encoder: cfg.encoder.clone(),
                    out: features.clone(),
                    batch: cfg.extract.batch,
                    chunk: cfg.extract.chunk,
                    shard: graft_features::Shard::default(),
                    spatial,
                    backend: cfg.backend,
                    // A new manifest means new images, a new --spatial setting a new layout,
                    // and other weights (a changed ONNX file, re-imported weights) other
                    // features: the old cache cannot be continued.
                    force: cache_stale(&features, &manifest)
                        || spatial_changed(&features, spatial)
                        || other_weights(&features, &cfg.encoder)?,
                },
                reporter,
            )?;
            Ok::<_, RunError>(Outcome::Done)
        },
    )?);

    // 3. heads
    let fp = hash_parts(&[
        file_hash(&features.join(graft_features::format::HEADER_FILE)).as_bytes(),
        toml_of(&cfg.heads)?.as_bytes(),
    ]);
    timings.push(book.run(
        Stage::Heads,
        fp,
        &run.model_meta(),
        || {
            header(
                Stage::Heads,
                "heads: features and settings unchanged, skipped",
            )
        },
        || {
            header(Stage::Heads, "head sweep");
            let h = &cfg.heads;
            train_heads(
                &HeadsRequest {
                    features: features.clone(),
                    name: Some(name.clone()),
                    runs: cfg.runs.clone(),
                    heads: heads.clone(),
                    lrs: h.lrs.clone(),
                    epochs: h.epochs,
                    batch: h.batch,
                    weight_decay: h.weight_decay,
                    label_smoothing: h.label_smoothing,
                    balance: cfg.balance()?,
                    clip: h.clip,
                    patience: h.patience,
                    val_fraction: h.val_fraction,
                    seed: h.seed,
                    seeds: 1,
                    auto_lr: h.auto_lr,
                },
                reporter,
            )?;
            Ok::<_, RunError>(Outcome::Done)
        },
    )?);

    // 4. eval + report
    let fp = hash_parts(&[
        file_hash(&run.model_weights()).as_bytes(),
        toml_of(&cfg.eval)?.as_bytes(),
    ]);
    let held_out = graft_features::format::read_header(&features)
        .map(|h| {
            h.items
                .iter()
                .any(|it| matches!(it.split, Some(Split::Test) | Some(Split::Val)))
        })
        .unwrap_or(true);
    let split: Split = cfg.eval.split.parse().map_err(RunError::Invalid)?;
    timings.push(book.run(
        Stage::Eval,
        fp,
        &run.report(),
        || header(Stage::Eval, "eval: model unchanged, skipped"),
        || {
            if !held_out {
                header(
                    Stage::Eval,
                    "eval: no test or val images in the split, nothing to evaluate on \
                     (give the test split a share, e.g. --ratios 70/15/15)",
                );
                return Ok::<_, RunError>(Outcome::NotApplicable("no test or val images"));
            }
            header(Stage::Eval, "evaluation");
            evaluate(
                &EvalRequest {
                    run: run.root().to_path_buf(),
                    split,
                    features: Some(features.clone()),
                    latency: cfg.eval.latency,
                },
                reporter,
            )?;
            Ok(Outcome::Done)
        },
    )?);
    // What `graft monitor` and graft serve's drift gauges judge traffic against (graft export
    // writes it too; here a served run straight from `graft train DIR` has it as well).
    if !run.is_current(&run.reference()) {
        if let Err(e) = crate::reference::write(&run) {
            reporter.event(Event::Note(format!(
                "note: no reference profile for graft monitor ({e}); it builds one when first run"
            )));
        }
    }
    reporter.event(Event::Trained(&timings));
    Ok(Trained {
        run,
        config: config_path,
        stages: timings,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Fetch the encoder's weights if they are not cached yet (an ONNX file has its own).
pub fn ensure_weights(
    encoder: &graft_model::Encoder,
    reporter: &dyn Reporter,
) -> Result<(), RunError> {
    let graft_model::Encoder::Known(kind) = *encoder else {
        return Ok(());
    };
    let cache = graft_model::fetch::cache_dir();
    if graft_model::fetch::load(kind, &cache).is_ok() {
        return Ok(());
    }
    reporter.event(Event::FetchingWeights(kind));
    graft_model::fetch::fetch(kind, &cache).with_context(|| {
        format!("fetching {kind} weights (or: graft models import FILE --arch {kind})")
    })?;
    Ok(())
}

/// A settings section as TOML: the bytes its stage's fingerprint covers.
fn toml_of<T: serde::Serialize>(value: &T) -> Result<String, RunError> {
    toml::to_string(value).map_err(|e| RunError::Invalid(e.to_string()))
}
