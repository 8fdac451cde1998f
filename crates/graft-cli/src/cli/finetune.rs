//! Arguments of `graft finetune`.

use std::path::PathBuf;

use clap::Args;

pub const FINETUNE_HELP: &str = "Examples:
  graft finetune --run runs/leaves-mobilenet-v2
  graft finetune --run runs/leaves-mobilenet-v2 --dry-run --memory 4GB
  graft finetune --resume runs/leaves-mobilenet-v2      # after an interruption, even kill -9
  graft finetune --run runs/leaves-mobilenet-v2 --epochs 1,5 --unfreeze-blocks 3 --lr 5e-4
  graft finetune --run runs/leaves-mobilenet-v2 --lr auto   # the range test picks --lr
  graft finetune --run runs/leaves-mobilenet-v2 --lr-find   # only the range test's curve

Stages: (1) the head alone, (2) the top encoder blocks with the head, (3) every layer (opt in:
--epochs 1,3,1). Each stage stops early when val macro-F1 stops improving, and a stage that
ends below the best so far is rolled back. In stages 1-2 the lower encoder is frozen, so its
output (the input of the first trained block) is computed once per image into
RUN/finetune/acts-bN/ (resumable) and they train on that, unaugmented: many times faster
than running the whole network every step (see `graft bench finetune`). Stage 3 reads the
images, augmented on other cores while the model trains, and saves one augmented batch as
RUN/finetune/augmented_batch.png. BatchNorm stays in inference mode (folded into the
convolutions): batch statistics from laptop-sized batches are noise.

Writes RUN/finetune/: metrics.json (stages, val and test scores of the fine-tuned model and
of the frozen head on the same images), history.csv, encoder.safetensors (the whole encoder,
trained blocks included, in the pretrained file's layout), model.json + model.safetensors
(the head), checkpoint.bin (the resume point, replaced atomically every --checkpoint-every
updates and at each epoch's end). RUN/finetune is a run of its own:
  graft export --run runs/leaves-mobilenet-v2/finetune    # ONNX of the fine-tuned model
  graft serve --run runs/leaves-mobilenet-v2/finetune";

/// (Serialisable: a fine-tune records its settings, and `--resume` continues with them.)
#[derive(Debug, Clone, Args, serde::Serialize, serde::Deserialize)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["run", "resume"])))]
pub struct FinetuneArgs {
    /// Run folder written by `graft train` (its best head is the starting point).
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// Continue the interrupted fine-tune of this run from its last checkpoint, at the exact
    /// update, with the settings it was started with.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Throw away an earlier or interrupted fine-tune of the run and start over.
    #[arg(long, conflicts_with = "resume")]
    pub restart: bool,
    /// Print the memory a step needs and the micro batch that fits --memory; train nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Memory budget for --dry-run (e.g. 4GB, 512MB).
    #[arg(long, default_value = "4GB", value_name = "SIZE")]
    pub memory: String,
    /// Encoder blocks trained in stage 2, counted from the top (the final 1×1 convolution is
    /// one block). More blocks adapt more and cost more per step.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub unfreeze_blocks: usize,
    /// Epochs of stage 1 (head), stage 2 (top blocks + head) and stage 3 (all layers, from
    /// augmented images; slow on a CPU, so off unless asked); 0 skips a stage.
    #[arg(long, default_value = "1,3,0", value_name = "E1,E2[,E3]")]
    pub epochs: String,
    /// graft.toml whose [augment] table sets stage 3's augmentation (default: crops, flips,
    /// colour jitter, erasing, MixUp/CutMix; preview it with `graft data augment`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Images per optimizer update.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch: usize,
    /// Images per forward/backward pass (memory depends on this alone); the update still
    /// sees --batch images through gradient accumulation. Default: --batch.
    #[arg(long, value_name = "N")]
    pub micro_batch: Option<usize>,
    /// Peak learning rate of the head in stage 1 (AdamW, cosine schedule with warmup).
    /// Stages 2 and 3 use 0.3× and 0.1× of it: pretrained weights need gentle steps.
    /// `auto` (or `auto:valley`) runs the range test first (see --lr-find) and uses the rate
    /// it suggests by the steepest-descent (valley) rule.
    #[arg(long = "lr", default_value = "1e-3", value_name = "LR|auto")]
    #[serde(skip)]
    pub lr_arg: Option<crate::cli::LrArg>,
    /// The rate used: --lr's, or the range test's (recorded in settings.json; a resume uses it).
    #[arg(skip = 1e-3)]
    pub lr: f32,
    /// Run the learning-rate range test only and train nothing: stage 2's net (the top blocks
    /// and the head, from the run's weights) on the cached activations while the rate grows
    /// from 1e-7 to 1; writes RUN/finetune/lr_find/lr_find.png and lr_find.json with the
    /// suggested --lr.
    #[arg(long, conflicts_with = "resume")]
    #[serde(skip)]
    pub lr_find: bool,
    /// Each encoder block learns at this factor of the one above it (the head at 1); the
    /// blocks below the top ones, trained in stage 3, as one group one step further down.
    /// 1 gives every layer of a stage the same rate: on Fashion-MNIST it beat 0.3 (test
    /// accuracy 0.924 against 0.918, 2 blocks, 2 epochs).
    #[arg(long, default_value_t = 1.0, value_name = "F")]
    pub layer_decay: f32,
    #[arg(long, default_value_t = 0.01, value_name = "W")]
    pub weight_decay: f32,
    #[arg(long, default_value_t = 0.1, value_name = "EPS")]
    pub label_smoothing: f32,
    /// Global gradient-norm limit (0: none).
    #[arg(long, default_value_t = 1.0, value_name = "NORM")]
    pub clip: f32,
    /// Epochs without a better val macro-F1 before a stage stops.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub patience: usize,
    /// Updates between checkpoints (one is also written at every epoch's end).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub checkpoint_every: usize,
    /// Train on at most this many training images (evenly spread; for a quick first try).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Without a val split, this share of the training images is held out as val — the same
    /// images as head training held out (with its seed), so the scores compare.
    #[arg(long, default_value_t = 0.1, value_name = "FRACTION")]
    pub val_fraction: f64,
    /// Training backend: flex (pure Rust, default), tch (libtorch on the CPU) or tch-cuda
    /// (libtorch on GPU 0). tch needs graft built with `--features tch` (see the README).
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// Arithmetic of the encoder's forward and backward passes: f32, or bf16 mixed precision
    /// (convolutions in bfloat16; weights, AdamW, head and loss in f32). bf16 pays with
    /// tch-cuda on GPUs since Ampere; on a CPU it is rarely faster.
    #[arg(long, default_value = "f32", value_name = "f32|bf16")]
    #[serde(default)]
    pub precision: graft_train::finetune::Precision,
    /// Seed of data order, dropout and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}
