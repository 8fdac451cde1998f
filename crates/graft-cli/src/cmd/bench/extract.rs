//! `graft bench extract`: feature extraction with ONNX Runtime, burn and a PyTorch reference
//! over the same images, one process each, one after the other.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use graft_data::scan::Split;
use graft_data::split::{write_manifest, ManifestRow};
use graft_features::{FeatureCache, Source};
use graft_model::arch::EncoderKind;
use serde_json::{json, Value};

use crate::cli::BenchExtractArgs;

/// The reference script, embedded so an installed binary needs no checkout.
const TORCH_SCRIPT: &str = include_str!("../../../../../scripts/bench/torch_extract.py");
/// Feature rows compared between engines.
const COMPARE_ROWS: usize = 16;

/// One engine's timing.
#[derive(Debug)]
struct Timing {
    engine: String,
    images: usize,
    /// Extraction proper, as the process measured it (decode + preprocess + forward + write).
    seconds: f64,
    /// Whole process, start-up and model loading included.
    wall: f64,
    peak_rss_mb: f64,
}

impl Timing {
    fn rate(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }

    fn to_json(&self) -> Value {
        json!({
            "engine": self.engine,
            "images": self.images,
            "seconds": self.seconds,
            "images_per_s": self.rate(),
            "process_wall_s": self.wall,
            "peak_rss_mb": self.peak_rss_mb,
        })
    }
}

pub fn extract(args: BenchExtractArgs) -> anyhow::Result<()> {
    let kind = args.encoder;
    let source =
        Source::open(&args.data).with_context(|| format!("reading {}", args.data.display()))?;
    if source.is_empty() {
        bail!("{} holds no images", args.data.display());
    }
    let rows = sample(&source, args.limit);
    let (work, _guard) = work_dir(args.work.as_deref())?;
    let manifest = work.join("sample.csv");
    write_manifest(&manifest, &rows)?;
    // Manifest order (sorted by path) is the cache order; every engine uses it.
    let rows = graft_data::split::read_manifest(&manifest)?;
    let threads = rayon::current_num_threads();
    println!(
        "bench extract: {} of {} images, {kind}, batch {}, {threads} threads",
        rows.len(),
        source.len(),
        args.batch
    );

    let mut timings = Vec::new();
    let ort = run_graft(&args, "ort", &manifest, &work, threads)?;
    println!("{}", line(&ort));
    let ort_cache = FeatureCache::open(&work.join("cache-ort"))?;
    timings.push(ort);

    if args.burn_limit > 0 {
        let n = args.burn_limit.min(rows.len());
        let burn_manifest = work.join("sample-burn.csv");
        write_manifest(&burn_manifest, &rows[..n])?;
        let burn = run_graft(&args, "burn", &burn_manifest, &work, threads)?;
        println!("{}", line(&burn));
        let cache = FeatureCache::open(&work.join("cache-burn"))?;
        let m = COMPARE_ROWS.min(n);
        let (x, y) = (rows_of(&ort_cache, m)?, rows_of(&cache, m)?);
        println!(
            "    features vs onnxruntime over {m} images: {}",
            agreement(&x, &y)
        );
        timings.push(burn);
    }

    let mut reference_note = None;
    if args.reference.no_reference {
        reference_note = Some("skipped (--no-reference)".to_string());
    } else if torchvision_name(kind).is_none() {
        reference_note = Some(format!(
            "the PyTorch reference runs torchvision's encoders, and {kind} is not one"
        ));
    } else {
        match run_torch(&args, &rows, &work, threads) {
            Ok((t, feats, torch_version)) => {
                println!("{}", line(&t));
                println!("    (torch {})", torch_version);
                let m = feats.len().min(ort_cache.len());
                let x = rows_of(&ort_cache, m)?;
                // PIL and graft round resized pixels differently (±1 level), which moves
                // features of upscaled 28-px images by up to ~0.15: cosine is the fair check.
                println!(
                    "    features vs onnxruntime over {m} images: {}",
                    agreement(&x, &feats[..m])
                );
                timings.push(t);
            }
            Err(e) => reference_note = Some(format!("skipped: {e:#}")),
        }
    }
    if let Some(note) = &reference_note {
        println!("  pytorch reference {note}");
    }

    let rate = |e: &str| {
        timings
            .iter()
            .find(|t| t.engine.starts_with(e))
            .map(Timing::rate)
    };
    let ort_rate = rate("onnxruntime").unwrap_or(0.0);
    let mut ratios = serde_json::Map::new();
    for (name, other) in [("burn", rate("burn")), ("pytorch", rate("pytorch"))] {
        if let Some(r) = other {
            let x = ort_rate / r.max(1e-9);
            println!("  speed-up onnxruntime / {name}: {x:.2}x");
            ratios.insert(format!("ort_over_{name}"), json!(x));
        }
    }
    if let Some(path) = &args.reference.json {
        let out = json!({
            "encoder": kind.name(),
            "images": rows.len(),
            "batch": args.batch,
            "threads": threads,
            "engines": timings.iter().map(Timing::to_json).collect::<Vec<_>>(),
            "ratios": ratios,
            "reference_note": reference_note,
        });
        crate::output::write_file(path, serde_json::to_string_pretty(&out)? + "\n")?;
    }
    Ok(())
}

