//! `graft explain`: heatmaps of where the model looked, with measured quality.

use std::path::PathBuf;

use clap::{Args, Subcommand};

pub const EXPLAIN_HELP: &str = "\
Modes (one per call; each writes RUN/explain/<name>/explain.jsonl and PNG figures):
  graft explain --run RUN leaf1.jpg leaf2.jpg        a few images: 4-panel figure each
  graft explain --run RUN --dir photos/              a folder (resumable: kill it, rerun)
  graft explain --run RUN --split test --limit 50     the run's test images, spread over the split
  graft explain --run RUN --misclassified --limit 20 the test split's mistakes, most confident first
  graft explain --run RUN --class-mean               mean maps per class and per confusion
  graft explain --run RUN --production incoming/     new photos; figures under normal/ and suspicious/
                                                     (--save suspicious-only keeps only the latter)
  graft explain query RUN/explain/dir/explain.jsonl --suspicious

Methods (--method): grad-cam (default), grad-cam++, layer-cam, integrated-gradients (the
finest at an earlier --layer: each location's activation, less a blank image's, times its own
gradient averaged over 8 points on the path from the blank image; 8 backward passes),
score-cam (gradient-free cross-check: the 64 most active channels each mask the image and the
model's probability on it weighs the channel; 64 more model runs per image), attention
(attention heads always use it), random (a seeded random map: the floor the quality metrics of
a real method must beat). --sanity checks a gradient method against models randomised from
the top down (the head, then the encoder's last one, two and three blocks too).
Maps are over the encoder's last feature map (7×7 for MobileNetV2 at 224 px); a pooled head on
a frozen encoder needs only the head's gradient there, no encoder backward pass.

Quality metrics, per image (the explained class's probability p on the model's own crop; \"the
region\" is the top --top-share of pixels by heat; removed pixels are black):
  confidence_drop      (p - p with the region hidden) / p. Near 0: the model did not need what
                       the map points at. Suspicious below min_confidence_drop (0.05).
  confidence_increase  (p with only the region kept - p) / p. Above 0: the region alone convinces
                       the model more than the whole photo.
  concentration        share of the map's mass in the region (a flat map gives --top-share).
                       Suspicious below min_concentration (0.3).
  coverage             share of the image at or above half the map's peak. Suspicious below
                       min_coverage (0.01) or above max_coverage (0.6).
  deletion_auc         mean p while pixels are blacked out hottest first, in --steps steps (Petsiuk
                       et al. 2018): lower is better.
  insertion_auc        mean p while pixels are revealed hottest first onto a blurred copy:
                       higher is better.
  peak                 the hottest pixel, on the original image and on the model's crop.

Settings: the [explain] table of --config FILE (else of the run's config.toml), flags on top;
graft train --config accepts the same file:
  [explain]  method = \"grad-cam\"  layer = 13  top_k = 3  top_share = 0.2  steps = 20
             min_confidence_drop = 0.05  min_concentration = 0.3  min_coverage = 0.01
             max_coverage = 0.6  save = \"all\"  batch = 4  seed = 0  sanity = false
             score_cam_channels = 64

Exit status: 0, also when images are suspicious (query the file for them); 1 when images
could not be read (they are named; the others are explained).";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExplainArgs {
    #[command(subcommand)]
    pub command: Option<ExplainCommand>,
    #[command(flatten)]
    pub explain: ExplainRunArgs,
}

#[derive(Debug, Subcommand)]
pub enum ExplainCommand {
    /// Filter an explain.jsonl: suspicious maps, low-confidence predictions, a class.
    #[command(
        after_help = "Examples:\n  graft explain query runs/x/explain/misclassified/explain.jsonl --suspicious\n  \
graft explain query FILE --low-confidence 0.7 --class Tomato___Late_blight --json"
    )]
    Query(ExplainQueryArgs),
}

#[derive(Debug, Args, Default)]
pub struct ExplainRunArgs {
    /// Run folder written by `graft train`.
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// Images to explain.
    pub images: Vec<PathBuf>,
    /// Explain every image under this folder (its sub-folder names are taken as true classes
    /// when the model knows them).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["misclassified", "production"])]
    pub dir: Option<PathBuf>,
    /// Explain the images of the run's split (test, val or train), spread over it (--limit).
    #[arg(long, value_name = "SPLIT", conflicts_with_all = ["dir", "misclassified", "production"])]
    pub split: Option<String>,
    /// Explain the run's test-split mistakes (predicted and true class side by side).
    #[arg(long, conflicts_with = "production")]
    pub misclassified: bool,
    /// Mean heatmaps per class (its right answers) and per confusion (true → predicted) over
    /// the run's test split (or --split), drawn over the mean image: class_means.png and .json.
    #[arg(long, conflicts_with_all = ["dir", "misclassified", "production"])]
    pub class_mean: bool,
    /// New images in production: figures filed under normal/ and suspicious/.
    #[arg(long, value_name = "DIR")]
    pub production: Option<PathBuf>,
    /// At most this many images (mistakes: after sorting).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Order of --misclassified.
    #[arg(long, value_enum, default_value_t = graft_run::explain::MistakeOrder::Confidence)]
    pub sort: graft_run::explain::MistakeOrder,
    /// Heatmap method [default: grad-cam, or [explain] method].
    #[arg(long, value_enum)]
    pub method: Option<graft_run::explain::Method>,
    /// The map at this encoder block's output instead of the last map: finer maps (14×14 or
    /// 28×28 instead of 7×7), through a backward pass of the blocks above it. The map is taken
    /// relative to a blank image's (zero padding lights a block's border cells whatever the
    /// image). Grad-CAM's one weight per channel blurs where things are at an earlier block:
    /// use --method integrated-gradients (or layer-cam) there. A block that does not exist is
    /// refused with the list of blocks and map sizes.
    #[arg(long, value_name = "BLOCK")]
    pub layer: Option<usize>,
    /// Sanity check (Adebayo et al. 2018, cascading): also make every map from the model with
    /// its head re-drawn at random, then with the encoder's top one, two and three blocks
    /// re-drawn too, and report each rank correlation with the real map. A method that
    /// explains the model ends low (below 0.3); one near 1 ignores the weights.
    #[arg(long)]
    pub sanity: bool,
    /// Explain the true class (known from the folder or the split) instead of the predicted.
    #[arg(long, conflicts_with = "class")]
    pub true_class: bool,
    /// Explain this class for every image.
    #[arg(long, value_name = "NAME")]
    pub class: Option<String>,
    /// Which figures to write [default: all].
    #[arg(long, value_enum)]
    pub save: Option<graft_run::explain::Save>,
    /// Share of pixels that makes the hot region (0–1) [default: 0.2].
    #[arg(long, value_name = "Q")]
    pub top_share: Option<f32>,
    /// Steps of the deletion and insertion curves [default: 20].
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,
    /// Classes shown per image [default: 3].
    #[arg(long, value_name = "K")]
    pub top: Option<usize>,
    /// Settings file with an [explain] table (other tables are ignored) [default: the run's
    /// config.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder under RUN/explain/ [default: images, the folder's name, misclassified or
    /// production].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Print the records as JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExplainQueryArgs {
    /// An explain.jsonl written by graft explain.
    pub file: PathBuf,
    /// Only maps flagged suspicious.
    #[arg(long)]
    pub suspicious: bool,
    /// Only predictions below this probability.
    #[arg(long, value_name = "P")]
    pub low_confidence: Option<f32>,
    /// Only images whose predicted, true or explained class is NAME.
    #[arg(long, value_name = "NAME")]
    pub class: Option<String>,
    /// Only wrong predictions (true class known and different).
    #[arg(long)]
    pub misclassified: bool,
    /// JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}
