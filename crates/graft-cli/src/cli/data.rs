//! Arguments of `graft data …`: audit, split, idx import, augmentation preview.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Check a dataset before training: class counts, imbalance, unreadable files,
    /// exact and near duplicates (also across classes), image sizes, channel statistics
    /// and a background-bias probe.
    #[command(after_help = "Examples:\n  graft data audit photos/\n  \
graft data audit photos/ --json audit.json --plot classes.png\n  \
graft data audit photos/ --near-dup-threshold 4")]
    Audit(AuditArgs),
    /// Show what training augmentation does to a folder's photos: one augmented batch
    /// (random resized crop, flips, rotation, colour jitter, blur, erasing, then MixUp or
    /// CutMix) saved as a PNG grid, with each image's soft label.
    #[command(
        after_help = "Examples:\n  graft data augment photos/ --out batch.png\n  \
graft data augment photos/ --out batch.png --config graft.toml   # its [augment] table\n  \
graft data augment photos/ --out plain.png --mix off --seed 3\n\n\
The [augment] table takes: crop_scale, crop_ratio, hflip, vflip, rotation, brightness,\n\
contrast, saturation, hue, blur, blur_sigma, erase, erase_scale, mixup, cutmix, mix_prob\n\
(0 switches one off). A batch is the same for the same seed and epoch, whatever the cores."
    )]
    Augment(AugmentArgs),
    /// Write a stratified train/val/test manifest (CSV) without copying any file.
    #[command(
        after_help = "Rounding rule: for a class of n images and ratios r (normalised to sum 1),\n\
each split first gets floor(n*r) images; the images left over go one each to the splits\n\
with the largest fractional parts n*r - floor(n*r), ties broken in the order train, val,\n\
test. Near-duplicate clusters are placed whole, largest first, into the split that is\n\
furthest below its target, so a cluster of k images can overshoot a target by at most\n\
k-1 images. A pre-split folder (DIR/train, DIR/val, DIR/test) is kept as it is.\n\n\
Examples:\n  graft data split photos/ --out manifest.csv\n  \
graft data split photos/ --ratios 80/10/10 --seed 7 --out manifest.csv"
    )]
    Split(SplitArgs),
    /// Convert MNIST-format idx files (images + labels, raw or .gz) into an ImageFolder of PNGs.
    #[command(
        after_help = "Example (Fashion-MNIST):\n  graft data import-idx \\\n    \
--images train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz \\\n    \
--preset fashion-mnist --out data/fashion-mnist/train\n\n\
scripts/fetch-fashion-mnist.sh does this for the whole dataset."
    )]
    ImportIdx(ImportIdxArgs),
    /// What changed between two split manifests: images added, removed, relabelled, moved to
    /// another split, renamed or replaced.
    #[command(
        after_help = "Images are matched by path first (paths resolved against each manifest's \
folder), then by\ncontent hash, so a renamed file shows as renamed, not as removed and added. \
With --exit-code\nthe status is 1 when they differ (as git diff --exit-code).\n\n\
Examples:\n  graft data diff runs/v1/manifest.csv runs/v2/manifest.csv\n  \
graft data diff old.csv new.csv --json > changes.json"
    )]
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Dataset folder (DIR/<class>/... or DIR/{train,val,test}/<class>/...).
    pub dir: PathBuf,
    /// Write the full report as JSON to this file ("-" for stdout).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write a class-distribution bar chart (PNG) to this file.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    /// Largest Hamming distance between 64-bit perceptual hashes that counts as a near duplicate
    /// (0 = only perceptually identical images).
    #[arg(long, default_value_t = graft_data::audit::DEFAULT_NEAR_DUP_THRESHOLD, value_name = "BITS")]
    pub near_dup_threshold: u32,
    /// How many entries of each list (corrupt files, duplicate groups) to print; JSON has all.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub show: usize,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier manifest (manifest.csv of `graft data split` or a run folder).
    pub before: PathBuf,
    /// The later manifest.
    pub after: PathBuf,
    /// Images listed per kind of change, at most (the counts are always complete).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: usize,
    /// Print every change as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when the manifests differ.
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Debug, Args)]
pub struct SplitArgs {
    /// Dataset folder (DIR/<class>/... or pre-split DIR/{train,val,test}/<class>/...).
    pub dir: PathBuf,
    /// Train/val/test percentages (any three non-negative numbers; they are normalised).
    #[arg(long, default_value = "70/15/15", value_name = "TRAIN/VAL/TEST")]
    pub ratios: String,
    /// Seed for the shuffle: the same seed and files give a byte-identical manifest.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Manifest to write. Paths inside it are relative to the manifest's own folder.
    #[arg(long, short, default_value = "manifest.csv", value_name = "FILE")]
    pub out: PathBuf,
    /// Hamming threshold for near duplicates kept together (see `graft data audit`).
    #[arg(long, default_value_t = graft_data::audit::DEFAULT_NEAR_DUP_THRESHOLD, value_name = "BITS")]
    pub near_dup_threshold: u32,
    /// Pre-split folder without val/: hold out this percentage of each train class as val.
    #[arg(long, value_name = "PCT")]
    pub val_from_train: Option<f64>,
}

#[derive(Debug, Args)]
pub struct ImportIdxArgs {
    /// idx image file (magic 0x00000803), raw or gzip-compressed.
    #[arg(long, value_name = "FILE")]
    pub images: PathBuf,
    /// idx label file (magic 0x00000801), raw or gzip-compressed.
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Output folder; one sub-folder per class is created inside it.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// Class names in label order, comma-separated (e.g. "cat,dog"). Without --classes or
    /// --preset, classes are named 0..N-1, where N is the largest label in the file plus one.
    #[arg(long, value_delimiter = ',', conflicts_with = "preset")]
    pub classes: Option<Vec<String>>,
    /// Known dataset whose class names to use: fashion-mnist, mnist.
    #[arg(long)]
    pub preset: Option<String>,
    /// Import only the first N images (handy for a quick look).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct AugmentArgs {
    /// Dataset folder (DIR/<class>/... or DIR/{train,val,test}/<class>/...).
    pub dir: PathBuf,
    /// PNG to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Encoder whose input size and normalisation to use.
    #[arg(long, default_value = "mobilenet-v2")]
    pub encoder: graft_model::arch::EncoderKind,
    /// TOML file with an [augment] table (e.g. your graft.toml); defaults otherwise.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Images in the batch, spread over the classes.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub batch: usize,
    /// Batch mixing: on (as configured) or off.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    pub mix: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 0)]
    pub epoch: u64,
}
