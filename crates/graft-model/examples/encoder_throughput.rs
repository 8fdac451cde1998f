//! Hand-run forward-pass throughput of one encoder engine on random input (not a test; the
//! end-to-end comparison with PyTorch is `graft bench extract`):
//! `cargo run --release -p graft-model --example encoder_throughput -- ort|burn WEIGHTS [KIND] [BATCH] [RUNS]`
//! WEIGHTS is a .pth or .safetensors file.

use std::time::Instant;

use graft_model::arch::{spec_for, EncoderKind};
use graft_model::burn_backend::BurnEncoder;
use graft_model::encoder::ImageEncoder;
use graft_model::ort_backend::{OrtEncoder, OrtOptions};

const USAGE: &str = "usage: encoder_throughput ort|burn WEIGHTS [KIND] [BATCH] [RUNS]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (engine, path) = match (args.first(), args.get(1)) {
        (Some(e), Some(p)) => (e.as_str(), p.as_str()),
        _ => return Err(USAGE.into()),
    };
    let kind = match args.get(2) {
        Some(k) => EncoderKind::from_name(k).ok_or("unknown encoder")?,
        None => EncoderKind::MobileNetV2,
    };
    let batch: usize = args.get(3).map_or(Ok(32), |s| s.parse())?;
    let runs: usize = args.get(4).map_or(Ok(5), |s| s.parse())?;
    let w = if path.ends_with(".safetensors") {
        graft_model::load_safetensors(std::path::Path::new(path))?
    } else {
        graft_model::load_pth(path)?
    };
    let spec = spec_for(kind, &w)?;
    let mut enc: Box<dyn ImageEncoder> = match engine {
        "ort" => Box::new(OrtEncoder::new(&spec, &w, OrtOptions::default())?),
        "burn" => Box::new(BurnEncoder::new(kind, &w)?),
        _ => return Err(USAGE.into()),
    };
    let size = spec.preprocess.size as usize;
    // Deterministic pseudo-random input; the values do not matter for speed.
    let input: Vec<f32> = (0..batch * 3 * size * size)
        .map(|i| (i.wrapping_mul(2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    enc.encode(&input, batch, false)?; // warm-up
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        enc.encode(&input, batch, false)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{kind} {} batch {batch} @{size}: median {median:.3} s/batch, {:.1} images/s (runs: {times:.3?})",
        enc.backend(),
        batch as f64 / median
    );
    Ok(())
}