/// torchvision's name for `kind`, if it is one of torchvision's models.
fn torchvision_name(kind: EncoderKind) -> Option<&'static str> {
    Some(match kind {
        EncoderKind::MobileNetV2 => "mobilenet_v2",
        EncoderKind::ResNet18 => "resnet18",
        EncoderKind::ResNet34 => "resnet34",
        EncoderKind::ResNet50 => "resnet50",
        EncoderKind::EfficientNetB0 => "efficientnet_b0",
        EncoderKind::MobileNetV3Small => "mobilenet_v3_small",
        EncoderKind::MobileNetV3Large => "mobilenet_v3_large",
        EncoderKind::EfficientNetLite0
        | EncoderKind::EfficientNetLite1
        | EncoderKind::EfficientNetLite2 => return None,
    })
}

fn line(t: &Timing) -> String {
    format!(
        "  {:<12} {:>7} images {:>9.2} s {:>8.1} img/s   process {:>8.2} s   peak RSS {:>6.0} MB",
        t.engine,
        t.images,
        t.seconds,
        t.rate(),
        t.wall,
        t.peak_rss_mb
    )
}

/// Every image, or `limit` of them evenly spaced (so each class is represented).
fn sample(source: &Source, limit: Option<usize>) -> Vec<ManifestRow> {
    let n = source.len();
    let take = limit.unwrap_or(n).clamp(1, n);
    (0..take)
        .map(|k| k * n / take)
        .map(|i| ManifestRow {
            path: std::fs::canonicalize(&source.files[i])
                .unwrap_or_else(|_| source.files[i].clone()),
            label: source.items[i].label.clone(),
            split: source.items[i].split.unwrap_or(Split::Train),
            hash: source.items[i].hash.clone(),
        })
        .collect()
}

