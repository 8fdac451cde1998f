//! `graft bench serve`: `graft serve` in its own process on 127.0.0.1, loaded by blocking
//! keep-alive clients at several concurrency levels; the reference is the same model's latency
//! called in-process (decode + preprocess + ONNX Runtime, one image), measured first.

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use graft_serve::batcher::{Infer, OrtInfer};
use serde_json::json;

use crate::cli::BenchServeArgs;

pub fn serve(args: BenchServeArgs) -> anyhow::Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) || args.requests == 0 {
        bail!("--concurrency needs levels of at least 1 and --requests at least 1");
    }
    let model = graft_train::HeadModel::load(&args.run)
        .with_context(|| format!("loading the model of run {}", args.run.display()))?;
    let image = match &args.image {
        Some(p) => p.clone(),
        None => {
            graft_run::held_out::held_out_images(&graft_run::RunDir::new(&args.run), &model, 1)?
                .into_iter()
                .next()
                .context("the run has no test or val image; pass --image")?
        }
    };
    // The cache records paths relative to its own root: show the plain path.
    let image = std::fs::canonicalize(&image).unwrap_or(image);
    let bytes = std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
    graft_data::decode::decode_bytes(&bytes)
        .with_context(|| format!("{} is not a readable image", image.display()))?;
    let threads = rayon::current_num_threads();
    println!(
        "bench serve: {} model, {} ({} bytes), {} requests per level, {threads} cores",
        args.precision.name(),
        image.display(),
        bytes.len(),
        args.requests
    );

    let d = direct_latency(&args.run, &bytes, 40, args.precision)?;
    println!(
        "  in-process, one image at a time: P50 {:.1} ms (decode {:.1} + preprocess {:.1} + model {:.1})",
        d.total * 1e3,
        d.decode * 1e3,
        d.preprocess * 1e3,
        d.model * 1e3
    );
    let direct = d.total;

    let mut extra: Vec<&str> = args
        .serve_args
        .as_deref()
        .map(|s| s.split_whitespace().collect())
        .unwrap_or_default();
    extra.extend(["--precision", args.precision.name()]);
    // The bench's requests go to a scratch audit trail, never the run's own.
    let scratch = tempfile::tempdir().context("a scratch folder")?;
    let trail = scratch.path().join("audit.db");
    let trail = trail.to_str().context("scratch path")?.to_string();
    let audited = !extra.contains(&"--no-audit") && !extra.contains(&"--audit");
    if audited {
        extra.extend(["--audit", trail.as_str()]);
    }
    let (levels, healthy) = run_levels(&args, &bytes, &extra)?;
    let mut untracked = None;
    if args.compare_audit {
        println!("  the same levels with --no-audit:");
        let plain: Vec<&str> = extra
            .iter()
            .copied()
            .filter(|a| *a != "--audit" && *a != trail.as_str())
            .chain(["--no-audit"])
            .collect();
        let (off, ok) = run_levels(&args, &bytes, &plain)?;
        for (on, off) in levels.iter().zip(&off) {
            let (a, b) = (
                on["throughput_rps"].as_f64().unwrap_or(0.0),
                off["throughput_rps"].as_f64().unwrap_or(0.0),
            );
            if b > 0.0 {
                println!(
                    "  {} clients: audit on {a:.1} req/s, off {b:.1} req/s = {:.3} ({:+.1} %)",
                    on["clients"],
                    a / b,
                    (a / b - 1.0) * 100.0
                );
            }
        }
        untracked = Some((off, ok));
    }
    let healthy = healthy && untracked.as_ref().is_none_or(|(_, ok)| *ok);
    let errors: u64 = levels
        .iter()
        .map(|l| l["errors"].as_u64().unwrap_or(0))
        .sum();
    if let Some(p50_1) = levels
        .iter()
        .find(|l| l["clients"] == 1)
        .and_then(|l| l["p50_ms"].as_f64())
    {
        println!(
            "  HTTP + queue overhead at 1 client: P50 {:.2}× the in-process latency",
            p50_1 / (direct * 1e3)
        );
    }
    println!(
        "  {errors} errors; server {} afterwards",
        if healthy { "healthy" } else { "NOT healthy" }
    );
    if let Some(path) = &args.json {
        let out = json!({
            "image": image,
            "image_bytes": bytes.len(),
            "cores": threads,
            "direct_p50_ms": direct * 1e3,
            "levels": levels,
            "audit": audited,
            "levels_without_audit": untracked.as_ref().map(|(l, _)| l),
            "errors": errors,
            "healthy_after": healthy,
        });
        crate::output::write_file(path, serde_json::to_string_pretty(&out)? + "\n")?;
        println!("  wrote {}", path.display());
    }
    if errors > 0 || !healthy {
        bail!("the server answered {errors} requests with errors");
    }
    Ok(())
}

