//! Hugging Face-compatible BPE through the `tokenizers` crate: read from a
//! tokenizer.json, or assembled from GGUF metadata (gpt2-style byte-level
//! BPE: tokens, merges, and the pre-tokenizer llama.cpp names in
//! `tokenizer.ggml.pre`).

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

use crate::error::{EngineError, Result};

pub struct HfTokenizer {
    pub inner: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
}

fn tok_err(e: impl std::fmt::Display) -> EngineError {
    EngineError::Tokenizer(e.to_string())
}

impl HfTokenizer {
    /// Read a tokenizer.json (padding and truncation switched off: lowbit
    /// feeds whole texts).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let mut inner = tokenizers::Tokenizer::from_file(path).map_err(|e| tok_err(format!("{}: {e}", path.display())))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(tok_err)?;
        let id = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let bos = id(&["<s>", "<|begin_of_text|>", "[CLS]", "<|endoftext|>"]);
        let eos = id(&["</s>", "<|end_of_text|>", "<|eot_id|>", "[SEP]", "<|im_end|>", "<|endoftext|>"]);
        Ok(HfTokenizer { inner, bos, eos, add_bos: false })
    }

    pub fn encode(&self, text: &str, bos: bool) -> Result<Vec<u32>> {
        // Special tokens written in the text (e.g. <|im_start|>) stay single tokens.
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
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
        // Byte-level BPE: map each symbol of the token back to its byte, so a
        // multi-byte character split over tokens streams correctly.
        match self.inner.id_to_token(token) {
            Some(t) if !self.inner.get_added_vocabulary().is_special_token(&t) => {
                let bytes: Option<Vec<u8>> = t.chars().map(|c| BYTE_OF.with(|m| m.get(&c).copied())).collect();
                bytes.unwrap_or_else(|| t.into_bytes())
            }
            _ => Vec::new(),
        }
    }
}

thread_local! {
    /// GPT-2's byte ↔ printable-character table, reversed.
    static BYTE_OF: HashMap<char, u8> = {
        let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut chars = printable.clone();
        let mut n = 0;
        for b in 0..256u32 {
            if !printable.contains(&b) {
                printable.push(b);
                chars.push(256 + n);
                n += 1;
            }
        }
        printable.iter().zip(&chars).map(|(&b, &c)| (char::from_u32(c).expect("valid"), b as u8)).collect()
    };
}

fn strings(md: &HashMap<String, Value>, key: &str) -> Result<Vec<String>> {
    let v = md.get(key).ok_or_else(|| tok_err(format!("metadata `{key}` is missing")))?;
    v.to_vec().map_err(tok_err)?.iter().map(|x| x.to_string().cloned().map_err(tok_err)).collect()
}

fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper> {
    let byte_level = |regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, regex));
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Ok(PreTokenizerWrapper::Split(
            Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false).map_err(tok_err)?,
        ))
    };
    Ok(match pre {
        // SmolLM2 / StarCoder: every digit alone, then GPT-2's byte-level split.
        "smollm" | "starcoder" => {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![PreTokenizerWrapper::Digits(Digits::new(true)), byte_level(true)]))
        }
        "qwen2" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")?,
            byte_level(false),
        ])),
        "llama-bpe" | "llama3" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")?,
            byte_level(false),
        ])),
        "gpt2" | "default" | "" => byte_level(true),
        other => return Err(tok_err(format!("pre-tokenizer `{other}` is not supported (smollm, qwen2, llama-bpe, gpt2)"))),
    })
}

/// Build the gpt2-style BPE tokenizer llama.cpp would use from GGUF metadata.
pub fn from_gguf(md: &HashMap<String, Value>) -> Result<HfTokenizer> {
    let model = md.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or("");
    if model != "gpt2" {
        return Err(tok_err(format!("tokenizer model `{model}` is not supported yet (gpt2-style BPE is)")));
    }
    let tokens = strings(md, "tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = strings(md, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| tok_err(format!("bad merge `{m}`"))))
        .collect::<Result<_>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(tok_err)?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    let pre = md.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or("default");
    inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    // Control (3) and user-defined (4) tokens match as whole strings.
    let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
        Some(v) => v.to_vec().map_err(tok_err)?.iter().map(|x| x.to_i32().unwrap_or(1)).collect(),
        None => Vec::new(),
    };
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == 3 || t == 4)
        .map(|(s, &t)| AddedToken::from(s.clone(), t == 3))
        .collect();
    inner.add_special_tokens(&specials);
    let id = |k: &str| md.get(k).and_then(|v| v.to_u32().ok());
    let add_bos = md.get("tokenizer.ggml.add_bos_token").and_then(|v| v.to_bool().ok()).unwrap_or(false);
    Ok(HfTokenizer { inner, bos: id("tokenizer.ggml.bos_token_id"), eos: id("tokenizer.ggml.eos_token_id"), add_bos })
}
