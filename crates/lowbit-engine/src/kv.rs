//! The KV-cache interface the forward pass talks to, and the plain
//! full-precision caches (f32, f16). Attention is a method of the cache so a
//! compressed cache can score keys on its own representation.

use std::borrow::Cow;

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

pub trait KvCache: Send + Sync {
    /// Store the key and value (kv_dim floats each) of `layer` at `pos`.
    fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]);
    /// Causal attention of one query (all heads, n_heads·head_dim floats)
    /// at position `pos` over positions 0..=pos; writes n_heads·head_dim.
    fn attend(&self, layer: usize, pos: usize, q: &[f32], out: &mut [f32]);
    /// Bytes held for `tokens` positions across all layers.
    fn bytes_for(&self, tokens: usize) -> usize;
    /// Positions the cache can hold.
    fn capacity(&self) -> usize;
    /// Attention of `n` consecutive queries at positions pos0..pos0+n
    /// (prefill). The default answers each with [`KvCache::attend`].
    fn attend_batch(&self, layer: usize, pos0: usize, n: usize, q: &[f32], out: &mut [f32]) {
        let w = q.len() / n;
        out.par_chunks_mut(w).enumerate().for_each(|(i, o)| self.attend(layer, pos0 + i, &q[i * w..(i + 1) * w], o));
    }
}

/// Geometry shared by the caches.
#[derive(Clone, Copy, Debug)]
pub struct KvShape {
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub max_seq: usize,
}

impl KvShape {
    fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// Element storage of a plain cache.
pub trait Elem: Copy + Send + Sync + Default {
    fn from_f32(v: f32) -> Self;
    /// Rows as f32: borrowed when stored as f32, else widened (vectorized
    /// for f16 through `half`'s F16C path).
    fn widen(src: &[Self]) -> Cow<'_, [f32]>;
}
impl Elem for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn widen(src: &[Self]) -> Cow<'_, [f32]> {
        Cow::Borrowed(src)
    }
}
impl Elem for f16 {
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn widen(src: &[Self]) -> Cow<'_, [f32]> {
        let mut out = vec![0f32; src.len()];
        src.convert_to_f32_slice(&mut out);
        Cow::Owned(out)
    }
}

/// One query's attention over f32 key/value rows 0..=pos (kv_dim each).
fn attend_rows(s: &KvShape, keys: &[f32], vals: &[f32], pos: usize, q: &[f32], out: &mut [f32], par_heads: bool) {
    let (hd, kvd) = (s.head_dim, s.kv_dim());
    let group = s.n_heads / s.n_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let head = |(h, o): (usize, &mut [f32])| {
        let qh = &q[h * hd..(h + 1) * hd];
        let kvh = h / group;
        let mut scores: Vec<f32> =
            (0..=pos).map(|t| lowbit_quant::simd::dot_f32(qh, &keys[t * kvd + kvh * hd..t * kvd + (kvh + 1) * hd]) * scale).collect();
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f32;
        for sc in scores.iter_mut() {
            *sc = (*sc - max).exp();
            sum += *sc;
        }
        o.fill(0.0);
        for (t, p) in scores.iter().enumerate() {
            let w = p / sum;
            for (oi, vi) in o.iter_mut().zip(&vals[t * kvd + kvh * hd..t * kvd + (kvh + 1) * hd]) {
                *oi += w * vi;
            }
        }
    };
    if par_heads {
        out.par_chunks_mut(hd).enumerate().for_each(head);
    } else {
        out.chunks_mut(hd).enumerate().for_each(head);
    }
}

/// A dense cache: keys and values per layer, position-major.
pub struct DenseCache<T: Elem> {
    shape: KvShape,
    k: Vec<Vec<T>>,
    v: Vec<Vec<T>>,
}

pub type F32Cache = DenseCache<f32>;
pub type F16Cache = DenseCache<f16>;

impl<T: Elem> DenseCache<T> {
    pub fn new(shape: KvShape) -> Self {
        let n = shape.max_seq * shape.kv_dim();
        DenseCache { shape, k: vec![vec![T::default(); n]; shape.n_layers], v: vec![vec![T::default(); n]; shape.n_layers] }
    }
}

impl<T: Elem> DenseCache<T> {
    /// Keys and values of positions 0..len of `layer` as f32, widened once
    /// per call for every head that reads them.
    fn widened(&self, layer: usize, len: usize) -> (Cow<'_, [f32]>, Cow<'_, [f32]>) {
        let d = self.shape.kv_dim();
        (T::widen(&self.k[layer][..len * d]), T::widen(&self.v[layer][..len * d]))
    }
}

impl<T: Elem> KvCache for DenseCache<T> {
    fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let d = self.shape.kv_dim();
        for (dst, &s) in self.k[layer][pos * d..(pos + 1) * d].iter_mut().zip(k) {
            *dst = T::from_f32(s);
        }
        for (dst, &s) in self.v[layer][pos * d..(pos + 1) * d].iter_mut().zip(v) {
            *dst = T::from_f32(s);
        }
    }

    fn attend(&self, layer: usize, pos: usize, q: &[f32], out: &mut [f32]) {
        let (k, v) = self.widened(layer, pos + 1);
        // Split heads over threads only when each head has real work.
        attend_rows(&self.shape, &k, &v, pos, q, out, pos >= 64);
    }

    fn attend_batch(&self, layer: usize, pos0: usize, n: usize, q: &[f32], out: &mut [f32]) {
        let (k, v) = self.widened(layer, pos0 + n);
        let w = q.len() / n;
        out.par_chunks_mut(w)
            .enumerate()
            .for_each(|(i, o)| attend_rows(&self.shape, &k, &v, pos0 + i, &q[i * w..(i + 1) * w], o, false));
    }

    fn bytes_for(&self, tokens: usize) -> usize {
        2 * self.shape.n_layers * tokens * self.shape.kv_dim() * std::mem::size_of::<T>()
    }

    fn capacity(&self) -> usize {
        self.shape.max_seq
    }
}
