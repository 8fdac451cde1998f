//! `graft train DIR`: audit → split → extract → heads → eval in one run folder, each stage
//! skipped when its inputs are unchanged (fingerprints in `stages.json`), every stage's output
//! written atomically, so an interrupted run continues where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use graft_data::scan::Split;
use graft_data::split::{parse_ratios, plan_split, write_manifest, SplitOptions};
use graft_train::model::write_atomic;
use graft_train::HeadSpec;

use crate::cli::{EvalArgs, ExtractArgs, PipelineArgs, TrainHeadsArgs};
use crate::config::Config;

const STAGES_FILE: &str = "stages.json";
const UNCHANGED: &str = "skipped (unchanged)";

/// Fingerprints of the stages already done in a run folder.
struct Stages {
    path: PathBuf,
    done: BTreeMap<String, String>,
}

impl Stages {
    fn load(run: &Path) -> Stages {
        let path = run.join(STAGES_FILE);
        let done = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Stages { path, done }
    }

    fn is_done(&self, stage: &str, fingerprint: &str) -> bool {
        self.done.get(stage).map(String::as_str) == Some(fingerprint)
    }

    fn mark(&mut self, stage: &str, fingerprint: String) -> anyhow::Result<()> {
        self.done.insert(stage.to_string(), fingerprint);
        write_atomic(&self.path, &serde_json::to_vec_pretty(&self.done)?)?;
        Ok(())
    }

    /// Forget `stage` and every later one (their inputs are about to change).
    fn invalidate_from(&mut self, stage: &str) {
        let order = ["prepare", "extract", "heads", "eval"];
        if let Some(i) = order.iter().position(|s| *s == stage) {
            for s in &order[i..] {
                self.done.remove(*s);
            }
        }
    }
}

fn hash_parts(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().to_hex()[..32].to_string()
}

/// Every file of the dataset with its size and modification time, plus the settings.
fn data_fingerprint(dir: &Path, settings: &[u8]) -> anyhow::Result<String> {
    let ds = graft_data::scan::scan(dir).with_context(|| format!("scanning {}", dir.display()))?;
    let mut listing = Vec::new();
    for e in &ds.entries {
        let meta = std::fs::metadata(&e.path).ok();
        let size = meta.as_ref().map_or(0, |m| m.len());
        let mtime = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        listing.extend_from_slice(format!("{}\t{size}\t{mtime}\n", e.rel).as_bytes());
    }
    Ok(hash_parts(&[&listing, settings]))
}

