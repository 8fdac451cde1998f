//! Error type for weight import. Every variant names the file and says what to do,
//! because these errors reach users who only have a path and a downloaded file.

use std::fmt;
use std::path::{Path, PathBuf};

use super::pickle::PickleError;

/// Anything that can go wrong reading, verifying or caching a weight file.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    /// The file could not be opened, read, written or renamed.
    #[error("{}: cannot {action}: {cause} (check the path exists and is readable/writable)", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        cause: std::io::Error,
    },

    /// A pickle stream inside the checkpoint is malformed or uses an opcode we do not read.
    #[error("{}: malformed pickle in {part}: {cause} (the file is truncated or not a PyTorch checkpoint; re-download it, or re-save it with torch.save(model.state_dict(), path))", path.display())]
    Pickle {
        path: PathBuf,
        part: String,
        cause: PickleError,
    },

    /// The container structure is wrong (bad magic, short storage data, missing zip entry…).
    #[error("{}: not a readable PyTorch checkpoint: {detail} (the file is truncated or corrupt; re-download it)", path.display())]
    Format { path: PathBuf, detail: String },

    /// Well-formed but outside what this importer supports (dtype, byte order, object kind).
    #[error("{}: unsupported checkpoint content: {detail} (re-save a plain state dict of CPU float/integer tensors with torch.save)", path.display())]
    Unsupported { path: PathBuf, detail: String },

    /// The file's sha256 does not start with the prefix embedded in its name.
    #[error("{}: sha256 mismatch: file name expects prefix {expected}, actual sha256 is {actual} (the download is corrupt or a different file; delete it and fetch it again)", path.display())]
    HashMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },

    /// Verification was requested but the name carries no `-<hex>` suffix.
    #[error("{}: file name has no `-<sha256 prefix>` before the extension to verify against (keep the original torchvision-style name, e.g. mobilenet_v2-b0353104.pth)", path.display())]
    NoHashInName { path: PathBuf },

    /// A safetensors file could not be written or parsed.
    #[error("{}: safetensors: {detail} (if this is a cache file, delete it and it will be rebuilt from the .pth)", path.display())]
    Safetensors { path: PathBuf, detail: String },

    /// A tensor the caller needs is absent.
    #[error("{}: tensor `{name}` not found (this weight file does not belong to the model being built; check which .pth was passed)", path.display())]
    MissingTensor { path: PathBuf, name: String },

    /// A tensor exists but with the wrong shape.
    #[error("{}: tensor `{name}` has shape {actual:?}, expected {expected:?} (wrong model variant for this weight file)", path.display())]
    ShapeMismatch {
        path: PathBuf,
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
}

impl WeightError {
    pub(crate) fn io(path: &Path, action: &'static str, source: std::io::Error) -> Self {
        WeightError::Io {
            path: path.to_path_buf(),
            action,
            cause: source,
        }
    }
}

/// Path-free parse failure, so format parsers work on byte slices and stay unit-testable;
/// [`ParseError::at`] attaches the file name at the public boundary.
#[derive(Debug)]
pub(crate) enum ParseError {
    Pickle { part: String, source: PickleError },
    Format(String),
    Unsupported(String),
}

impl ParseError {
    pub(crate) fn format(detail: impl Into<String>) -> Self {
        ParseError::Format(detail.into())
    }

    pub(crate) fn unsupported(detail: impl Into<String>) -> Self {
        ParseError::Unsupported(detail.into())
    }

    pub(crate) fn pickle(part: impl Into<String>, source: PickleError) -> Self {
        ParseError::Pickle {
            part: part.into(),
            source,
        }
    }

    pub(crate) fn at(self, path: &Path) -> WeightError {
        let path = path.to_path_buf();
        match self {
            ParseError::Pickle { part, source } => WeightError::Pickle {
                path,
                part,
                cause: source,
            },
            ParseError::Format(detail) => WeightError::Format { path, detail },
            ParseError::Unsupported(detail) => WeightError::Unsupported { path, detail },
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Pickle { part, source } => write!(f, "{part}: {source}"),
            ParseError::Format(d) | ParseError::Unsupported(d) => f.write_str(d),
        }
    }
}
