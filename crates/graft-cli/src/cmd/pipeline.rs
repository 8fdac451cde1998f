//! `graft train DIR`: audit → split → extract → heads → eval in one run folder, each stage
//! skipped when its inputs are unchanged (fingerprints in `stages.json`), every stage's output
//! written atomically, so an interrupted run continues where it stopped.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use graft_data::scan::Split;
use graft_data::split::{parse_ratios, plan_split, write_manifest, SplitOptions};
use graft_run::files::{read_json, write_file};
use graft_run::stages::{data_fingerprint, file_hash, hash_parts, Outcome, StageRun};
use graft_run::{RunDir, Stage, StageBook};
use graft_train::HeadSpec;

use crate::cli::{EvalArgs, ExtractArgs, PipelineArgs, TrainHeadsArgs};
use crate::config::Config;

pub fn run(args: PipelineArgs) -> anyhow::Result<()> {
    let cfg = Config::resolve(&args)?;
    let Some(data) = cfg.data.clone() else {
        anyhow::bail!(
            "which photos? Give a folder (graft train photos/) or a config file with data = \"…\""
        );
    };
    if !data.is_dir() {
        anyhow::bail!(
            "{} is not a folder; graft train expects DIR/<class>/*.jpg (or DIR/train/<class>/…)",
            data.display()
        );
    }
    let name = cfg.name.clone().unwrap_or_else(|| {
        let base = std::fs::canonicalize(&data)
            .ok()
            .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "data".into());
        format!("{base}-{}", cfg.encoder)
    });
    let run = RunDir::new(cfg.runs.join(&name));
    std::fs::create_dir_all(run.root())
        .with_context(|| format!("creating {}", run.root().display()))?;
    let config_path = run.config();
    let mut saved = cfg.clone();
    saved.name = Some(name.clone());
    write_file(&config_path, saved.to_toml(&config_path)?.as_bytes())?;
    let mut book = StageBook::load(&run);
    let started = Instant::now();
    let mut timings: Vec<StageRun> = Vec::new();
    say!(
        "Run {} ({} on {})",
        run.root().display(),
        cfg.encoder,
        data.display()
    );
    let header = |stage: Stage, what: &str| say!("[{}/5] {what}", stage.number());

    // 1. audit + split
    let manifest = run.manifest();
    let fp = data_fingerprint(&data, toml::to_string(&cfg.split)?.as_bytes())
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
            prepare(&data, &run, &manifest, &cfg)?;
            anyhow::Ok(Outcome::Done)
        },
    )?);

    // 2. extract (resumable by itself: finished chunks are kept)
    let features = run.features();
    let heads: Vec<HeadSpec> = cfg
        .heads
        .heads
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    // Feature maps only when a head reads them: they are H·W times larger.
    let spatial = heads.iter().any(HeadSpec::spatial);
    let fp = hash_parts(&[
        file_hash(&manifest).as_bytes(),
        cfg.encoder.name().as_bytes(),
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
            ensure_weights(cfg.encoder)?;
            super::extract::run(ExtractArgs {
                data: Some(manifest.clone()),
                encoder: Some(cfg.encoder),
                out: features.clone(),
                batch: cfg.extract.batch,
                chunk: cfg.extract.chunk,
                shard: graft_features::Shard::default(),
                spatial,
                backend: cfg.backend,
                // A new manifest means new images, and a new --spatial setting a new layout:
                // the old cache cannot be continued.
                force: cache_stale(&features, &manifest) || spatial_changed(&features, spatial),
                merge: false,
                from: Vec::new(),
                report: None,
            })?;
            anyhow::Ok(Outcome::Done)
        },
    )?);

    // 3. heads
    let fp = hash_parts(&[
        file_hash(&features.join(graft_features::format::HEADER_FILE)).as_bytes(),
        toml::to_string(&cfg.heads)?.as_bytes(),
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
            super::train_heads::run(TrainHeadsArgs {
                features: features.clone(),
                name: Some(name.clone()),
                runs: cfg.runs.clone(),
                heads: heads.clone(),
                lrs: h.lrs.clone(),
                epochs: h.epochs,
                batch: h.batch,
                weight_decay: h.weight_decay,
                label_smoothing: h.label_smoothing,
                balance: h.balance.parse().map_err(anyhow::Error::msg)?,
                clip: h.clip,
                patience: h.patience,
                val_fraction: h.val_fraction,
                seed: h.seed,
                seeds: 1,
            })?;
            anyhow::Ok(Outcome::Done)
        },
    )?);

    // 4. eval + report
    let fp = hash_parts(&[
        file_hash(&run.model_weights()).as_bytes(),
        toml::to_string(&cfg.eval)?.as_bytes(),
    ]);
    let held_out = graft_features::format::read_header(&features)
        .map(|h| {
            h.items
                .iter()
                .any(|it| matches!(it.split, Some(Split::Test) | Some(Split::Val)))
        })
        .unwrap_or(true);
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
                return anyhow::Ok(Outcome::NotApplicable("no test or val images"));
            }
            header(Stage::Eval, "evaluation");
            super::eval::run(EvalArgs {
                run: run.root().to_path_buf(),
                split: cfg.eval.split.clone(),
                features: Some(features.clone()),
                latency: cfg.eval.latency,
            })?;
            anyhow::Ok(Outcome::Done)
        },
    )?);

    // 5. summary
    say!("[5/5] summary");
    for t in &timings {
        say!("  {:<14} {}", t.stage.title(), t.summary());
    }
    print_result(&run)?;
    let report = run.report();
    if report.is_file() {
        say!(
            "Done in {:.1} s. Report: {}",
            started.elapsed().as_secs_f64(),
            report.display()
        );
    } else {
        say!("Done in {:.1} s.", started.elapsed().as_secs_f64());
    }
    let r = run.root().display();
    say!("Next:");
    say!("  graft predict --run {r} photo.jpg");
    say!("  graft serve --run {r}          # web page + API on http://127.0.0.1:8080");
    say!("  graft export --run {r}         # one validated ONNX file");
    say!(
        "  graft train --config {}   # reproduce",
        config_path.display()
    );
    Ok(())
}

