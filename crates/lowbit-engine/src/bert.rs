//! BERT sentence encoders (all-MiniLM-L6-v2 and its family): a Hugging
//! Face folder with config.json, model.safetensors and tokenizer.json.
//! Forward pass: word + position + token-type embeddings, LayerNorm, then
//! post-norm encoder layers (multi-head self-attention, GELU MLP); mean
//! pooling over tokens and L2 normalization, as sentence-transformers does.
//! Weights stay in the memory-mapped file and run through [`QMatrix`].

use std::path::Path;

use rayon::prelude::*;
use serde_json::Value;

use crate::error::{malformed, EngineError, Result};
use crate::matrix::QMatrix;
use crate::safetensors_hf::TensorTable;

struct Linear {
    w: QMatrix,
    b: Vec<f32>,
}

impl Linear {
    /// out[t] = W·x[t] + b for n rows.
    fn forward(&self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let mut out = vec![0f32; n * self.w.rows];
        self.w.matmul(x, n, &mut out)?;
        for row in out.chunks_exact_mut(self.w.rows) {
            for (o, b) in row.iter_mut().zip(&self.b) {
                *o += b;
            }
        }
        Ok(out)
    }
}

struct Norm {
    w: Vec<f32>,
    b: Vec<f32>,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln1: Norm,
    up: Linear,
    down: Linear,
    ln2: Norm,
}

pub struct Bert {
    pub dim: usize,
    heads: usize,
    eps: f32,
    max_len: usize,
    words: QMatrix,
    positions: QMatrix,
    token_type0: Vec<f32>,
    ln0: Norm,
    layers: Vec<Layer>,
    tokenizer: tokenizers::Tokenizer,
}

fn layer_norm(x: &mut [f32], n: &Norm, eps: f32) {
    let d = n.w.len();
    for row in x.chunks_exact_mut(d) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(&n.w).zip(&n.b) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2))
}

