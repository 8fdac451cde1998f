use std::path::PathBuf;

/// What can go wrong with the tracking store.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    #[error("tracking store {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "tracking store {path} was written by a newer graft (schema {found}, this one knows up \
         to {known}); upgrade graft, or point it at another runs folder"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("no tracking store at {0}: nothing has been recorded in this runs folder yet")]
    NoStore(PathBuf),
    #[error("no run {0:?} in the tracking store (graft runs list shows the ids)")]
    NoRun(String),
    #[error("run id {prefix:?} is ambiguous: it starts {count} runs; give more characters")]
    Ambiguous { prefix: String, count: usize },
    #[error("{0:?} names no model: write NAME@ALIAS (leaf@champion), NAME/VERSION or NAME")]
    BadModelRef(String),
    #[error("{0:?} cannot be an alias: use letters, digits, - and _ (not only digits)")]
    BadAlias(String),
    #[error("no registered model {0:?} (graft registry list shows them)")]
    NoModel(String),
    #[error("model {name:?} has no version {version} (graft registry show {name} lists them)")]
    NoVersion { name: String, version: i64 },
    #[error(
        "model {name:?} has no alias {alias:?} (graft registry show {name} lists its aliases)"
    )]
    NoAlias { name: String, alias: String },
    #[error(
        "{file} has changed since version {version} of {name} was registered: the registry \
         sends only the files it recorded; register the new files as a new version"
    )]
    VersionChanged {
        name: String,
        version: i64,
        file: PathBuf,
    },
    #[error(transparent)]
    Mlflow(#[from] crate::mlflow::MlflowError),
    #[error("{path}: {message}")]
    Plot { path: PathBuf, message: String },
}

impl TrackError {
    pub(crate) fn sql(path: &std::path::Path) -> impl Fn(rusqlite::Error) -> TrackError + '_ {
        move |source| TrackError::Sqlite {
            path: path.to_path_buf(),
            source,
        }
    }
}