/// True when the cache in `features` was built from another manifest than `manifest`.
fn cache_stale(features: &Path, manifest: &Path) -> bool {
    let (Ok(header), Ok(rows)) = (
        graft_features::format::read_header(features),
        graft_data::split::read_manifest(manifest),
    ) else {
        return false;
    };
    header.total != rows.len()
        || header
            .items
            .iter()
            .zip(&rows)
            .any(|(item, row)| item.hash != row.hash || item.label != row.label)
}

/// True when the cache in `features` exists and holds (or lacks) feature maps against `spatial`.
fn spatial_changed(features: &Path, spatial: bool) -> bool {
    graft_features::format::read_header(features)
        .is_ok_and(|header| header.spatial.is_some() != spatial)
}

/// Fetch the encoder's weights if they are not cached yet.
fn ensure_weights(kind: graft_model::arch::EncoderKind) -> anyhow::Result<()> {
    let cache = graft_model::fetch::cache_dir();
    if graft_model::fetch::load(kind, &cache).is_ok() {
        return Ok(());
    }
    say!("  fetching {kind} weights (once) …");
    graft_model::fetch::fetch(kind, &cache).with_context(|| {
        format!("fetching {kind} weights (or: graft models import FILE --arch {kind})")
    })?;
    Ok(())
}

/// Audit (audit.json, classes.png, a short summary) and split (manifest.csv) from one scan.
fn prepare(data: &Path, run: &RunDir, manifest: &Path, cfg: &Config) -> anyhow::Result<()> {
    let (dataset, facts) = super::scan_and_analyze(data)?;
    let report = graft_data::audit::build_report(&dataset, &facts, cfg.split.near_dup_threshold);
    // The same bytes as `graft data audit --json` writes: the audit's own field order.
    write_file(
        &run.audit(),
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    if let Err(e) = graft_data::audit::plot_class_counts(&report, &run.class_chart()) {
        note!("  note: class chart not drawn ({e})");
    }
    say!(
        "  {} images in {} classes{}; {} unreadable, {} exact-duplicate groups, {} near-duplicate groups",
        report.images_ok,
        report.classes.len(),
        report
            .imbalance
            .as_ref()
            .map(|i| format!(" (imbalance {:.1}:1)", i.ratio))
            .unwrap_or_default(),
        report.files_found - report.images_ok,
        report.exact_duplicates.len(),
        report.near_duplicates.len()
    );
    let opts = SplitOptions {
        ratios: parse_ratios(&cfg.split.ratios)?,
        seed: cfg.split.seed,
        near_dup_threshold: cfg.split.near_dup_threshold,
        val_from_train: cfg.split.val_from_train.map(|p| p / 100.0),
    };
    let outcome = plan_split(&dataset, &facts, &opts)
        .with_context(|| format!("splitting {}", data.display()))?;
    write_manifest(manifest, &outcome.rows)?;
    let mut totals = [0usize; 3];
    for c in outcome.counts.values() {
        for s in 0..3 {
            totals[s] += c[s];
        }
    }
    say!(
        "  split: {} train, {} val, {} test → {}",
        totals[0],
        totals[1],
        totals[2],
        manifest.display()
    );
    Ok(())
}

/// The last lines users look for: best head and test metrics.
fn print_result(run: &RunDir) -> anyhow::Result<()> {
    let m: graft_run::Metrics = read_json(&run.metrics())?;
    say!(
        "Best head: {} (lr {}), val macro-F1 {:.4}",
        m.best.head,
        m.best.lr,
        m.best.val_macro_f1
    );
    if let Some(e) = m.headline_eval() {
        say!(
            "{} split: accuracy {:.4}, macro-F1 {:.4} on {} images",
            e.split,
            e.accuracy,
            e.macro_f1,
            e.images
        );
    }
    Ok(())
}
