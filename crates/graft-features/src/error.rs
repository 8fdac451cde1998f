//! Errors of the feature cache. Each names the folder or file involved and, where there is one,
//! the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("cannot {op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is not a valid feature cache header: {why}")]
    BadHeader { path: PathBuf, why: String },
    #[error(
        "the feature cache in {dir} was made with a different {what}; \
         pass a new --out folder, or --force to delete it and start over"
    )]
    Mismatch { dir: PathBuf, what: String },
    #[error(
        "the feature cache in {dir} is incomplete: {count} of {total} chunks missing ({missing}); \
         run the missing `graft extract --shard i/N` parts, or `graft extract --merge --from DIR`"
    )]
    Incomplete {
        dir: PathBuf,
        count: usize,
        total: usize,
        missing: String,
    },
    #[error("invalid --shard {given:?}: {why}; write it as i/N with 0 <= i < N, e.g. 0/4")]
    BadShard { given: String, why: String },
    #[error(
        "another process is extracting shard {shard} into {dir} (it holds {lock}); wait for it \
         or stop it: two processes must never write the same chunks"
    )]
    Busy {
        dir: PathBuf,
        shard: String,
        lock: PathBuf,
    },
    #[error("invalid option: {0}")]
    BadOption(String),
    #[error("no images to extract features from")]
    NoImages,
    #[error("the encoder returned {got} values for {what}, expected {expected}")]
    EncoderOutput {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error(transparent)]
    Encoder(#[from] graft_model::encoder::EncoderError),
    #[error(transparent)]
    Data(#[from] graft_data::DataError),
}

impl FeatureError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FeatureError::Io {
            op,
            path: path.into(),
            cause: source,
        }
    }
}
