//! The KV-cache interface the forward pass talks to, and the plain
//! full-precision caches (f32, f16). Attention is a method of the cache so a
//! compressed cache can score keys on its own representation.

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
    /// Widen a row (vectorized for f16 through `half`'s F16C path).
    fn widen(src: &[Self], dst: &mut [f32]);
}
impl Elem for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn widen(src: &[Self], dst: &mut [f32]) {
        dst.copy_from_slice(src)
    }
}
impl Elem for f16 {
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn widen(src: &[Self], dst: &mut [f32]) {
        src.convert_to_f32_slice(dst)
    }
}

/// Dot product written with eight independent lanes so it vectorizes.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
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
        let s = self.shape;
        let (hd, kvd) = (s.head_dim, s.kv_dim());
        let group = s.n_heads / s.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let (keys, vals) = (&self.k[layer], &self.v[layer]);
        let head = |(h, o): (usize, &mut [f32])| {
            let qh = &q[h * hd..(h + 1) * hd];
            let kvh = h / group;
            let mut row = vec![0f32; hd];
            let mut scores: Vec<f32> = (0..=pos)
                .map(|t| {
                    T::widen(&keys[t * kvd + kvh * hd..t * kvd + (kvh + 1) * hd], &mut row);
                    dot(qh, &row) * scale
                })
                .collect();
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for sc in scores.iter_mut() {
                *sc = (*sc - max).exp();
                sum += *sc;
            }
            o.fill(0.0);
            for (t, p) in scores.iter().enumerate() {
                let w = p / sum;
                T::widen(&vals[t * kvd + kvh * hd..t * kvd + (kvh + 1) * hd], &mut row);
                for (oi, vi) in o.iter_mut().zip(&row) {
                    *oi += w * vi;
                }
            }
        };
        // Split heads over threads only when each head has real work.
        if pos >= 64 {
            out.par_chunks_mut(hd).enumerate().for_each(head);
        } else {
            out.chunks_mut(hd).enumerate().for_each(head);
        }
    }

    fn bytes_for(&self, tokens: usize) -> usize {
        2 * self.shape.n_layers * tokens * self.shape.kv_dim() * std::mem::size_of::<T>()
    }

    fn capacity(&self) -> usize {
        self.shape.max_seq
    }
}
