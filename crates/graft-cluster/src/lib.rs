//! graft's stages on a cluster's scheduler, not a scheduler of our own.
//!
//! A run folder on storage every node mounts is the whole contract: the submit host runs
//! audit + split ([`graft_run::pipeline::prepare_only`]), then [`ExtractPlan`] describes the
//! array of `graft extract --shard i/N` tasks and the job that merges the cache and trains
//! the heads after them. [`slurm`] turns a plan into `sbatch` scripts (`RUN/cluster/`),
//! submits them, finds the shards a failed or cancelled task left ([`missing_shards`]), and
//! reads the queue. Each chunk of the cache belongs to one shard, and a shard is locked by
//! the process extracting it ([`graft_features::Shard::lock`]), so two tasks never write the
//! same chunk.

mod book;
mod error;
pub mod k8s;
mod plan;
pub mod slurm;

pub use book::{Book, Submission, SubmissionKind};
pub use error::ClusterError;
pub use plan::{missing_shards, ExtractPlan, Then};