/// Removes a temporary work folder when the benchmark ends (not one the user named).
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn work_dir(given: Option<&Path>) -> anyhow::Result<(PathBuf, Cleanup)> {
    let (dir, guard) = match given {
        Some(d) => (d.to_path_buf(), Cleanup(None)),
        None => {
            let d = std::env::temp_dir().join(format!("graft-bench-{}", std::process::id()));
            (d.clone(), Cleanup(Some(d)))
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok((dir, guard))
}

/// `graft extract` in a child process (fresh cache), timed by its own `--report`.
fn run_graft(
    args: &BenchExtractArgs,
    backend: &str,
    manifest: &Path,
    work: &Path,
    threads: usize,
) -> anyhow::Result<Timing> {
    let exe = std::env::current_exe().context("locating the graft binary")?;
    let out = work.join(format!("cache-{backend}"));
    let report = work.join(format!("report-{backend}.json"));
    let _ = std::fs::remove_dir_all(&out);
    note!("running graft extract --backend {backend} …");
    let t = Instant::now();
    let status = Command::new(exe)
        .args(["--threads", &threads.to_string(), "extract", "--data"])
        .arg(manifest)
        .args([
            "--encoder",
            args.encoder.name(),
            "--backend",
            backend,
            "--batch",
        ])
        .arg(args.batch.to_string())
        .arg("--out")
        .arg(&out)
        .arg("--report")
        .arg(&report)
        .stdout(std::process::Stdio::null())
        .status()
        .context("starting graft extract")?;
    let wall = t.elapsed().as_secs_f64();
    if !status.success() {
        bail!("graft extract --backend {backend} failed ({status})");
    }
    let r: Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    Ok(Timing {
        engine: r["backend"].as_str().unwrap_or(backend).to_string(),
        images: r["images"].as_u64().unwrap_or(0) as usize,
        seconds: r["seconds"].as_f64().unwrap_or(0.0),
        wall,
        peak_rss_mb: r["peak_rss_mb"].as_f64().unwrap_or(0.0),
    })
}

/// The embedded PyTorch script over a prefix of the sample; returns its timing and the first
/// feature rows.
fn run_torch(
    args: &BenchExtractArgs,
    rows: &[ManifestRow],
    work: &Path,
    threads: usize,
) -> anyhow::Result<(Timing, Vec<Vec<f32>>, String)> {
    super::require_python(&args.reference.python, &["torch", "torchvision"])?;
    let weights = super::reference_weights(args.encoder)?;
    let n = args.reference_limit.unwrap_or(rows.len()).min(rows.len());
    let list = work.join("sample-torch.txt");
    let text: String = rows[..n]
        .iter()
        .map(|r| format!("{}\n", r.path.display()))
        .collect();
    crate::output::write_file(&list, text)?;
    let script = work.join("torch_extract.py");
    crate::output::write_file(&script, TORCH_SCRIPT)?;
    note!("running the PyTorch reference on {n} images …");
    let t = Instant::now();
    let out = Command::new(&args.reference.python)
        .arg(&script)
        .arg("--list")
        .arg(&list)
        .arg("--weights")
        .arg(&weights)
        .args([
            "--arch",
            torchvision_name(args.encoder).unwrap_or("mobilenet_v2"),
        ])
        .args([
            "--batch",
            &args.batch.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .args(["--keep", &COMPARE_ROWS.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting the PyTorch reference")?;
    let wall = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("the PyTorch reference failed ({})", out.status);
    }
    let r: Value = serde_json::from_slice(&out.stdout).context("reading the reference's JSON")?;
    let feats = r["features"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|row| {
                    row.as_array()
                        .map(|v| {
                            v.iter()
                                .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((
        Timing {
            engine: "pytorch".into(),
            images: r["images"].as_u64().unwrap_or(0) as usize,
            seconds: r["seconds"].as_f64().unwrap_or(0.0),
            wall,
            peak_rss_mb: r["peak_rss_mb"].as_f64().unwrap_or(0.0),
        },
        feats,
        r["torch"].as_str().unwrap_or("?").to_string(),
    ))
}

fn rows_of(cache: &FeatureCache, n: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    (0..n)
        .map(|i| {
            cache
                .row(i)
                .with_context(|| format!("row {i} missing from the cache"))
        })
        .collect()
}

/// "max |a-b| = …, min cosine = …" over paired feature rows.
fn agreement(a: &[Vec<f32>], b: &[Vec<f32>]) -> String {
    let mut worst = 0f32;
    let mut min_cos = 1f64;
    for (x, y) in a.iter().zip(b) {
        let (mut dot, mut nx, mut ny) = (0f64, 0f64, 0f64);
        for (p, q) in x.iter().zip(y) {
            worst = worst.max((p - q).abs());
            dot += f64::from(*p) * f64::from(*q);
            nx += f64::from(*p).powi(2);
            ny += f64::from(*q).powi(2);
        }
        min_cos = min_cos.min(dot / (nx.sqrt() * ny.sqrt()).max(1e-12));
    }
    format!("max |diff| {worst:.2e}, min cosine {min_cos:.5}")
}
