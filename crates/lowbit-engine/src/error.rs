//! Typed errors of model loading and running.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: malformed model file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: unsupported architecture `{arch}` (supported: llama, mistral, qwen2)")]
    UnsupportedArch { path: PathBuf, arch: String },
    #[error("{path}: tensor `{name}` is missing")]
    MissingTensor { path: PathBuf, name: String },
    #[error("{path}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    BadShape { path: PathBuf, name: String, got: Vec<usize>, expected: Vec<usize> },
    #[error("{path}: tensor `{name}` is stored as {dtype}, which lowbit cannot run yet")]
    UnsupportedDtype { path: PathBuf, name: String, dtype: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the prompt has {tokens} tokens but the context holds {ctx}")]
    ContextOverflow { tokens: usize, ctx: usize },
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    BadToken { id: u32, vocab: usize },
    #[error("the forward pass produced a non-finite value (NaN or infinity) entering a {format} matrix: the model's weights hold values it cannot compute with")]
    NonFinite { format: String },
    #[error(transparent)]
    Kv(#[from] lowbit_kv::KvError),
    #[error(transparent)]
    Quant(#[from] lowbit_quant::QuantError),
}

pub type Result<T> = std::result::Result<T, EngineError>;

pub(crate) fn malformed(path: &std::path::Path, reason: impl Into<String>) -> EngineError {
    EngineError::Malformed { path: path.to_path_buf(), reason: reason.into() }
}
