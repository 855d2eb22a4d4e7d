//! llama2.c "legacy" checkpoints: a 7×i32 header (dim, hidden, layers,
//! heads, kv heads, vocab — negative when the classifier is not shared —,
//! max seq), then f32 tensors in a fixed order. Weights stay f32 (or are
//! re-encoded into another format with [`load_as`]).

use std::path::Path;

use lowbit_quant::Format;

use crate::config::Config;
use crate::error::{malformed, EngineError, Result};
use crate::matrix::QMatrix;
use crate::model::{Layer, Model};

pub fn load(path: &Path) -> Result<Model> {
    load_as(path, None)
}

/// Load, storing the 2-D weights in `format` (f32 when `None`).
pub fn load_as(path: &Path, format: Option<&Format>) -> Result<Model> {
    let bytes = std::fs::read(path).map_err(|source| EngineError::Io { path: path.to_path_buf(), source })?;
    if bytes.len() < 28 {
        return Err(malformed(path, format!("{} bytes is too short for the 28-byte llama2.c header", bytes.len())));
    }
    let h: Vec<i32> = bytes[..28].chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    if h.iter().enumerate().any(|(i, &v)| v == 0 || (i != 5 && v < 0)) || h[0] % h[3] != 0 || h[3] % h[4].max(1) != 0 {
        return Err(malformed(path, format!("implausible llama2.c header {h:?}")));
    }
    let shared = h[5] > 0;
    let config = Config {
        dim: h[0] as usize,
        hidden: h[1] as usize,
        n_layers: h[2] as usize,
        n_heads: h[3] as usize,
        n_kv_heads: h[4] as usize,
        vocab: h[5].unsigned_abs() as usize,
        max_seq: h[6] as usize,
        rope_theta: 10000.0,
        rms_eps: 1e-5,
        rope_neox: false,
    };
    let c = &config;
    let floats: Vec<f32> = bytes[28..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let mut at = 0usize;
    let mut take = |n: usize, what: &str| -> Result<Vec<f32>> {
        if at + n > floats.len() {
            return Err(malformed(path, format!("file ends inside tensor `{what}` ({} floats, need {})", floats.len(), at + n)));
        }
        at += n;
        Ok(floats[at - n..at].to_vec())
    };
    let (dim, kvd, hid, nl) = (c.dim, c.kv_dim(), c.hidden, c.n_layers);
    let f32f = Format::parse("f32")?;
    let fmt = format.cloned().unwrap_or(f32f.clone());
    let mat = |w: &[f32], rows: usize, cols: usize| QMatrix::from_f32(fmt.clone(), rows, cols, w);
    let embed = take(c.vocab * dim, "token_embedding")?;
    let rms_att = take(nl * dim, "rms_att")?;
    let wq = take(nl * dim * dim, "wq")?;
    let wk = take(nl * kvd * dim, "wk")?;
    let wv = take(nl * kvd * dim, "wv")?;
    let wo = take(nl * dim * dim, "wo")?;
    let rms_ffn = take(nl * dim, "rms_ffn")?;
    let w1 = take(nl * hid * dim, "w1")?;
    let w2 = take(nl * dim * hid, "w2")?;
    let w3 = take(nl * hid * dim, "w3")?;
    let norm = take(dim, "rms_final")?;
    let head = c.head_dim();
    take(c.max_seq * head / 2, "freq_cis_real")?;
    take(c.max_seq * head / 2, "freq_cis_imag")?;
    let output = if shared { None } else { Some(take(c.vocab * dim, "wcls")?) };
    let mut layers = Vec::with_capacity(nl);
    for l in 0..nl {
        let sl = |w: &[f32], n: usize| w[l * n..(l + 1) * n].to_vec();
        layers.push(Layer {
            attn_norm: sl(&rms_att, dim),
            wq: mat(&sl(&wq, dim * dim), dim, dim)?,
            wk: mat(&sl(&wk, kvd * dim), kvd, dim)?,
            wv: mat(&sl(&wv, kvd * dim), kvd, dim)?,
            bias_q: None,
            bias_k: None,
            bias_v: None,
            wo: mat(&sl(&wo, dim * dim), dim, dim)?,
            ffn_norm: sl(&rms_ffn, dim),
            w_gate: mat(&sl(&w1, hid * dim), hid, dim)?,
            w_up: mat(&sl(&w3, hid * dim), hid, dim)?,
            w_down: mat(&sl(&w2, dim * hid), dim, hid)?,
        });
    }
    // The embedding is read row by row; keep it exact.
    let embed_m = QMatrix::from_f32(f32f, c.vocab, dim, &embed)?;
    let output = match output {
        Some(w) => mat(&w, c.vocab, dim)?,
        None => mat(&embed, c.vocab, dim)?,
    };
    Ok(Model { config, embed: embed_m, layers, norm, output })
}
