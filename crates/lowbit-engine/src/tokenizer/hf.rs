//! Hugging Face-compatible BPE through the `tokenizers` crate.

use crate::error::{EngineError, Result};

pub struct HfTokenizer {
    pub inner: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
}

impl HfTokenizer {
    pub fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if bos {
            if let Some(b) = self.bos {
                ids.push(b);
            }
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    pub fn piece(&self, token: u32) -> Vec<u8> {
        self.inner.decode(&[token], false).unwrap_or_default().into_bytes()
    }
}
