//! The uncompressed f32 reference cache (policy `f32`): keys and values per
//! layer, position-major. Its attention runs the same online-softmax loop
//! as the paged cache, so benchmarks compare storage, not loops.

use rayon::prelude::*;

use crate::attend::HeadAcc;
use crate::cache::{KvCache, KvShape};

/// Rows folded per online-softmax step.
const CHUNK: usize = 32;

pub struct DenseCache {
    shape: KvShape,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: Vec<usize>,
}

impl DenseCache {
    pub fn new(shape: KvShape) -> Self {
        let n = shape.max_seq * shape.kv_dim();
        DenseCache { shape, k: vec![vec![0.0; n]; shape.n_layers], v: vec![vec![0.0; n]; shape.n_layers], len: vec![0; shape.n_layers] }
    }

    /// One query (all heads) at `pos` against rows 0..=pos of `layer`.
    fn attend_one(&self, layer: usize, pos: usize, q: &[f32], out: &mut [f32], par: bool) {
        let s = &self.shape;
        let (d, kvd, g) = (s.head_dim, s.kv_dim(), s.group());
        let scale = 1.0 / (d as f32).sqrt();
        let head = |(h, o): (usize, &mut [f32])| {
            let qs: Vec<Vec<f32>> = (0..g).map(|j| q[(h * g + j) * d..(h * g + j + 1) * d].iter().map(|x| x * scale).collect()).collect();
            let mut accs = vec![HeadAcc::new(d); g];
            let (mut kb, mut vb) = (vec![0f32; CHUNK * d], vec![0f32; CHUNK * d]);
            let mut scores = [0f32; CHUNK];
            for t0 in (0..=pos).step_by(CHUNK) {
                let n = CHUNK.min(pos + 1 - t0);
                for i in 0..n {
                    let at = (t0 + i) * kvd + h * d;
                    kb[i * d..(i + 1) * d].copy_from_slice(&self.k[layer][at..at + d]);
                    vb[i * d..(i + 1) * d].copy_from_slice(&self.v[layer][at..at + d]);
                }
                for (acc, qj) in accs.iter_mut().zip(&qs) {
                    acc.absorb(qj, &kb[..n * d], &vb[..n * d], false, &mut scores);
                }
            }
            for (acc, o) in accs.into_iter().zip(o.chunks_mut(d)) {
                acc.finish(None, o);
            }
        };
        if par {
            out.par_chunks_mut(g * d).enumerate().for_each(head);
        } else {
            out.chunks_mut(g * d).enumerate().for_each(head);
        }
    }
}

impl KvCache for DenseCache {
    fn store(&mut self, layer: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let d = self.shape.kv_dim();
        assert!(pos0 <= self.len[layer], "store at {pos0} leaves a gap after {} positions", self.len[layer]);
        self.k[layer][pos0 * d..pos0 * d + k.len()].copy_from_slice(k);
        self.v[layer][pos0 * d..pos0 * d + v.len()].copy_from_slice(v);
        self.len[layer] = pos0 + k.len() / d;
    }

    fn attend(&self, layer: usize, pos: usize, q: &[f32], out: &mut [f32]) {
        self.attend_one(layer, pos, q, out, pos >= 64);
    }

    fn attend_batch(&self, layer: usize, pos0: usize, n: usize, q: &[f32], out: &mut [f32]) {
        let w = q.len() / n;
        out.par_chunks_mut(w).enumerate().for_each(|(i, o)| self.attend_one(layer, pos0 + i, &q[i * w..(i + 1) * w], o, false));
    }

    fn bytes_for(&self, tokens: usize) -> usize {
        2 * self.shape.n_layers * tokens * self.shape.kv_dim() * 4
    }

    fn capacity(&self) -> usize {
        self.shape.max_seq
    }
}
