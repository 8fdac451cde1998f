//! Arguments of `graft baseline`.

use std::path::PathBuf;

use clap::Args;
use graft_train::baseline::Arch;

pub const BASELINE_HELP: &str = "\
Trains a net from scratch on the run's own images — no pretrained weights — with the run's
split (the same train, val and test images, val held out of train as head training did),
and scores it on the same test images as the run's frozen-encoder head. It answers the
question transfer learning skips: do ImageNet features help on these images at all? On small
images (28-32 pixels: Fashion-MNIST, CIFAR) a small net trained from scratch is often as good.

Architectures:
  resnet20   the CIFAR ResNet of He et al. 2016: 3 stages of 3 basic blocks (16/32/64
             channels), 0.27M parameters, 41M multiply-adds at 32×32 (projection shortcuts)
  cnn        4 blocks of 3×3 conv → BatchNorm → ReLU → 2×2 max-pool (32/64/128/256 channels),
             1.2M parameters

Images are resized to --size (32 by default: native for CIFAR, a small up-scale for 28-pixel
Fashion-MNIST) and normalised by the dataset's channel statistics from the run's audit.
Training: AdamW, cosine schedule with warmup, label smoothing, BatchNorm with batch statistics,
random crops (64-100% of the area) and horizontal flips (--no-augment: none), early stopping
on val macro-F1; the best epoch is kept. The state is checkpointed every --checkpoint-every
updates and at each epoch's end: kill the command (even kill -9), rerun it, and it continues
at the exact update.

Writes RUN/baseline/ARCH/: metrics.json (val and test scores, the run's transfer result beside
them), history.csv, curve.png (val macro-F1 per epoch against the run's), model.safetensors,
augmented_batch.png, settings.json, checkpoint.bin. `graft eval --run RUN` adds a \"Baselines\"
section to report.html.

Examples:
  graft baseline runs/cifar-mobilenet-v2                       # ResNet-20 at 32×32
  graft baseline runs/cifar-mobilenet-v2 --arch cnn --epochs 30
  graft baseline photos/ --limit 5000 --epochs 5                # the run graft train photos/ made";

#[derive(Debug, Args)]
pub struct BaselineArgs {
    /// A run folder written by `graft train`, or the photo folder it was trained from (then
    /// the run `graft train DIR` made, runs/<folder>-<encoder>, is used).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The net: resnet20 or cnn.
    #[arg(long, default_value = "resnet20", value_name = "ARCH")]
    pub arch: Arch,
    /// Input side in pixels.
    #[arg(long, default_value_t = 32, value_name = "PIXELS")]
    pub size: usize,
    #[arg(long, default_value_t = 15, value_name = "N")]
    pub epochs: usize,
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub batch: usize,
    /// Peak learning rate (AdamW, cosine schedule, 5% warmup).
    #[arg(long, default_value_t = 2e-3, value_name = "LR")]
    pub lr: f32,
    /// Decoupled weight decay of convolution and linear weights.
    #[arg(long, default_value_t = 0.05, value_name = "W")]
    pub weight_decay: f32,
    #[arg(long, default_value_t = 0.1, value_name = "EPS")]
    pub label_smoothing: f32,
    /// Epochs without a better val macro-F1 before training stops.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub patience: usize,
    /// Train without random crops and flips.
    #[arg(long)]
    pub no_augment: bool,
    /// Train on at most this many training images (evenly spread; for a quick first try).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Updates between checkpoints (one is also written at every epoch's end).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub checkpoint_every: usize,
    /// Seed of the initial weights, data order and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Throw away an earlier or interrupted baseline of this architecture and start over.
    #[arg(long)]
    pub restart: bool,
    /// Training backend: flex (pure Rust, default), tch or tch-cuda (graft built with
    /// `--features tch`).
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Where `graft train` keeps its runs (when DIR is a photo folder).
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub runs: PathBuf,
    /// Print metrics.json instead of the table.
    #[arg(long)]
    pub json: bool,
}
