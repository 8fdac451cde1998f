use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("no training rows: the feature cache has no images in the train split")]
    NoTrainRows,
    #[error("no validation rows and too few training rows to hold some out")]
    NoValRows,
    #[error("head spec {0:?} not understood; use linear, mlp, mlp:HIDDEN[:DROPOUT] (e.g. mlp:512:0.3) or attention")]
    BadHeadSpec(String),
    #[error("the {0} head reads spatial feature maps, and this feature cache has none; extract with --spatial (graft train DIR does when the heads include attention)")]
    NeedsSpatial(String),
    #[error("{0}")]
    Finetune(String),
    #[error("{path}: {why}")]
    BadCheckpoint { path: PathBuf, why: String },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Weights(#[from] graft_model::weights::WeightError),
}
