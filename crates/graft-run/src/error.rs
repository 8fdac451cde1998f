use std::path::{Path, PathBuf};

/// What can go wrong reading, writing or running a run folder. Messages name the file; the
/// command line adds the flag or command that fixes it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is damaged: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} is not a valid graft config: {reason}", path.display())]
    Settings { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{} has no {} images to evaluate", features.display(), split.as_str())]
    NoImages {
        features: PathBuf,
        split: graft_data::scan::Split,
    },
    /// An INT8 file lost more accuracy than allowed, and was not written.
    #[error("INT8 loses {:.1} points of accuracy, more than the limit {max}; not written", drop * 100.0)]
    AccuracyLimit { drop: f64, max: f64 },
    /// What was being done when `source` went wrong ("extracting features into runs/x").
    #[error("{what}")]
    Context {
        what: String,
        #[source]
        source: Box<RunError>,
    },
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error(transparent)]
    Data(#[from] graft_data::DataError),
    #[error(transparent)]
    Features(#[from] graft_features::FeatureError),
    #[error(transparent)]
    Train(#[from] graft_train::TrainError),
    #[error(transparent)]
    Weights(#[from] graft_model::weights::WeightError),
    #[error(transparent)]
    Fetch(#[from] graft_model::fetch::FetchError),
    #[error(transparent)]
    Encoder(#[from] graft_model::encoder::EncoderError),
    #[error(transparent)]
    Ort(#[from] graft_model::ort_backend::OrtError),
    #[error(transparent)]
    OnnxEncoder(#[from] graft_model::OnnxEncoderError),
    #[error(transparent)]
    Export(#[from] graft_export::ExportError),
    #[error(transparent)]
    Eval(#[from] graft_eval::EvalError),
}

impl RunError {
    pub(crate) fn read(path: &Path, source: std::io::Error) -> RunError {
        let path = path.to_path_buf();
        if source.kind() == std::io::ErrorKind::NotFound {
            RunError::Missing { path }
        } else {
            RunError::Read { path, source }
        }
    }

    pub(crate) fn write(path: &Path, source: std::io::Error) -> RunError {
        RunError::Write {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn json(path: &Path, source: serde_json::Error) -> RunError {
        RunError::Json {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Say what was being done when an error happened, as `anyhow::Context` does at the binary's
/// edge, so a library error reads "extracting features into DIR: …".
pub trait Context<T> {
    fn context(self, what: impl Into<String>) -> Result<T, RunError>;
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, RunError>;
}

impl<T, E: Into<RunError>> Context<T> for Result<T, E> {
    fn context(self, what: impl Into<String>) -> Result<T, RunError> {
        self.map_err(|e| RunError::Context {
            what: what.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T, RunError> {
        self.map_err(|e| RunError::Context {
            what: what().into(),
            source: Box::new(e.into()),
        })
    }
}
