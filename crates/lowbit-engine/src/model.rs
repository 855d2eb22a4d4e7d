//! The Llama-family forward pass: RMSNorm, RoPE (adjacent pairs, as GGUF
//! llama and llama2.c store q/k), grouped-query attention through a
//! [`KvCache`], SwiGLU MLP, optional q/k/v biases (Qwen2), tied or separate
//! output matrix. Single-token decode and batched prefill.

use crate::config::Config;
use crate::error::{EngineError, Result};
use crate::kv::{KvCache, KvShape, Policy};
use crate::matrix::QMatrix;

pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: QMatrix,
    pub wk: QMatrix,
    pub wv: QMatrix,
    pub bias_q: Option<Vec<f32>>,
    pub bias_k: Option<Vec<f32>>,
    pub bias_v: Option<Vec<f32>>,
    pub wo: QMatrix,
    pub ffn_norm: Vec<f32>,
    pub w_gate: QMatrix,
    pub w_up: QMatrix,
    pub w_down: QMatrix,
}

/// Tensor names of one layer's weights in a file format (after the
/// per-layer prefix), so loaders share one assembly routine.
pub(crate) struct LayerNames {
    pub attn_norm: &'static str,
    pub wq: &'static str,
    pub wk: &'static str,
    pub wv: &'static str,
    pub bq: &'static str,
    pub bk: &'static str,
    pub bv: &'static str,
    pub wo: &'static str,
    pub ffn_norm: &'static str,
    pub gate: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

/// Build every layer from a loader's accessors: `matrix(name, rows, cols)`,
/// `vector(name, len)` and `optional(name, len)` (biases).
pub(crate) fn assemble_layers(
    c: &Config,
    prefix: impl Fn(usize) -> String,
    names: &LayerNames,
    matrix: impl Fn(&str, usize, usize) -> Result<QMatrix>,
    vector: impl Fn(&str, usize) -> Result<Vec<f32>>,
    optional: impl Fn(&str, usize) -> Result<Option<Vec<f32>>>,
) -> Result<Vec<Layer>> {
    let (dim, kvd, hid) = (c.dim, c.kv_dim(), c.hidden);
    (0..c.n_layers)
        .map(|l| {
            let n = |s: &str| format!("{}{s}", prefix(l));
            Ok(Layer {
                attn_norm: vector(&n(names.attn_norm), dim)?,
                wq: matrix(&n(names.wq), dim, dim)?,
                wk: matrix(&n(names.wk), kvd, dim)?,
                wv: matrix(&n(names.wv), kvd, dim)?,
                bias_q: optional(&n(names.bq), dim)?,
                bias_k: optional(&n(names.bk), kvd)?,
                bias_v: optional(&n(names.bv), kvd)?,
                wo: matrix(&n(names.wo), dim, dim)?,
                ffn_norm: vector(&n(names.ffn_norm), dim)?,
                w_gate: matrix(&n(names.gate), hid, dim)?,
                w_up: matrix(&n(names.up), hid, dim)?,
                w_down: matrix(&n(names.down), dim, hid)?,
            })
        })
        .collect()
}

/// Tokens per forward call when a long input runs in pieces (llama.cpp's
/// default micro-batch, so pp512 is one call).
pub const UBATCH: usize = 512;

pub struct Model {
    pub config: Config,
    pub embed: QMatrix,
    pub layers: Vec<Layer>,
    pub norm: Vec<f32>,
    pub output: QMatrix,
}

fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let ss = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32 + eps;
    let s = 1.0 / ss.sqrt();
    for ((o, v), g) in out.iter_mut().zip(x).zip(w) {
        *o = v * s * g;
    }
}

/// Rotate each head: pair j (of head_dim/2) turns by pos·theta^(−2j/head_dim).
/// Pairs are (2j, 2j+1), or (j, j + head_dim/2) in the NeoX layout.
fn rope(x: &mut [f32], pos: usize, head_dim: usize, theta: f32, neox: bool) {
    let half = head_dim / 2;
    for head in x.chunks_exact_mut(head_dim) {
        for j in 0..half {
            let freq = 1.0 / theta.powf((2 * j) as f32 / head_dim as f32);
            let (s, c) = (pos as f32 * freq).sin_cos();
            let (ia, ib) = if neox { (j, j + half) } else { (2 * j, 2 * j + 1) };
            let (a, b) = (head[ia], head[ib]);
            head[ia] = a * c - b * s;
            head[ib] = a * s + b * c;
        }
    }
}

