//! QJL (arXiv 2406.03482): the sign bits of a random projection of a
//! vector plus its norm; <y, x> is estimated as
//! ‖x‖·c · <S·y, sign(S·x)> (c ≈ sqrt(π/2)/d), unbiased, no per-block constants
//! beyond the norm. Block: norm:f16 | dim/8 sign bytes.

use super::gauss_proj::GaussProj;
use crate::bytes::{get_f16, put_f16};
use crate::codec::Codec;

pub struct Qjl {
    dim: usize,
    proj: GaussProj,
}

impl Qjl {
    pub fn new(dim: usize, seed: u64) -> Self {
        Qjl { dim, proj: GaussProj::new(dim, seed) }
    }
}

impl Codec for Qjl {
    fn block_elems(&self) -> usize {
        self.dim
    }
    fn block_bytes(&self) -> usize {
        2 + self.dim / 8
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        for (xs, b) in x.chunks_exact(self.dim).zip(out.chunks_exact_mut(self.block_bytes())) {
            put_f16(b, 0, xs.iter().map(|v| v * v).sum::<f32>().sqrt());
            self.proj.sketch(xs, &mut b[2..]);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        for (b, y) in codes.chunks_exact(self.block_bytes()).zip(out.chunks_exact_mut(self.dim)) {
            y.fill(0.0);
            self.proj.add_transposed(&b[2..], self.proj.scale(get_f16(b, 0)), y);
        }
    }
}
