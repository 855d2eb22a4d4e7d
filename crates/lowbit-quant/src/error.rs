//! Typed errors for every codec entry point.

use thiserror::Error;

/// Everything that can go wrong when parsing a spec or running a codec.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum QuantError {
    #[error("bad format spec `{spec}`: {reason}. Expected one of: {expected}")]
    BadSpec { spec: String, reason: String, expected: String },

    #[error("{format}: input length {len} is not a multiple of the block size {block}")]
    BadLength { format: String, len: usize, block: usize },

    #[error("{format}: non-finite input value {value} at index {index}")]
    NonFinite { format: String, index: usize, value: f32 },

    #[error("{format}: buffer holds {got} bytes but {need} are needed for {elems} elements")]
    BufferSize { format: String, got: usize, need: usize, elems: usize },

    #[error("{format}: {what} has length {got}, expected {expected}")]
    LengthMismatch { format: String, what: &'static str, got: usize, expected: usize },

    #[error("{format}: {what} is not supported")]
    Unsupported { format: String, what: String },
}

pub type Result<T> = std::result::Result<T, QuantError>;