fn add_bias(x: &mut [f32], b: &Option<Vec<f32>>) {
    if let Some(b) = b {
        for (v, bb) in x.iter_mut().zip(b) {
            *v += bb;
        }
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

impl Model {
    pub fn kv_shape(&self, max_seq: usize) -> KvShape {
        let c = &self.config;
        KvShape { n_layers: c.n_layers, n_heads: c.n_heads, n_kv_heads: c.n_kv_heads, head_dim: c.head_dim(), max_seq }
    }

    /// A KV cache of `max_seq` positions following `policy`.
    pub fn new_cache(&self, policy: &Policy, max_seq: usize) -> Result<Box<dyn KvCache>> {
        Ok(lowbit_kv::new_cache(self.kv_shape(max_seq), policy)?)
    }

    fn check_token(&self, t: u32) -> Result<()> {
        if (t as usize) < self.config.vocab {
            Ok(())
        } else {
            Err(EngineError::BadToken { id: t, vocab: self.config.vocab })
        }
    }

    /// [`Model::forward_pieces`] in pieces of [`UBATCH`] tokens.
    pub fn forward_ubatched(&self, tokens: &[u32], pos0: usize, cache: &mut dyn KvCache, all_logits: bool, sink: impl FnMut(usize, &[f32]) -> Result<()>) -> Result<()> {
        self.forward_pieces(tokens, pos0, cache, all_logits, UBATCH, sink)
    }

    /// The last token's logits after running `tokens` (a prompt of any
    /// length) at positions pos0.. in pieces of [`UBATCH`].
    pub fn prefill(&self, tokens: &[u32], pos0: usize, cache: &mut dyn KvCache) -> Result<Vec<f32>> {
        let mut last = Vec::new();
        self.forward_ubatched(tokens, pos0, cache, false, |_, l| {
            last = l.to_vec();
            Ok(())
        })?;
        Ok(last)
    }

    /// [`Model::forward`] over `tokens` in pieces of at most `piece` tokens,
    /// with the same results: activations, logits and a compressed cache's
    /// raw rows awaiting release then scale with the piece, not with the
    /// input. With `all_logits`, `sink(i, rows)` receives each piece's
    /// logits (rows for tokens i..); without, once, the last token's.
    pub fn forward_pieces(
        &self,
        tokens: &[u32],
        pos0: usize,
        cache: &mut dyn KvCache,
        all_logits: bool,
        piece: usize,
        mut sink: impl FnMut(usize, &[f32]) -> Result<()>,
    ) -> Result<()> {
        if pos0 + tokens.len() > cache.capacity() {
            return Err(EngineError::ContextOverflow { tokens: pos0 + tokens.len(), ctx: cache.capacity() });
        }
        if tokens.is_empty() {
            return Err(EngineError::Tokenizer("no tokens to run".into()));
        }
        let piece = piece.max(1);
        for (k, part) in tokens.chunks(piece).enumerate() {
            let i = k * piece;
            let logits = self.forward(part, pos0 + i, cache, all_logits)?;
            if all_logits {
                sink(i, &logits)?;
            } else if i + part.len() == tokens.len() {
                sink(tokens.len() - 1, &logits)?;
            }
        }
        Ok(())
    }

    /// Run `tokens` at positions pos0.. through the model, filling the
    /// cache; returns logits for every token (`all_logits`) or the last.
    /// Memory grows with `tokens.len()`: long inputs go through
    /// [`Model::prefill`] / [`Model::forward_ubatched`].
    pub fn forward(&self, tokens: &[u32], pos0: usize, cache: &mut dyn KvCache, all_logits: bool) -> Result<Vec<f32>> {
        let c = &self.config;
        let n = tokens.len();
        if n == 0 {
            return Err(EngineError::Tokenizer("no tokens to run".into()));
        }
        if pos0 + n > cache.capacity() {
            return Err(EngineError::ContextOverflow { tokens: pos0 + n, ctx: cache.capacity() });
        }
        for &t in tokens {
            self.check_token(t)?;
        }
        let (dim, hd, kvd) = (c.dim, c.head_dim(), c.kv_dim());
        let mut x = vec![0f32; n * dim];
        for (i, &t) in tokens.iter().enumerate() {
            self.embed.row_f32(t as usize, &mut x[i * dim..(i + 1) * dim]);
        }
        let mut xb = vec![0f32; n * dim];
        let mut q = vec![0f32; n * dim];
        let mut k = vec![0f32; n * kvd];
        let mut v = vec![0f32; n * kvd];
        let mut att = vec![0f32; n * dim];
        let mut proj = vec![0f32; n * dim];
        let mut gate = vec![0f32; n * c.hidden];
        let mut up = vec![0f32; n * c.hidden];
        let mm = |w: &QMatrix, input: &[f32], out: &mut [f32]| {
            if n == 1 {
                w.matvec(input, out)
            } else {
                w.matmul(input, n, out)
            }
        };
        for (l, layer) in self.layers.iter().enumerate() {
            for i in 0..n {
                rmsnorm(&x[i * dim..(i + 1) * dim], &layer.attn_norm, c.rms_eps, &mut xb[i * dim..(i + 1) * dim]);
            }
            if n == 1 {
                QMatrix::matvec_many(&[&layer.wq, &layer.wk, &layer.wv], &xb, &mut [&mut q, &mut k, &mut v])?;
            } else {
                mm(&layer.wq, &xb, &mut q)?;
                mm(&layer.wk, &xb, &mut k)?;
                mm(&layer.wv, &xb, &mut v)?;
            }
            for i in 0..n {
                let (qi, ki, vi) = (&mut q[i * dim..(i + 1) * dim], &mut k[i * kvd..(i + 1) * kvd], &mut v[i * kvd..(i + 1) * kvd]);
                add_bias(qi, &layer.bias_q);
                add_bias(ki, &layer.bias_k);
                add_bias(vi, &layer.bias_v);
                rope(qi, pos0 + i, hd, c.rope_theta, c.rope_neox);
                rope(ki, pos0 + i, hd, c.rope_theta, c.rope_neox);
            }
            cache.store(l, pos0, &k, &v);
            if n == 1 {
                cache.attend(l, pos0, &q, &mut att);
            } else {
                cache.attend_batch(l, pos0, n, &q, &mut att);
            }
            mm(&layer.wo, &att, &mut proj)?;
            for (a, b) in x.iter_mut().zip(&proj) {
                *a += b;
            }
            for i in 0..n {
                rmsnorm(&x[i * dim..(i + 1) * dim], &layer.ffn_norm, c.rms_eps, &mut xb[i * dim..(i + 1) * dim]);
            }
            if n == 1 {
                QMatrix::matvec_many(&[&layer.w_gate, &layer.w_up], &xb, &mut [&mut gate, &mut up])?;
            } else {
                mm(&layer.w_gate, &xb, &mut gate)?;
                mm(&layer.w_up, &xb, &mut up)?;
            }
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = silu(*g) * u;
            }
            mm(&layer.w_down, &gate, &mut proj)?;
            for (a, b) in x.iter_mut().zip(&proj) {
                *a += b;
            }
        }
        let rows: Vec<usize> = if all_logits { (0..n).collect() } else { vec![n - 1] };
        let mut h = vec![0f32; rows.len() * dim];
        for (j, &i) in rows.iter().enumerate() {
            rmsnorm(&x[i * dim..(i + 1) * dim], &self.norm, c.rms_eps, &mut h[j * dim..(j + 1) * dim]);
        }
        let mut logits = vec![0f32; rows.len() * c.vocab];
        if rows.len() == 1 {
            self.output.matvec(&h, &mut logits)?;
        } else {
            self.output.matmul(&h, rows.len(), &mut logits)?;
        }
        Ok(logits)
    }
}