impl Bert {
    /// Load a sentence-encoder folder.
    pub fn load(dir: &Path) -> Result<Bert> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|source| EngineError::Io { path: cfg_path.clone(), source })?;
        let cfg: Value = serde_json::from_str(&text).map_err(|e| malformed(&cfg_path, e.to_string()))?;
        let arch = cfg["model_type"].as_str().unwrap_or("").to_string();
        if arch != "bert" {
            return Err(EngineError::UnsupportedArch { path: cfg_path, arch });
        }
        let num = |k: &str| cfg[k].as_u64().map(|v| v as usize).ok_or_else(|| malformed(&cfg_path, format!("`{k}` is missing")));
        let (dim, heads, layers, hidden, vocab, max_pos) =
            (num("hidden_size")?, num("num_attention_heads")?, num("num_hidden_layers")?, num("intermediate_size")?, num("vocab_size")?, num("max_position_embeddings")?);
        if heads == 0 || dim % heads != 0 {
            return Err(malformed(&cfg_path, "hidden_size is not a multiple of num_attention_heads"));
        }
        if cfg["hidden_act"].as_str().unwrap_or("gelu") != "gelu" {
            return Err(malformed(&cfg_path, "only hidden_act = gelu is supported"));
        }
        let eps = cfg["layer_norm_eps"].as_f64().unwrap_or(1e-12) as f32;
        // sentence-transformers truncates at max_seq_length (256 for MiniLM).
        let st: Option<Value> = std::fs::read_to_string(dir.join("sentence_bert_config.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
        let max_len = st.and_then(|v| v["max_seq_length"].as_u64()).map_or(max_pos, |m| m as usize).min(max_pos);

        let t = TensorTable::open(dir)?;
        let lin = |p: &str, rows: usize, cols: usize| -> Result<Linear> { Ok(Linear { w: t.matrix(&format!("{p}.weight"), rows, cols)?, b: t.vector(&format!("{p}.bias"), rows)? }) };
        let norm = |p: &str| -> Result<Norm> { Ok(Norm { w: t.vector(&format!("{p}.weight"), dim)?, b: t.vector(&format!("{p}.bias"), dim)? }) };
        let types = t.matrix("embeddings.token_type_embeddings.weight", cfg["type_vocab_size"].as_u64().unwrap_or(2) as usize, dim)?;
        let mut token_type0 = vec![0f32; dim];
        types.row_f32(0, &mut token_type0);
        let layers = (0..layers)
            .map(|l| {
                let p = format!("encoder.layer.{l}");
                Ok(Layer {
                    q: lin(&format!("{p}.attention.self.query"), dim, dim)?,
                    k: lin(&format!("{p}.attention.self.key"), dim, dim)?,
                    v: lin(&format!("{p}.attention.self.value"), dim, dim)?,
                    o: lin(&format!("{p}.attention.output.dense"), dim, dim)?,
                    ln1: norm(&format!("{p}.attention.output.LayerNorm"))?,
                    up: lin(&format!("{p}.intermediate.dense"), hidden, dim)?,
                    down: lin(&format!("{p}.output.dense"), dim, hidden)?,
                    ln2: norm(&format!("{p}.output.LayerNorm"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| EngineError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        // The shipped tokenizer pads every input to 128: embed real tokens only.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(Bert {
            dim,
            heads,
            eps,
            max_len,
            words: t.matrix("embeddings.word_embeddings.weight", vocab, dim)?,
            positions: t.matrix("embeddings.position_embeddings.weight", max_pos, dim)?,
            token_type0,
            ln0: norm("embeddings.LayerNorm")?,
            layers,
            tokenizer,
        })
    }

    /// Token ids with [CLS] … [SEP], truncated to the model's length.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, true).map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let ids = enc.get_ids();
        Ok(ids[..ids.len().min(self.max_len)].to_vec())
    }

    /// The unit-norm sentence embedding of `text`.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        let ids = self.tokenize(text)?;
        let (n, d) = (ids.len(), self.dim);
        let mut x = vec![0f32; n * d];
        let mut tmp = vec![0f32; d];
        for (i, (&id, row)) in ids.iter().zip(x.chunks_exact_mut(d)).enumerate() {
            self.words.row_f32(id as usize, row);
            self.positions.row_f32(i, &mut tmp);
            for ((v, p), t) in row.iter_mut().zip(&tmp).zip(&self.token_type0) {
                *v += p + t;
            }
        }
        layer_norm(&mut x, &self.ln0, self.eps);
        let (h, hd) = (self.heads, d / self.heads);
        let scale = 1.0 / (hd as f32).sqrt();
        for l in &self.layers {
            let (q, k, v) = (l.q.forward(&x, n)?, l.k.forward(&x, n)?, l.v.forward(&x, n)?);
            let mut ctx = vec![0f32; n * d];
            let mut s = vec![0f32; n];
            for head in 0..h {
                let o = head * hd;
                for i in 0..n {
                    let qi = &q[i * d + o..i * d + o + hd];
                    for (j, sj) in s.iter_mut().enumerate() {
                        *sj = qi.iter().zip(&k[j * d + o..j * d + o + hd]).map(|(a, b)| a * b).sum::<f32>() * scale;
                    }
                    let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut z = 0f32;
                    for sj in s.iter_mut() {
                        *sj = (*sj - m).exp();
                        z += *sj;
                    }
                    let out = &mut ctx[i * d + o..i * d + o + hd];
                    for (j, sj) in s.iter().enumerate() {
                        for (c, vv) in out.iter_mut().zip(&v[j * d + o..j * d + o + hd]) {
                            *c += sj / z * vv;
                        }
                    }
                }
            }
            let a = l.o.forward(&ctx, n)?;
            x.iter_mut().zip(&a).for_each(|(x, a)| *x += a);
            layer_norm(&mut x, &l.ln1, self.eps);
            let mut up = l.up.forward(&x, n)?;
            up.iter_mut().for_each(|u| *u = gelu(*u));
            let down = l.down.forward(&up, n)?;
            x.iter_mut().zip(&down).for_each(|(x, a)| *x += a);
            layer_norm(&mut x, &l.ln2, self.eps);
        }
        let mut pooled = vec![0f32; d];
        for row in x.chunks_exact(d) {
            pooled.iter_mut().zip(row).for_each(|(p, v)| *p += v / n as f32);
        }
        let norm = pooled.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        pooled.iter_mut().for_each(|v| *v /= norm);
        Ok(pooled)
    }

    /// Embeddings of many texts (threads over texts), `progress(done)`
    /// called as they finish.
    pub fn embed_all(&self, texts: &[String], progress: &(dyn Fn(usize) + Sync)) -> Result<Vec<f32>> {
        let done = std::sync::atomic::AtomicUsize::new(0);
        let rows: Vec<Vec<f32>> = texts
            .par_iter()
            .map(|t| {
                let e = self.embed(t);
                progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
                e
            })
            .collect::<Result<_>>()?;
        Ok(rows.concat())
    }
}