/// Each concurrency level against a fresh `graft serve ARGS`: its rows, and whether the server
/// was healthy afterwards.
fn run_levels(
    args: &BenchServeArgs,
    bytes: &[u8],
    extra: &[&str],
) -> anyhow::Result<(Vec<serde_json::Value>, bool)> {
    let mut server = Server::start(&args.run, extra)?;
    let base = format!("http://{}", server.addr);
    // The address is printed once the model is loaded and the port bound: ready now.
    let agent = agent();
    println!(
        "  {:>7} {:>9} {:>9} {:>9} {:>9} {:>7} {:>10}",
        "clients", "req/s", "P50 ms", "P95 ms", "P99 ms", "errors", "mean batch"
    );
    let mut levels = Vec::new();
    for &c in &args.concurrency {
        // Warm-up: connections, ORT's first runs at this batch size.
        load(&base, bytes, c, 2 * c)?;
        let before = inference_counters(&agent, &base)?;
        let r = load(&base, bytes, c, args.requests)?;
        let after = inference_counters(&agent, &base)?;
        let batches = after.0 - before.0;
        let mean_batch = if batches > 0.0 {
            (after.1 - before.1) / batches
        } else {
            0.0
        };
        println!(
            "  {c:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7} {mean_batch:>10.2}",
            r.throughput,
            r.p50 * 1e3,
            r.p95 * 1e3,
            r.p99 * 1e3,
            r.errors
        );
        levels.push(json!({
            "clients": c,
            "requests": r.latencies,
            "throughput_rps": r.throughput,
            "p50_ms": r.p50 * 1e3,
            "p95_ms": r.p95 * 1e3,
            "p99_ms": r.p99 * 1e3,
            "errors": r.errors,
            "mean_batch": mean_batch,
        }));
    }
    let healthy = agent
        .get(format!("{base}/health"))
        .call()
        .is_ok_and(|r| r.status() == 200);
    server.stop();
    Ok((levels, healthy))
}

/// Median seconds of one image through the served model, called directly: total, and its
/// decode, preprocess and model parts.
struct Direct {
    total: f64,
    decode: f64,
    preprocess: f64,
    model: f64,
}

fn direct_latency(
    run: &Path,
    bytes: &[u8],
    n: usize,
    precision: crate::cli::Precision,
) -> anyhow::Result<Direct> {
    let served = crate::served::load_model(run, None, precision)?;
    let pre = served.preprocess;
    let mut infer = OrtInfer::new(&served.onnx, pre.size as usize, served.classes.len(), None)
        .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))?;
    let (mut total, mut dec, mut prep, mut model) = (vec![], vec![], vec![], vec![]);
    for i in 0..n + 5 {
        let t0 = Instant::now();
        let img = graft_data::decode::decode_bytes(bytes)?;
        let t1 = Instant::now();
        let input = pre.apply(&img);
        let t2 = Instant::now();
        infer
            .infer(&input, 1)
            .map_err(|e| anyhow::anyhow!("ONNX Runtime: {e}"))?;
        let t3 = Instant::now();
        if i >= 5 {
            total.push((t3 - t0).as_secs_f64());
            dec.push((t1 - t0).as_secs_f64());
            prep.push((t2 - t1).as_secs_f64());
            model.push((t3 - t2).as_secs_f64());
        }
    }
    Ok(Direct {
        total: graft_eval::percentile(&mut total, 0.5),
        decode: graft_eval::percentile(&mut dec, 0.5),
        preprocess: graft_eval::percentile(&mut prep, 0.5),
        model: graft_eval::percentile(&mut model, 0.5),
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// `graft serve` as a child process on a free port.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(run: &Path, extra: &[&str]) -> anyhow::Result<Server> {
        let exe = std::env::current_exe().context("locating the graft binary")?;
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--run")
            .arg(run)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting graft serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let Some(line) = lines.next() else {
                let _ = child.kill();
                bail!("graft serve exited before listening");
            };
            let line = line?;
            if let Some(rest) = line.trim().strip_prefix("web page  http://") {
                break rest.trim_end_matches('/').to_string();
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, addr })
    }

    fn stop(&mut self) {
        // SIGTERM lets it finish gracefully; SIGKILL if that does not work.
        let pid = self.child.id().to_string();
        let term = Command::new("kill").args(["-TERM", &pid]).status();
        if term.is_ok() {
            for _ in 0..50 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// (batches, images) from /metrics.
fn inference_counters(agent: &ureq::Agent, base: &str) -> anyhow::Result<(f64, f64)> {
    let text = agent
        .get(format!("{base}/metrics"))
        .call()?
        .into_body()
        .read_to_string()?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((
        value("graft_inference_batches_total"),
        value("graft_inference_images_total"),
    ))
}

struct LoadResult {
    latencies: usize,
    throughput: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    errors: usize,
}

/// `total` POST /predict requests from `clients` threads, each with its own keep-alive
/// connection.
fn load(base: &str, bytes: &[u8], clients: usize, total: usize) -> anyhow::Result<LoadResult> {
    let next = Arc::new(AtomicUsize::new(0));
    let body: Arc<[u8]> = Arc::from(bytes);
    let url = format!("{base}/predict");
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let next = next.clone();
            let body = body.clone();
            let url = url.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut times = Vec::new();
                let mut errors = 0usize;
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let t = Instant::now();
                    let ok = agent
                        .post(&url)
                        .header("Content-Type", "application/octet-stream")
                        .send(&body[..])
                        .ok()
                        .and_then(|r| {
                            let status = r.status().as_u16();
                            r.into_body().read_to_string().ok().map(|b| (status, b))
                        })
                        .is_some_and(|(s, b)| s == 200 && b.contains("\"prediction\""));
                    times.push(t.elapsed().as_secs_f64());
                    if !ok {
                        errors += 1;
                    }
                }
                (times, errors)
            })
        })
        .collect();
    let mut times = Vec::with_capacity(total);
    let mut errors = 0;
    for h in handles {
        let (t, e) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
        times.extend(t);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    let _ = std::io::stdout().flush();
    Ok(LoadResult {
        latencies: times.len(),
        throughput: times.len() as f64 / wall,
        p50: graft_eval::percentile(&mut times, 0.50),
        p95: graft_eval::percentile(&mut times, 0.95),
        p99: graft_eval::percentile(&mut times, 0.99),
        errors,
    })
}
