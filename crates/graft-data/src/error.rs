//! Errors of the data layer. Each one names the path involved and, where there is one, the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{path} is not a folder; pass the dataset folder that holds one sub-folder per class")]
    NotADirectory { path: PathBuf },
    #[error(
        "{path} holds no class folders with images; expected DIR/<class>/<image> \
         (or DIR/train/<class>/<image> for a pre-split dataset)"
    )]
    NoImages { path: PathBuf },
    #[error("invalid ratios {given:?}: {why}; write three numbers like 70/15/15")]
    BadRatios { given: String, why: String },
    #[error(
        "too few images for the ratios in class(es): {}; add images, merge these classes, \
         or change --ratios",
        .classes.join(", ")
    )]
    ClassesTooSmall { classes: Vec<String> },
    #[error("cannot write {path}: {cause}")]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot write CSV {path}: {cause}")]
    Csv { path: PathBuf, cause: csv::Error },
    #[error("cannot draw plot {path}: {why}")]
    Plot { path: PathBuf, why: String },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            cause: source,
        }
    }
}