fn file_hash(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| blake3::hash(&b).to_hex()[..32].to_string())
        .unwrap_or_default()
}

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
    let run = cfg.runs.join(&name);
    std::fs::create_dir_all(&run).with_context(|| format!("creating {}", run.display()))?;
    let config_path = run.join("config.toml");
    let mut saved = cfg.clone();
    saved.name = Some(name.clone());
    write_atomic(&config_path, saved.to_toml(&config_path)?.as_bytes())?;
    let mut stages = Stages::load(&run);
    let started = Instant::now();
    let mut timings: Vec<(&str, f64, Option<&str>)> = Vec::new();
    println!(
        "Run {} ({} on {})",
        run.display(),
        cfg.encoder,
        data.display()
    );

    // 1. audit + split
    let t = Instant::now();
    let manifest = run.join("manifest.csv");
    let fp = data_fingerprint(&data, toml::to_string(&cfg.split)?.as_bytes())?;
    let skipped = stages.is_done("prepare", &fp) && manifest.is_file();
    if skipped {
        println!("[1/5] audit + split: data and settings unchanged, skipped");
    } else {
        stages.invalidate_from("prepare");
        println!("[1/5] audit + split");
        prepare(&data, &run, &manifest, &cfg)?;
        stages.mark("prepare", fp)?;
    }
    timings.push((
        "audit + split",
        t.elapsed().as_secs_f64(),
        skipped.then_some(UNCHANGED),
    ));

    // 2. extract (resumable by itself: finished chunks are kept)
    let t = Instant::now();
    let features = run.join("features");
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
        cfg.encoder.as_bytes(),
        &cfg.extract.chunk.to_le_bytes(),
        &[u8::from(spatial)],
    ]);
    let skipped = stages.is_done("extract", &fp) && features.join("cache.json").is_file();
    if skipped {
        println!("[2/5] extract: cache complete, skipped");
    } else {
        stages.invalidate_from("extract");
        println!("[2/5] extract");
        ensure_weights(&cfg.encoder)?;
        super::extract::run(ExtractArgs {
            data: Some(manifest.clone()),
            encoder: Some(cfg.encoder.clone()),
            out: features.clone(),
            batch: cfg.extract.batch,
            chunk: cfg.extract.chunk,
            shard: graft_features::Shard::default(),
            spatial,
            backend: cfg.backend,
            // A new manifest means new images, and a new --spatial setting a new layout: the
            // old cache cannot be continued.
            force: cache_stale(&features, &manifest) || spatial_changed(&features, spatial),
            merge: false,
            from: Vec::new(),
            report: None,
        })?;
        stages.mark("extract", fp)?;
    }
    timings.push((
        "extract",
        t.elapsed().as_secs_f64(),
        skipped.then_some(UNCHANGED),
    ));

    // 3. heads
    let t = Instant::now();
    let fp = hash_parts(&[
        file_hash(&features.join("cache.json")).as_bytes(),
        toml::to_string(&cfg.heads)?.as_bytes(),
    ]);
    let skipped = stages.is_done("heads", &fp) && run.join("model.json").is_file();
    if skipped {
        println!("[3/5] heads: features and settings unchanged, skipped");
    } else {
        stages.invalidate_from("heads");
        println!("[3/5] head sweep");
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
        stages.mark("heads", fp)?;
    }
    timings.push((
        "heads",
        t.elapsed().as_secs_f64(),
        skipped.then_some(UNCHANGED),
    ));

    // 4. eval + report
    let t = Instant::now();
    let fp = hash_parts(&[
        file_hash(&run.join(graft_train::model::MODEL_FILE)).as_bytes(),
        toml::to_string(&cfg.eval)?.as_bytes(),
    ]);
    let skipped = stages.is_done("eval", &fp) && run.join("report.html").is_file();
    let held_out = graft_features::format::read_header(&features)
        .map(|h| {
            h.items
                .iter()
                .any(|it| matches!(it.split, Some(Split::Test) | Some(Split::Val)))
        })
        .unwrap_or(true);
    if skipped {
        println!("[4/5] eval: model unchanged, skipped");
    } else if !held_out {
        println!(
            "[4/5] eval: no test or val images in the split, nothing to evaluate on \
             (give the test split a share, e.g. --ratios 70/15/15)"
        );
    } else {
        println!("[4/5] evaluation");
        super::eval::run(EvalArgs {
            run: run.clone(),
            split: cfg.eval.split.clone(),
            features: Some(features.clone()),
            latency: cfg.eval.latency,
        })?;
        stages.mark("eval", fp)?;
    }
    let why = if skipped {
        Some(UNCHANGED)
    } else if !held_out {
        Some("skipped (no test or val images)")
    } else {
        None
    };
    timings.push(("eval", t.elapsed().as_secs_f64(), why));

    // 5. summary
    println!("[5/5] summary");
    for (stage, secs, why) in &timings {
        match why {
            Some(why) => println!("  {stage:<14} {why}"),
            None => println!("  {stage:<14} {secs:.1} s"),
        }
    }
    print_result(&run)?;
    let report = run.join("report.html");
    if report.is_file() {
        println!(
            "Done in {:.1} s. Report: {}",
            started.elapsed().as_secs_f64(),
            report.display()
        );
    } else {
        println!("Done in {:.1} s.", started.elapsed().as_secs_f64());
    }
    println!("Next:");
    println!("  graft predict --run {} photo.jpg", run.display());
    println!(
        "  graft serve --run {}          # web page + API on http://127.0.0.1:8080",
        run.display()
    );
    println!(
        "  graft export --run {}         # one validated ONNX file",
        run.display()
    );
    println!(
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
fn ensure_weights(encoder: &str) -> anyhow::Result<()> {
    let Some(kind) = graft_model::arch::EncoderKind::from_name(encoder) else {
        anyhow::bail!("unknown encoder {encoder:?}");
    };
    let cache = graft_model::fetch::cache_dir();
    if graft_model::fetch::load(kind, &cache).is_ok() {
        return Ok(());
    }
    println!("  fetching {kind} weights (once) …");
    graft_model::fetch::fetch(kind, &cache).with_context(|| {
        format!("fetching {kind} weights (or: graft models import FILE --arch {kind})")
    })?;
    Ok(())
}

/// Audit (audit.json, classes.png, a short summary) and split (manifest.csv) from one scan.
fn prepare(data: &Path, run: &Path, manifest: &Path, cfg: &Config) -> anyhow::Result<()> {
    let (dataset, facts) = super::scan_and_analyze(data)?;
    let report = graft_data::audit::build_report(&dataset, &facts, cfg.split.near_dup_threshold);
    write_atomic(
        &run.join("audit.json"),
        (serde_json::to_string_pretty(&report)? + "\n").as_bytes(),
    )?;
    if let Err(e) = graft_data::audit::plot_class_counts(&report, &run.join("classes.png")) {
        eprintln!("  note: class chart not drawn ({e})");
    }
    println!(
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
    println!(
        "  split: {} train, {} val, {} test → {}",
        totals[0],
        totals[1],
        totals[2],
        manifest.display()
    );
    Ok(())
}

/// The last lines users look for: best head and test metrics.
fn print_result(run: &Path) -> anyhow::Result<()> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("metrics.json"))?)?;
    let best = &v["best"];
    println!(
        "Best head: {} (lr {}), val macro-F1 {:.4}",
        best["head"].as_str().unwrap_or("?"),
        best["lr"].as_f64().map_or(0.0, |v| v as f32),
        best["val_macro_f1"].as_f64().unwrap_or(0.0)
    );
    if let Some(e) = v["eval"].as_object().and_then(|m| m.values().next()) {
        println!(
            "{} split: accuracy {:.4}, macro-F1 {:.4} on {} images",
            e["split"].as_str().unwrap_or("?"),
            e["accuracy"].as_f64().unwrap_or(0.0),
            e["macro_f1"].as_f64().unwrap_or(0.0),
            e["images"]
        );
    }
    Ok(())
}
