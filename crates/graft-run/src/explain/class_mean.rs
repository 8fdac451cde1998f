//! `graft explain --class-mean`: where the model looks on average — for each class, over the
//! images of that class it got right, and for each confusion (true A, predicted B), over those
//! mistakes — as mean heatmaps over the mean image, so a pattern shows that no single picture
//! proves (a watermark corner, the background of one photo session).

use std::collections::BTreeMap;
use std::path::PathBuf;

use graft_eval::plots::{gallery, Heat, Tile};
use image::RgbImage;
use serde::Serialize;

use super::{ExplainConfig, Explainer, Item};
use crate::{Reporter, RunDir, RunError};

/// One mean map.
#[derive(Debug, Clone, Serialize)]
pub struct MeanMap {
    #[serde(rename = "true")]
    pub truth: String,
    pub predicted: String,
    pub images: usize,
    /// `side × side`, row-major, each image's map scaled to `[0, 1]` before the mean.
    pub heat: Vec<f32>,
}

/// What `class_means.json` holds.
#[derive(Debug, Serialize)]
pub struct ClassMeans {
    pub method: String,
    pub layer: String,
    pub side: usize,
    /// Right answers per class.
    pub classes: Vec<MeanMap>,
    /// Mistakes per (true, predicted) pair, most frequent first.
    pub confusions: Vec<MeanMap>,
}

/// Sums for one group: the heat, the crops' pixels, how many.
struct Sum {
    heat: Vec<f32>,
    pixels: Vec<f32>,
    n: usize,
}

/// Mean maps over `items` (their truth must be known), written to
/// `RUN/explain/<name>/class_means.{json,png}`.
pub fn class_means(
    run: &RunDir,
    name: &str,
    items: &[Item],
    config: &ExplainConfig,
    reporter: &dyn Reporter,
) -> Result<(ClassMeans, PathBuf), RunError> {
    let mut explainer = Explainer::open(run, config.layer, false)?;
    let classes = explainer.model().meta.classes.clone();
    let mut groups: BTreeMap<(usize, usize), Sum> = BTreeMap::new();
    let mut side = 0;
    let mut crop_side = 0;
    let bar = reporter.bar("class means", items.len() as u64);
    let known: Vec<&Item> = items.iter().filter(|i| i.truth.is_some()).collect();
    for chunk in known.chunks(16) {
        let (s, maps) = explainer.maps(chunk, config)?;
        side = s;
        for m in maps {
            let (crop, heat, predicted) = (m.crop, m.heat, m.predicted);
            let Some(truth) = chunk[m.item]
                .truth
                .as_deref()
                .and_then(|t| classes.iter().position(|c| c == t))
            else {
                continue;
            };
            crop_side = crop.width();
            let g = groups.entry((truth, predicted)).or_insert_with(|| Sum {
                heat: vec![0.0; heat.len()],
                pixels: vec![0.0; crop.as_raw().len()],
                n: 0,
            });
            g.heat.iter_mut().zip(&heat).for_each(|(a, v)| *a += v);
            g.pixels
                .iter_mut()
                .zip(crop.as_raw())
                .for_each(|(a, v)| *a += f32::from(*v));
            g.n += 1;
        }
        bar.inc(chunk.len() as u64);
    }
    drop(bar);
    let mean = |(t, p): (usize, usize), g: &Sum| MeanMap {
        truth: classes[t].clone(),
        predicted: classes[p].clone(),
        images: g.n,
        heat: g.heat.iter().map(|v| v / g.n as f32).collect(),
    };
    let right: Vec<((usize, usize), &Sum)> = groups
        .iter()
        .filter(|((t, p), _)| t == p)
        .map(|(k, g)| (*k, g))
        .collect();
    let mut wrong: Vec<((usize, usize), &Sum)> = groups
        .iter()
        .filter(|((t, p), _)| t != p)
        .map(|(k, g)| (*k, g))
        .collect();
    wrong.sort_by(|a, b| b.1.n.cmp(&a.1.n).then(a.0.cmp(&b.0)));
    let out = ClassMeans {
        method: config.method.name().to_string(),
        layer: explainer.layer_name(),
        side,
        classes: right.iter().map(|(k, g)| mean(*k, g)).collect(),
        confusions: wrong.iter().map(|(k, g)| mean(*k, g)).collect(),
    };
    let dir = run.root().join("explain").join(name);
    std::fs::create_dir_all(&dir).map_err(|e| RunError::write(&dir, e))?;
    crate::files::write_json(&dir.join("class_means.json"), &out)?;
    // The figure: every class, then the twelve most frequent confusions.
    let tile = |((t, p), g): &((usize, usize), &Sum), wrong: bool| {
        let pixels: Vec<u8> = g
            .pixels
            .iter()
            .map(|v| (v / g.n as f32).round().clamp(0.0, 255.0) as u8)
            .collect();
        let image = RgbImage::from_raw(crop_side, crop_side, pixels);
        let lines = if wrong {
            vec![
                format!("{} →", classes[*t]),
                format!("{} ({})", classes[*p], g.n),
            ]
        } else {
            vec![classes[*t].clone(), format!("{} right", g.n)]
        };
        Tile {
            image,
            lines,
            wrong,
            heat: Some(Heat {
                weights: g.heat.iter().map(|v| v / g.n as f32).collect(),
                side,
                crop: 1.0,
            }),
        }
    };
    let tiles: Vec<Tile> = right
        .iter()
        .map(|t| tile(t, false))
        .chain(wrong.iter().take(12).map(|t| tile(t, true)))
        .collect();
    let png = dir.join("class_means.png");
    gallery(
        &format!("Mean {} maps: classes, then true → predicted", out.method),
        &tiles,
        &png,
    )?;
    Ok((out, png))
}
