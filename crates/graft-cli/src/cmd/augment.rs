//! `graft data augment DIR --out PNG`: one augmented batch of a folder, as the model would see
//! it in fine-tuning, to check an augmentation recipe before spending hours on it.

use anyhow::{bail, Context};
use graft_data::augment::{augment_batch, batch_grid, AugmentConfig};

use crate::cli::AugmentArgs;

pub fn run(args: AugmentArgs) -> anyhow::Result<()> {
    let pre = args.encoder.preprocess();
    let mut cfg = match &args.config {
        Some(path) => graft_run::settings::read_augment(path)?,
        None => AugmentConfig::default(),
    };
    if args.mix == "off" {
        cfg.mix_prob = 0.0;
    }
    let ds = graft_data::scan::scan(&args.dir)
        .with_context(|| format!("reading the folder {}", args.dir.display()))?;
    if ds.entries.is_empty() || args.batch == 0 {
        bail!("{} has no image to augment", args.dir.display());
    }
    // Round-robin over classes so every class shows up: (entry, class) pairs.
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); ds.classes.len()];
    for (i, e) in ds.entries.iter().enumerate() {
        if let Some(k) = ds.classes.iter().position(|c| *c == e.class) {
            by_class[k].push(i);
        }
    }
    let mut picked = Vec::new();
    for round in 0.. {
        let before = picked.len();
        for (k, rows) in by_class.iter().enumerate() {
            if picked.len() < args.batch {
                if let Some(&i) = rows.get(round) {
                    picked.push((i, k));
                }
            }
        }
        if picked.len() == args.batch || picked.len() == before {
            break;
        }
    }
    let mut images = Vec::new();
    let mut indices = Vec::new();
    let mut labels = Vec::new();
    for &(i, k) in &picked {
        let e = &ds.entries[i];
        match graft_data::decode::read_and_decode(&e.path) {
            Ok((_, img)) => {
                images.push(img);
                indices.push(i);
                labels.push(k);
            }
            Err(err) => note!("{}: skipped ({err})", e.path.display()),
        }
    }
    if images.is_empty() {
        bail!("no readable image among the {} picked", picked.len());
    }
    let refs: Vec<_> = images.iter().collect();
    let batch = augment_batch(
        &refs,
        &indices,
        &labels,
        ds.classes.len(),
        &cfg,
        &pre,
        args.seed,
        args.epoch,
    );
    let cols = (images.len() as f64).sqrt().ceil() as usize;
    batch_grid(&batch, &pre, cols)
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    say!(
        "Wrote {} ({} images, {}×{}, batch mixing: {:?})",
        args.out.display(),
        images.len(),
        pre.size,
        pre.size,
        batch.mix
    );
    let c = ds.classes.len();
    for (k, row) in batch.targets.chunks(c).enumerate() {
        let mut parts: Vec<(usize, f32)> = row
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, w)| *w >= 0.005)
            .collect();
        parts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let label = parts
            .iter()
            .map(|(j, w)| format!("{} {:.2}", ds.classes[*j], w))
            .collect::<Vec<_>>()
            .join(" + ");
        say!("  {:>2}: {label}", k + 1);
    }
    Ok(())
}
