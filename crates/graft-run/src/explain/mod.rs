//! `graft explain`: where the model looked, and whether that explanation holds up.
//!
//! For each image, the run's classifier runs once through ONNX Runtime with its encoder's last
//! feature map as an extra output ([`explainer::Explainer`]); the heatmap is Grad-CAM,
//! Grad-CAM++ or (for attention heads) the head's attention, at that map — a pooled head on a
//! frozen encoder needs only the head's gradient. Then the image is perturbed along the heatmap
//! and scored again, batched ([`graft_eval::explain::quality`]): confidence drop and increase,
//! concentration, coverage, deletion and insertion AUC. Thresholds flag suspicious maps.
//!
//! Each image becomes one line of `RUN/explain/<name>/explain.jsonl` ([`record`]) — metadata,
//! never pixels — appended as it is done, so a killed run resumes where it stopped; figures are
//! PNGs beside it.

mod class_mean;
pub mod explainer;
pub mod layer;
pub mod record;
pub mod report;
mod sanity;
mod select;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Event, Reporter, RunDir, RunError};
pub use class_mean::{class_means, ClassMeans, MeanMap};
pub use explainer::Explainer;
pub use record::{ExplainRecord, Query};
pub use select::{folder_images, misclassified, split_items, MistakeOrder};

/// How heatmaps are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Method {
    /// Grad-CAM (Selvaraju et al. 2017): feature-map channels weighed by the class score's
    /// gradient.
    #[default]
    GradCam,
    /// Grad-CAM++ (Chattopadhay et al. 2018): positive gradients only, weighted per location.
    #[serde(rename = "grad-cam++")]
    #[cfg_attr(feature = "clap", value(name = "grad-cam++"))]
    GradCamPlusPlus,
    /// Layer-CAM (Jiang et al. 2021): every location weighed by its own positive gradient;
    /// sharper than Grad-CAM at earlier blocks (`--layer`).
    LayerCam,
    /// Integrated gradients (Sundararajan et al. 2017) at the map: each location's
    /// activation, less a reference's, times its own gradient averaged along the straight path
    /// from the reference (8 points). At an earlier block the reference is a blank image's map
    /// and the path runs through the blocks above; at the last map it is the training mean and
    /// the path runs through the head (a linear head gives Grad-CAM's map). The finest of the
    /// gradient methods at an earlier block (`--layer`); 8 backward passes there.
    IntegratedGradients,
    /// Score-CAM (Wang et al. 2020), gradient-free: the most active channels each mask the
    /// image, and the model's probability on each masked image weighs its channel. A
    /// cross-check of the gradient methods; costs `score_cam_channels` model runs per image.
    ScoreCam,
    /// The attention head's own weights over the map (attention heads only).
    Attention,
    /// A seeded random map: the floor any real method must beat on the quality metrics.
    Random,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::GradCam => "grad-cam",
            Method::GradCamPlusPlus => "grad-cam++",
            Method::LayerCam => "layer-cam",
            Method::IntegratedGradients => "integrated-gradients",
            Method::ScoreCam => "score-cam",
            Method::Attention => "attention",
            Method::Random => "random",
        }
    }
}

/// Which figures to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Save {
    #[default]
    All,
    SuspiciousOnly,
    None,
}

