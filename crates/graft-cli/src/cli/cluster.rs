//! Arguments of `graft cluster`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::PipelineArgs;

pub const CLUSTER_HELP: &str = "\
For a dataset or a search that outgrows one machine: graft writes job scripts for the
cluster's own scheduler and submits them. Nothing of graft runs as a service.

What every node needs:
  - the run folder on storage every node mounts at the same path (NFS, Lustre, BeeGFS…);
    a task that cannot see the run's manifest stops with a message saying so;
  - the graft binary at the same path (--graft PATH when the nodes see it elsewhere);
  - ONNX Runtime's library (ORT_DYLIB_PATH) and graft's weights cache (GRAFT_CACHE or
    ~/.cache/graft): the jobs inherit the submitting shell's environment.

Examples:
  graft cluster slurm extract photos/ --tasks 16 --partition gpu --gres gpu:1 --time 1:00:00
  graft cluster slurm extract photos/ --dry-run      # write RUN/cluster/*.sbatch only
  graft cluster slurm resume runs/photos-mobilenet-v2  # resubmit the shards that failed
  graft cluster status runs/photos-mobilenet-v2
  graft cluster slurm tune --run runs/photos-mobilenet-v2 --trials 64 --parallel 16
  graft cluster slurm ablate --run runs/photos-mobilenet-v2 ablation.toml
  graft cluster k8s extract photos/ --tasks 8 --image registry.lab/graft:0.1 --claim photos";

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Slurm: job arrays written to RUN/cluster/ and submitted with sbatch.
    #[command(subcommand)]
    Slurm(SlurmCommand),
    /// What the scheduler says of a run's jobs, and how much of its cache is done.
    Status(ClusterStatusArgs),
    /// Kubernetes: an Indexed Job manifest (one pod per shard) and the Job after it, written
    /// to RUN/cluster/k8s/ for `kubectl apply`; graft submits nothing.
    #[command(subcommand)]
    K8s(K8sCommand),
}

#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Write the extraction as an Indexed Job and the merge + train Job after it.
    #[command(after_help = K8S_EXTRACT_HELP)]
    Extract(Box<K8sExtractArgs>),
}

pub const K8S_EXTRACT_HELP: &str = "\
Runs audit + split here, then writes
  RUN/cluster/k8s/extract-job.yaml   a Job with completionMode: Indexed and --tasks
                                     completions; pod i runs graft extract --shard i/N
                                     (i = JOB_COMPLETION_INDEX), each index retried on its own
  RUN/cluster/k8s/collect-job.yaml   graft extract --merge, then graft train on the run
Kubernetes has no dependency between Jobs; apply the second once the first completed:
  kubectl apply -f RUN/cluster/k8s/extract-job.yaml
  kubectl wait --for=condition=complete --timeout=24h job/graft-extract-NAME
  kubectl apply -f RUN/cluster/k8s/collect-job.yaml

The pods need: the --image with graft on its PATH (or --graft PATH), ONNX Runtime's library
(ORT_DYLIB_PATH set in the image) and graft's weights cache (GRAFT_CACHE); the run folder on a
ReadWriteMany volume (--claim), mounted at --mount so that the run's path is the same in
every pod as where this command ran.

Example:
  graft cluster k8s extract photos/ --tasks 8 --image registry.lab/graft:0.1 \\
      --claim plant-photos --mount /data --cpu 2 --memory 4Gi";

#[derive(Debug, Args)]
pub struct K8sExtractArgs {
    /// The photo folder and `graft train`'s settings (flags, --config), as for `graft train`.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Pods (shards) [default: 4, or [cluster] tasks].
    #[arg(long, value_name = "N")]
    pub tasks: Option<usize>,
    /// After the Indexed Job: train (head sweep + eval) or none.
    #[arg(long, value_enum, default_value_t = ThenArg::Train)]
    pub then: ThenArg,
    /// Container image with graft, ONNX Runtime and the weights.
    #[arg(long)]
    pub image: String,
    /// PersistentVolumeClaim holding the run folder (ReadWriteMany).
    #[arg(long, value_name = "NAME")]
    pub claim: String,
    /// Where the claim is mounted in the pods [default: the current folder].
    #[arg(long, value_name = "PATH")]
    pub mount: Option<PathBuf>,
    /// Namespace of the Jobs [default: kubectl's].
    #[arg(long)]
    pub namespace: Option<String>,
    /// CPU requested per extraction pod (e.g. 2, 500m).
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory requested per extraction pod (e.g. 4Gi).
    #[arg(long)]
    pub memory: Option<String>,
    /// GPUs per extraction pod (nvidia.com/gpu).
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// Retries of a failed pod (per index for the Indexed Job).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub retries: u32,
    /// The graft command in the image.
    #[arg(long, default_value = "graft", value_name = "PATH")]
    pub graft: PathBuf,
}

pub const SLURM_EXTRACT_HELP: &str = "\
Runs audit + split here, then writes and submits (unless --dry-run):
  RUN/cluster/extract.sbatch   an array of --tasks jobs; task i runs
                               graft extract --shard i/N into RUN/features
  RUN/cluster/collect.sbatch   after every task succeeded (afterok): graft extract --merge
                               checks the cache, then graft train --config RUN/config.toml
                               trains the heads and writes the report (--then none: only
                               the check)
Job ids go to RUN/cluster/jobs.json, logs to RUN/cluster/logs/. The result is the run a local
`graft train` with the same settings makes, byte for byte.

