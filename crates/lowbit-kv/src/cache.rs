//! The interface the forward pass talks to. Attention is a method of the
//! cache so a compressed cache can score keys on its own representation.

use rayon::prelude::*;

/// Geometry of a model's attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvShape {
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub max_seq: usize,
}

impl KvShape {
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    /// Query heads per KV head (grouped-query attention).
    pub fn group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

pub trait KvCache: Send + Sync {
    /// Store the keys and values of `n` consecutive positions pos0.. of
    /// `layer` (`k` and `v` hold n·kv_dim floats). Positions at or past the
    /// current length are appended; an earlier `pos0` first drops every
    /// position from `pos0` on.
    fn store(&mut self, layer: usize, pos0: usize, k: &[f32], v: &[f32]);
    /// Causal attention of one query (all heads, n_heads·head_dim floats)
    /// at position `pos` over positions 0..=pos; writes n_heads·head_dim.
    fn attend(&self, layer: usize, pos: usize, q: &[f32], out: &mut [f32]);
    /// Bytes held for `tokens` positions across all layers, every overhead
    /// included.
    fn bytes_for(&self, tokens: usize) -> usize;
    /// Positions the cache can hold.
    fn capacity(&self) -> usize;
    /// Attention of `n` consecutive queries at positions pos0..pos0+n
    /// (prefill); query i sees the cache as it was right after position
    /// pos0+i was stored. The default answers each with [`KvCache::attend`].
    fn attend_batch(&self, layer: usize, pos0: usize, n: usize, q: &[f32], out: &mut [f32]) {
        let w = q.len() / n;
        out.par_chunks_mut(w).enumerate().for_each(|(i, o)| self.attend(layer, pos0 + i, &q[i * w..(i + 1) * w], o));
    }
}