/// The `[explain]` table of graft.toml: how maps are made, measured and judged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExplainConfig {
    pub method: Method,
    /// Grad-CAM at this encoder block's output instead of the last feature map (finer maps;
    /// needs a backward pass through the blocks above it).
    pub layer: Option<usize>,
    /// Classes shown (bars, and a heatmap each).
    pub top_k: usize,
    /// Share of pixels, hottest first, that makes "the region" of the drop/increase and
    /// concentration metrics.
    pub top_share: f32,
    /// Points on the deletion and insertion curves, less one.
    pub steps: usize,
    /// Flag an image whose region, hidden, lowers its probability by less than this share.
    pub min_confidence_drop: f32,
    /// Flag a map with less than this share of its mass in its top region.
    pub min_concentration: f32,
    /// Flag a map whose area above half its peak is smaller than this share of the image…
    pub min_coverage: f32,
    /// …or larger.
    pub max_coverage: f32,
    pub save: Save,
    /// Images explained per model run (their perturbations are batched in 32s).
    pub batch: usize,
    /// Seed of the random method.
    pub seed: u64,
    /// Channels Score-CAM masks the image with (the most active ones).
    pub score_cam_channels: usize,
    /// Also make each map from models randomised from the top down (the head, then the
    /// encoder's top blocks too) and record the rank correlations.
    pub sanity: bool,
}

impl Default for ExplainConfig {
    fn default() -> Self {
        ExplainConfig {
            method: Method::GradCam,
            layer: None,
            top_k: 3,
            top_share: 0.2,
            steps: 20,
            min_confidence_drop: 0.05,
            min_concentration: 0.3,
            min_coverage: 0.01,
            max_coverage: 0.6,
            save: Save::All,
            batch: 4,
            seed: 0,
            score_cam_channels: 64,
            sanity: false,
        }
    }
}

impl ExplainConfig {
    /// The thresholds that flag a map as suspicious.
    pub fn thresholds(&self) -> graft_eval::explain::quality::Thresholds {
        graft_eval::explain::quality::Thresholds {
            top_share: self.top_share,
            min_confidence_drop: self.min_confidence_drop,
            min_concentration: self.min_concentration,
            min_coverage: self.min_coverage,
            max_coverage: self.max_coverage,
        }
    }

    /// The `[explain]` table of a TOML file (other tables are ignored); defaults without one.
    pub fn read(path: &Path) -> Result<ExplainConfig, RunError> {
        #[derive(Deserialize)]
        struct File {
            #[serde(default)]
            explain: ExplainConfig,
        }
        let text = std::fs::read_to_string(path).map_err(|e| RunError::read(path, e))?;
        let file: File = toml::from_str::<toml::Table>(&text)
            .and_then(|t| {
                let only: toml::Table = t.into_iter().filter(|(k, _)| k == "explain").collect();
                only.try_into()
            })
            .map_err(|e| RunError::Settings {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        file.explain.check(path)?;
        Ok(file.explain)
    }

    fn check(&self, path: &Path) -> Result<(), RunError> {
        let bad = |reason: String| {
            Err(RunError::Settings {
                path: path.to_path_buf(),
                reason,
            })
        };
        if !(self.top_share > 0.0 && self.top_share < 1.0) {
            return bad(format!(
                "[explain] top_share {} is not between 0 and 1",
                self.top_share
            ));
        }
        if self.steps == 0 || self.steps > 1000 {
            return bad(format!("[explain] steps {} is not in 1..=1000", self.steps));
        }
        if self.top_k == 0 || self.batch == 0 || self.score_cam_channels == 0 {
            return bad("[explain] top_k, batch and score_cam_channels must be at least 1".into());
        }
        Ok(())
    }
}

/// The class a heatmap explains.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Target {
    #[default]
    Predicted,
    /// The image's true class when known (its folder, or the run's split), else the predicted.
    True,
    Class(String),
}

/// One image to explain, with its true class when known.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub path: PathBuf,
    pub truth: Option<String>,
}

impl Item {
    /// `path`, its true class the name of its folder when the model knows that class.
    pub fn in_class_folder(path: PathBuf, classes: &[String]) -> Item {
        let truth = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| classes.contains(n));
        Item { path, truth }
    }
}

/// What `graft explain` is asked.
pub struct ExplainRequest<'a> {
    pub run: &'a RunDir,
    /// Sub-folder of `RUN/explain/`.
    pub name: String,
    pub items: Vec<Item>,
    pub config: ExplainConfig,
    pub target: Target,
    /// File figures under `normal/` and `suspicious/` (production mode) instead of `figures/`.
    pub by_verdict: bool,
}

