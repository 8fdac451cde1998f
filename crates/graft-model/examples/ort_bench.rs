//! Hand-run throughput check of the ONNX Runtime encoder (not a test):
//! `cargo run --release -p graft-model --example ort_bench -- PATH.pth [kind] [batch] [runs]`

use std::time::Instant;

use graft_model::arch::{spec_for, EncoderKind};
use graft_model::encoder::ImageEncoder;
use graft_model::load_pth;
use graft_model::ort_backend::{OrtEncoder, OrtOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: ort_bench PATH.pth [kind] [batch] [runs]")?;
    let kind = match args.get(1) {
        Some(k) => EncoderKind::from_name(k).ok_or("unknown encoder")?,
        None => EncoderKind::MobileNetV2,
    };
    let batch: usize = args.get(2).map_or(Ok(32), |s| s.parse())?;
    let runs: usize = args.get(3).map_or(Ok(5), |s| s.parse())?;
    let w = load_pth(path)?;
    let spec = spec_for(kind, &w)?;
    let mut enc = OrtEncoder::new(&spec, &w, OrtOptions::default())?;
    let size = spec.preprocess.size as usize;
    // Deterministic pseudo-random input; the values do not matter for speed.
    let input: Vec<f32> = (0..batch * 3 * size * size)
        .map(|i| ((i * 2654435761) % 1000) as f32 / 500.0 - 1.0)
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
        "{kind} onnxruntime batch {batch} @{size}: median {:.3} s/batch, {:.1} images/s (runs: {times:.3?})",
        median,
        batch as f64 / median
    );
    Ok(())
}
