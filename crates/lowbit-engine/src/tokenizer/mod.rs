//! Tokenizers: llama2.c's file format, and Hugging Face-compatible BPE
//! (built from GGUF metadata or read from tokenizer.json) through the
//! `tokenizers` crate.

pub mod hf;
pub mod llama2c;

use crate::error::Result;

pub enum Tokenizer {
    Llama2c(llama2c::Llama2cTokenizer),
    Hf(hf::HfTokenizer),
}

impl Tokenizer {
    /// Token ids of `text`, with the beginning-of-sequence token first when
    /// `bos` is set.
    pub fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Llama2c(t) => Ok(t.encode(text, bos)),
            Tokenizer::Hf(t) => t.encode(text, bos),
        }
    }

    /// Bytes to print for `token` following `prev` (streaming decode).
    pub fn piece(&self, prev: u32, token: u32) -> Vec<u8> {
        match self {
            Tokenizer::Llama2c(t) => t.piece(prev, token),
            Tokenizer::Hf(t) => t.piece(token),
        }
    }

    /// Text of `tokens`, leaving out the beginning-of-sequence token.
    pub fn decode(&self, tokens: &[u32]) -> String {
        let mut out = Vec::new();
        let mut prev = u32::MAX;
        for &t in tokens {
            if Some(t) != self.bos() {
                out.extend(self.piece(prev, t));
            }
            prev = t;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn bos(&self) -> Option<u32> {
        match self {
            Tokenizer::Llama2c(t) => Some(t.bos()),
            Tokenizer::Hf(t) => t.bos,
        }
    }

    pub fn eos(&self) -> Option<u32> {
        match self {
            Tokenizer::Llama2c(t) => Some(t.eos()),
            Tokenizer::Hf(t) => t.eos,
        }
    }

    /// Whether llama.cpp would start a sequence with BOS for this vocabulary.
    pub fn adds_bos(&self) -> bool {
        match self {
            Tokenizer::Llama2c(_) => true,
            Tokenizer::Hf(t) => t.add_bos,
        }
    }
}