/// What was explained.
#[derive(Debug)]
pub struct Explained {
    pub dir: PathBuf,
    pub records: Vec<ExplainRecord>,
    /// Of `records`, how many were done by earlier, interrupted runs.
    pub resumed: usize,
    /// Images that could not be read (path, why); the rest went on.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Whether `r` was made with `config`'s method and layer (an attention head's own map is
/// whatever the method asked).
fn same_settings(r: &ExplainRecord, config: &ExplainConfig) -> bool {
    let layer = match config.layer {
        None => r.layer == "last",
        Some(b) => r.layer.starts_with(&format!("block {b} ")),
    };
    layer && (r.method == "attention" || r.method == config.method.name())
}

/// Explain `req.items`, appending to `RUN/explain/<name>/explain.jsonl` and skipping the
/// images already there.
pub fn explain(req: &ExplainRequest<'_>, reporter: &dyn Reporter) -> Result<Explained, RunError> {
    let dir = req.run.root().join("explain").join(&req.name);
    std::fs::create_dir_all(&dir).map_err(|e| RunError::write(&dir, e))?;
    let log = dir.join(record::FILE);
    let mut records = record::resume(&log)?;
    if let Some(r) = records.iter().find(|r| !same_settings(r, &req.config)) {
        return Err(RunError::Invalid(format!(
            "{} holds maps made with {} at the {} layer, not these settings; give another \
             --name for a new set (or delete that folder)",
            log.display(),
            r.method,
            r.layer
        )));
    }
    let done: HashSet<String> = records.iter().map(|r| r.path.clone()).collect();
    let resumed = records.len();
    let todo: Vec<&Item> = req
        .items
        .iter()
        .filter(|i| !done.contains(&record::path_key(&i.path)))
        .collect();
    if resumed > 0 && !todo.is_empty() {
        reporter.event(Event::Note(format!(
            "{}: {resumed} images explained before, {} to go",
            log.display(),
            todo.len()
        )));
    }
    let mut unreadable = Vec::new();
    if !todo.is_empty() {
        let mut explainer = Explainer::open(req.run, req.config.layer, req.config.sanity)?;
        let bar = reporter.bar("explain", todo.len() as u64);
        let mut out = record::Appender::open(&log)?;
        for chunk in todo.chunks(req.config.batch.max(1)) {
            let batch = explainer.explain(chunk, &req.config, &req.target, &mut unreadable)?;
            for (mut rec, figure) in batch {
                if let Some(figure) = figure.filter(|_| wants_figure(req.config.save, &rec)) {
                    let sub = match (req.by_verdict, rec.suspicious) {
                        (false, _) => "figures",
                        (true, true) => "suspicious",
                        (true, false) => "normal",
                    };
                    let folder = dir.join(sub);
                    std::fs::create_dir_all(&folder).map_err(|e| RunError::write(&folder, e))?;
                    let file = folder.join(record::figure_name(Path::new(&rec.path)));
                    crate::files::write_file(&file, &png(&figure, &file)?)?;
                    rec.figure = pathdiff_in(&file, &dir);
                }
                out.append(&rec)?;
                records.push(rec);
            }
            bar.inc(chunk.len() as u64);
        }
    }
    Ok(Explained {
        dir,
        records,
        resumed,
        unreadable,
    })
}

fn wants_figure(save: Save, rec: &ExplainRecord) -> bool {
    match save {
        Save::All => true,
        Save::SuspiciousOnly => rec.suspicious,
        Save::None => false,
    }
}

fn pathdiff_in(file: &Path, dir: &Path) -> Option<String> {
    file.strip_prefix(dir)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// PNG bytes of a figure.
pub fn png(img: &image::RgbImage, for_errors: &Path) -> Result<Vec<u8>, RunError> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| RunError::Invalid(format!("encoding {}: {e}", for_errors.display())))?;
    Ok(bytes.into_inner())
}