A task that fails or is cancelled leaves its shard's chunks missing (finished chunks stay):
`graft cluster slurm resume RUN` resubmits those shards only. Each shard is locked while a
task extracts it, so a resubmission never writes over a task still running.

Resources come from the flags, else [cluster] in the --config file:
  [cluster]
  tasks = 16
  partition = \"gpu\"
  gres = \"gpu:1\"
  time = \"1:00:00\"
  cpus = 8
  mem = \"16G\"
  account = \"plant-lab\"";

#[derive(Debug, Subcommand)]
pub enum SlurmCommand {
    /// Extract a dataset's features as a Slurm job array, then train on them.
    #[command(after_help = SLURM_EXTRACT_HELP)]
    Extract(Box<SlurmExtractArgs>),
    /// Resubmit the shards a run's cache still lacks (a failed or cancelled task), and the
    /// job after them.
    Resume(SlurmResumeArgs),
    /// `graft tune` as a job array: one trial per task, then the summary.
    #[command(after_help = SLURM_TUNE_HELP)]
    Tune(Box<SlurmTuneArgs>),
    /// `graft ablate` as a job array: one cell (all its seeds) per task, then the table.
    #[command(
        after_help = "Writes and submits RUN/cluster/ablate-NAME.sbatch (task i runs\n\
`graft ablate --cell i`: cell i with every seed, into RUN/ablate/NAME/cells/) and, after it,\n\
ablate-NAME-collect.sbatch: the whole `graft ablate`, which finds every cell trained and\n\
writes the table, ablation.json and the chart, as a local run would.\n\n\
Example:\n  graft cluster slurm ablate --run runs/photos-mobilenet-v2 ablation.toml --time 30:00"
    )]
    Ablate(Box<SlurmAblateArgs>),
}

#[derive(Debug, Args)]
pub struct SlurmAblateArgs {
    #[command(flatten)]
    pub target: super::AblationArgs,
    #[command(flatten)]
    pub resources: ResourceArgs,
    #[command(flatten)]
    pub submit: SubmitArgs,
}

pub const SLURM_TUNE_HELP: &str = "\
Writes and submits (unless --dry-run) RUN/cluster/tune-NAME.sbatch, an array of --trials
tasks, at most --parallel at once (--array=0-(T-1)%P): task i runs `graft tune --trial i`,
trial i alone, into RUN/tune/NAME/trials/. Trial i is proposed from trials 0..i-P, exactly as
in a local `graft tune --parallel P` with the same seed, so both give the same trials. After
every task succeeded, RUN/cluster/tune-NAME-collect.sbatch runs the whole `graft tune`, which
finds every trial done and writes trials.csv, results.csv, tune.json, best.toml and the plots.
A failed task? Submit the same command again: finished trials are read back, not rerun.

Example:
  graft cluster slurm tune --run runs/photos-mobilenet-v2 --method bayes --trials 64 \\
      --parallel 16 --partition cpu --cpus 2 --time 20:00";

#[derive(Debug, Args)]
pub struct SlurmTuneArgs {
    #[command(flatten)]
    pub search: super::TuneSearchArgs,
    #[command(flatten)]
    pub resources: ResourceArgs,
    #[command(flatten)]
    pub submit: SubmitArgs,
}

/// What the job after the array does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ThenArg {
    /// Train the heads and evaluate (`graft train` on the run).
    Train,
    /// Only check that the cache is complete.
    None,
}

#[derive(Debug, Args)]
pub struct SlurmExtractArgs {
    /// The photo folder and `graft train`'s settings (flags, --config), as for `graft train`.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    /// Array tasks: the cache is cut into this many shards [default: 4, or [cluster] tasks].
    #[arg(long, value_name = "N")]
    pub tasks: Option<usize>,
    /// After the array: train (head sweep + eval) or none.
    #[arg(long, value_enum, default_value_t = ThenArg::Train)]
    pub then: ThenArg,
    #[command(flatten)]
    pub resources: ResourceArgs,
    #[command(flatten)]
    pub submit: SubmitArgs,
}

/// How `graft cluster slurm` submits.
#[derive(Debug, Args, Default)]
pub struct SubmitArgs {
    /// Write the scripts, submit nothing (submit them by hand with sbatch; for resume: say
    /// which shards are missing).
    #[arg(long)]
    pub dry_run: bool,
    /// Submit the array held: it starts on `scontrol release JOBID`.
    #[arg(long)]
    pub hold: bool,
    /// The graft binary the nodes run [default: this one].
    #[arg(long, value_name = "PATH")]
    pub graft: Option<PathBuf>,
}

#[derive(Debug, Args, Default)]
pub struct ResourceArgs {
    /// Slurm partition (queue).
    #[arg(long)]
    pub partition: Option<String>,
    /// Account to charge.
    #[arg(long)]
    pub account: Option<String>,
    /// Time limit per task, as Slurm reads it (e.g. 30:00, 2:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per extraction task.
    #[arg(long, value_name = "N")]
    pub cpus: Option<usize>,
    /// Memory per task (e.g. 8G).
    #[arg(long)]
    pub mem: Option<String>,
    /// Generic resources per extraction task, e.g. gpu:1.
    #[arg(long)]
    pub gres: Option<String>,
}

#[derive(Debug, Args)]
pub struct SlurmResumeArgs {
    /// The run folder (`graft cluster slurm extract` made it).
    pub run: PathBuf,
    #[command(flatten)]
    pub resources: ResourceArgs,
    #[command(flatten)]
    pub submit: SubmitArgs,
}

#[derive(Debug, Args)]
pub struct ClusterStatusArgs {
    /// The run folder.
    pub run: PathBuf,
}
