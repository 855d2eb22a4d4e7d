//! Typed errors of the vector index.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum IndexError {
    #[error("bad index spec `{spec}`: {reason}. Expected {expected}")]
    BadSpec { spec: String, reason: String, expected: &'static str },

    #[error("bad metric `{0}`: expected `l2` or `ip` (use `ip` on unit vectors for cosine)")]
    BadMetric(String),

    #[error("{path}: {reason}")]
    Malformed { path: PathBuf, reason: String },

    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("dimension mismatch: the index holds {expected}-dimensional vectors, got {got}")]
    Dim { expected: usize, got: usize },

    #[error("{0}")]
    Input(String),

    #[error("the index is not trained: call train (or `lowbit index build`) first")]
    NotTrained,
}

pub type Result<T> = std::result::Result<T, IndexError>;

pub(crate) fn malformed(path: &std::path::Path, reason: impl Into<String>) -> IndexError {
    IndexError::Malformed { path: path.to_path_buf(), reason: reason.into() }
}
