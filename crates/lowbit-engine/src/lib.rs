//! lowbit-engine: runs Llama-family decoders (SmolLM2, Llama, Qwen2,
//! Mistral; llama2.c checkpoints) on weights kept in their stored format,
//! with the lowbit-quant kernels, through a KV-cache trait.
//!
//! Knows models, tokenizers and caches; knows nothing about command lines.

pub mod bert;
pub mod chat;
pub mod config;
pub mod error;
/// The KV-cache interface and policies (lowbit-kv).
pub use lowbit_kv as kv;
pub mod eval;
pub mod generate;
pub mod gguf;
pub mod llama2c;
pub mod loader;
pub mod logits_file;
pub mod matrix;
pub mod model;
pub mod requant;
pub mod safetensors_hf;
pub mod sample;
pub mod tokenizer;

pub use error::{EngineError, Result};
pub use lowbit_kv::Policy;
pub use model::Model;
pub use tokenizer::Tokenizer;
