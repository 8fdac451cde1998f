//! Inference throughput of the burn encoder on random input.
//!
//! Usage: cargo run --release -p graft-model --example bench_burn -- WEIGHTS.pth [KIND] [BATCH] [ITERS]

use std::time::Instant;

use graft_model::arch::EncoderKind;
use graft_model::burn_backend::BurnEncoder;
use graft_model::encoder::ImageEncoder;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: bench_burn WEIGHTS.pth [KIND] [BATCH] [ITERS]")?;
    let kind = args
        .get(1)
        .and_then(|k| EncoderKind::from_name(k))
        .unwrap_or(EncoderKind::MobileNetV2);
    let batch: usize = args.get(2).map_or(Ok(8), |b| b.parse())?;
    let iters: usize = args.get(3).map_or(Ok(5), |b| b.parse())?;
    let sd = if path.ends_with(".safetensors") {
        graft_model::load_safetensors(std::path::Path::new(path))?
    } else {
        graft_model::load_pth(path)?
    };
    let mut enc = BurnEncoder::new(kind, &sd)?;
    let s = enc.spec().preprocess.size as usize;
    // Deterministic pseudo-random input in roughly the normalised range.
    let input: Vec<f32> = (0..batch * 3 * s * s)
        .map(|i| ((i.wrapping_mul(2_654_435_761) % 1000) as f32 / 500.0) - 1.0)
        .collect();
    enc.encode(&input, batch, false)?; // warm-up
    let mut times = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        enc.encode(&input, batch, false)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{kind} burn-flex batch {batch} @{s}: median {:.3} s/batch, {:.1} images/s",
        median,
        batch as f64 / median
    );
    Ok(())
}
