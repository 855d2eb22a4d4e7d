//! Typed errors of the KV cache.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum KvError {
    #[error("bad KV policy `{spec}`: {reason}. Expected comma-separated items: {expected}")]
    BadPolicy { spec: String, reason: String, expected: &'static str },

    #[error("KV codec `{codec}` does not fit head_dim {head_dim}: {reason}")]
    Shape { codec: String, head_dim: usize, reason: String },

    #[error("unknown sequence {0}")]
    NoSequence(usize),

    #[error("KV cache: {0}")]
    BadInput(String),

    #[error(transparent)]
    Quant(#[from] lowbit_quant::QuantError),
}

pub type Result<T> = std::result::Result<T, KvError>;
