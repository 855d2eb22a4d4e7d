//! SentencePiece-style BPE vocabularies: llama2.c's tokenizer file (max
//! token length (i32), then per token a score (f32), a length (i32) and the
//! bytes; spaces written as ' '), and GGUF `llama` vocabularies (tokens and
//! scores in the metadata; spaces written as '▁'). Encoding: a dummy-prefix
//! space, one token per code point (byte fallback to the <0xXX> tokens),
//! then repeatedly merge the adjacent pair whose concatenation has the
//! highest score — llama2.c's `encode` and llama.cpp's SPM tokenizer.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{malformed, EngineError, Result};

pub struct Llama2cTokenizer {
    vocab: Vec<Vec<u8>>,
    scores: Vec<f32>,
    lookup: HashMap<Vec<u8>, u32>,
    /// How the vocabulary spells a space: " " (llama2.c) or "▁" (SentencePiece).
    space: &'static str,
    /// Token id of each byte's <0xXX> fallback token.
    byte_ids: [u32; 256],
    bos: u32,
    eos: u32,
}

pub const BOS: u32 = 1;
pub const EOS: u32 = 2;

impl Llama2cTokenizer {
    pub fn load(path: &Path, vocab_size: usize) -> Result<Self> {
        let b = std::fs::read(path).map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
        let mut at = 4usize;
        let mut vocab = Vec::with_capacity(vocab_size);
        let mut scores = Vec::with_capacity(vocab_size);
        let rd = |at: usize| -> Option<[u8; 4]> { b.get(at..at + 4).map(|s| [s[0], s[1], s[2], s[3]]) };
        for i in 0..vocab_size {
            let (Some(s), Some(l)) = (rd(at), rd(at + 4)) else {
                return Err(malformed(path, format!("tokenizer ends at token {i} of {vocab_size}")));
            };
            let len = i32::from_le_bytes(l);
            if len < 0 || at + 8 + len as usize > b.len() {
                return Err(malformed(path, format!("token {i} has a bad length {len}")));
            }
            scores.push(f32::from_le_bytes(s));
            vocab.push(b[at + 8..at + 8 + len as usize].to_vec());
            at += 8 + len as usize;
        }
        Ok(Self::from_parts(vocab, scores, " ", BOS, EOS))
    }

    /// A vocabulary given as tokens and scores (GGUF `llama` tokenizers).
    pub fn from_parts(vocab: Vec<Vec<u8>>, scores: Vec<f32>, space: &'static str, bos: u32, eos: u32) -> Self {
        let lookup: HashMap<Vec<u8>, u32> = vocab.iter().enumerate().map(|(i, v)| (v.clone(), i as u32)).collect();
        let byte_ids = std::array::from_fn(|b| lookup.get(format!("<0x{b:02X}>").as_bytes()).copied().unwrap_or(b as u32 + 3));
        Llama2cTokenizer { vocab, scores, lookup, space, byte_ids, bos, eos }
    }

    pub fn bos(&self) -> u32 {
        self.bos
    }

    pub fn eos(&self) -> u32 {
        self.eos
    }

    pub fn encode(&self, text: &str, bos: bool) -> Vec<u32> {
        let mut t = Vec::new();
        if bos {
            t.push(self.bos);
        }
        if !text.is_empty() {
            if let Some(&sp) = self.lookup.get(self.space.as_bytes()) {
                t.push(sp);
            }
        }
        let mut buf = [0u8; 4];
        for ch in text.chars() {
            let s = if ch == ' ' { self.space } else { ch.encode_utf8(&mut buf) };
            match self.lookup.get(s.as_bytes()) {
                Some(&id) => t.push(id),
                None => t.extend(s.bytes().map(|byte| self.byte_ids[byte as usize])),
            }
        }
        loop {
            let mut best: Option<(f32, usize, u32)> = None;
            for i in 0..t.len().saturating_sub(1) {
                let mut merged = self.vocab[t[i] as usize].clone();
                merged.extend_from_slice(&self.vocab[t[i + 1] as usize]);
                if let Some(&id) = self.lookup.get(&merged) {
                    let sc = self.scores[id as usize];
                    if best.is_none_or(|(b, _, _)| sc > b) {
                        best = Some((sc, i, id));
                    }
                }
            }
            let Some((_, i, id)) = best else { break };
            t[i] = id;
            t.remove(i + 1);
        }
        t
    }

    /// The bytes of `token` as printed after `prev`.
    pub fn piece(&self, prev: u32, token: u32) -> Vec<u8> {
        let p: &[u8] = self.vocab.get(token as usize).map(|v| &v[..]).unwrap_or(b"");
        if p.len() == 6 && p.starts_with(b"<0x") && p.ends_with(b">") {
            if let Ok(byte) = u8::from_str_radix(std::str::from_utf8(&p[3..5]).unwrap_or(""), 16) {
                return vec![byte];
            }
        }
        let text = String::from_utf8_lossy(p).replace(self.space, " ");
        let text = if prev == self.bos { text.strip_prefix(' ').unwrap_or(&text) } else { &text };
        text.as_bytes().to_vec()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }
}
