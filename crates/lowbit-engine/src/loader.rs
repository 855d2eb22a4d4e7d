//! Open any supported model file: GGUF (by its magic) or a llama2.c
//! checkpoint (with its tokenizer file).

use std::path::{Path, PathBuf};

use crate::error::{malformed, EngineError, Result};
use crate::model::Model;
use crate::tokenizer::{llama2c::Llama2cTokenizer, Tokenizer};

pub struct Loaded {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<String>,
    /// Bytes of weights as stored.
    pub weight_bytes: usize,
}

/// Bytes of all weights as stored (a tied output matrix counted once).
pub fn weight_bytes(m: &Model) -> usize {
    let mut b = m.embed.bytes() + m.norm.len() * 4;
    if !std::ptr::eq(m.output.row(0).as_ptr(), m.embed.row(0).as_ptr()) {
        b += m.output.bytes();
    }
    for l in &m.layers {
        b += [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].iter().map(|w| w.bytes()).sum::<usize>();
        b += (l.attn_norm.len() + l.ffn_norm.len()) * 4;
    }
    b
}

/// A tokenizer file: tokenizer.json (Hugging Face) or llama2.c's format.
fn tokenizer_file(p: &Path, vocab: usize) -> Result<Tokenizer> {
    if p.extension().is_some_and(|e| e == "json") {
        Ok(Tokenizer::Hf(crate::tokenizer::hf::HfTokenizer::from_file(p)?))
    } else {
        Ok(Tokenizer::Llama2c(Llama2cTokenizer::load(p, vocab)?))
    }
}

/// Load `path`: a GGUF file, a Hugging Face folder (config.json +
/// *.safetensors + tokenizer.json), or a llama2.c checkpoint, whose
/// tokenizer is `tokenizer`, else `tok<vocab>.bin` / `tokenizer.bin` beside it.
pub fn load(path: &Path, tokenizer: Option<&Path>) -> Result<Loaded> {
    if path.is_dir() {
        let model = crate::safetensors_hf::load(path)?;
        let tok_path = tokenizer.map(Path::to_path_buf).unwrap_or_else(|| path.join("tokenizer.json"));
        let tokenizer = tokenizer_file(&tok_path, model.config.vocab)?;
        let weight_bytes = weight_bytes(&model);
        return Ok(Loaded { model, tokenizer, chat_template: None, weight_bytes });
    }
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
        f.read_exact(&mut magic).map_err(|_| malformed(path, "shorter than 4 bytes"))?;
    }
    if &magic == b"GGUF" {
        let g = crate::gguf::load(path)?;
        let weight_bytes = weight_bytes(&g.model);
        return Ok(Loaded { model: g.model, tokenizer: g.tokenizer, chat_template: g.chat_template, weight_bytes });
    }
    let model = crate::llama2c::load(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let candidates: Vec<PathBuf> = match tokenizer {
        Some(t) => vec![t.to_path_buf()],
        None => vec![dir.join(format!("tok{}.bin", model.config.vocab)), dir.join("tokenizer.bin")],
    };
    let tok_path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
        malformed(path, format!("llama2.c checkpoint without a tokenizer: pass --tokenizer (looked for {:?})", candidates))
    })?;
    let tokenizer = tokenizer_file(tok_path, model.config.vocab)?;
    let weight_bytes = weight_bytes(&model);
    Ok(Loaded { model, tokenizer, chat_template: None, weight_bytes })
}
