//! TurboQuant (arXiv 2504.19874).
//!
//! MSE variant `turbo{b}`: store ‖x‖ (f16), rotate x/‖x‖ with the RHT and
//! code each coordinate with the b-bit Lloyd–Max codebook of a unit-sphere
//! coordinate. Block = one vector of `dim` elements:
//! norm:f16 | codes (b bits each, packed).
//! With `:fit` the encoder refines the paper's choice without changing the
//! format: it also tries the codebook stretched by a few factors and
//! stores, in place of ‖x‖, the least-squares scale of the best codes
//! ([`STRETCHES`]; ~10× slower to encode; the KV cache uses it).
//!
//! Inner-product variant `turbo{b}p`: a (b−1)-bit MSE code plus a 1-bit QJL
//! sketch of the residual and the residual's norm, which makes <y, x̂> an
//! unbiased estimate of <y, x>. Block: norm:f16 | rnorm:f16 |
//! codes ((b−1) bits each) | dim/8 sign bytes.

use std::sync::Arc;

use super::gauss_proj::GaussProj;
use super::lloyd_max::{codebook, Codebook, Law};
use super::rht::Rht;
use crate::bitpack::{pack, packed_len, unpack};
use crate::bytes::{get_f16, put_f16};
use crate::codec::Codec;
use crate::simd;

/// Stretches of the codebook the MSE encoder tries besides 1: a coarse
/// grid, then two finer steps (±`REFINE`, ±`REFINE`/2) around the best.
/// On SmolLM2's keys and values (crates/lowbit-engine/tests/kv_real.rs)
/// `turbo4:fit` takes turbo4's attention-output cosine from 0.988 to 0.991.
pub const STRETCHES: [f32; 8] = [0.8, 0.85, 0.9, 0.95, 1.05, 1.1, 1.15, 1.2];
pub const REFINE: f32 = 0.025;
/// A stretch replaces the best so far only if it lowers the squared error
/// by more than this share of ‖u‖² (so an encoder that sums in another
/// order, like the CUDA kernel, makes the same choice).
pub const STRETCH_MARGIN: f32 = 1e-5;

/// The search behind [`STRETCHES`]: `fit(a)` = (<u,c>, <c,c>) for the
/// codes c of the codebook stretched by a; each is judged by the error drop
/// <u,c>²/<c,c> of its least-squares scale <u,c>/<c,c>. Tries 1, the grid,
/// then two refinements around the best; returns the chosen stretch and its
/// scale. Shared with PolarQuant's radii.
pub(crate) fn best_stretch(mut fit: impl FnMut(f32) -> (f32, f32), margin: f32) -> (f32, f32) {
    let mut best = (1.0, 0.0, 0.0);
    let mut consider = |a: f32, best: &mut (f32, f32, f32)| {
        let (uc, cc) = fit(a);
        let (g, s) = if cc > 0.0 { (uc * uc / cc, uc / cc) } else { (0.0, 0.0) };
        if g > best.1 + margin {
            *best = (a, g, s);
        }
    };
    for a in std::iter::once(1.0).chain(STRETCHES) {
        consider(a, &mut best);
    }
    for step in [REFINE, REFINE / 2.0] {
        let c = best.0;
        consider(c - step, &mut best);
        consider(c + step, &mut best);
    }
    (best.0, best.2)
}

/// Rotation + codebook core shared by both variants.
pub struct TurboMse {
    dim: usize,
    bits: u32,
    rht: Rht,
    cb: Arc<Codebook>,
    /// Search codebook stretches when encoding (`:fit`).
    fit: bool,
}

impl TurboMse {
    pub fn new(dim: usize, bits: u32, seed: u64) -> Self {
        let law = if dim >= 3 { Law::UnitSphere(dim) } else { Law::Gaussian };
        TurboMse { dim, bits, rht: Rht::new(dim, seed), cb: codebook(law, bits), fit: false }
    }

    /// The same code with the stretch search on (`fit`) or off.
    pub fn fitted(mut self, fit: bool) -> Self {
        self.fit = fit;
        self
    }

    fn code_bytes(&self) -> usize {
        packed_len(self.dim, self.bits)
    }

    /// Rotate and code one vector; returns its norm and leaves the rotated
    /// unit vector (scaled by sqrt(d)) in `u`.
    fn encode_vec(&self, x: &[f32], u: &mut [f32], codes: &mut [u8], out: &mut [u8]) -> f32 {
        if let Some(signs) = self.rht.pow2_signs() {
            let norm = simd::turbo_rotq(x, signs, &self.cb.bounds, u, codes);
            pack(codes, self.bits, out);
            return norm;
        }
        let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        u.copy_from_slice(x);
        if norm == 0.0 {
            u.fill(0.0);
        } else {
            self.rht.forward(u);
            let s = (self.dim as f32).sqrt() / norm;
            for v in u.iter_mut() {
                *v *= s;
            }
        }
        simd::quantize_bounds(u, &self.cb.bounds, codes);
        pack(codes, self.bits, out);
        norm
    }

    /// Re-code the rotated unit vector `u` (× sqrt(d)) with the best
    /// stretch of the codebook ([`STRETCHES`]); `codes` holds the plain
    /// codes on entry and the chosen ones on exit. Returns the factor on
    /// ‖x‖ to store: the least-squares scale of the chosen codes.
    fn stretch(&self, u: &[f32], codes: &mut [u8]) -> f32 {
        let cb = &*self.cb;
        let margin = STRETCH_MARGIN * u.iter().map(|x| x * x).sum::<f32>();
        let mut bounds = cb.bounds.clone();
        let fit = |a: f32| {
            for (o, b) in bounds.iter_mut().zip(&cb.bounds) {
                *o = b * a;
            }
            simd::stretch_fit(u, &bounds, &cb.levels)
        };
        let (best, scale) = best_stretch(fit, margin);
        if best != 1.0 {
            let bounds: Vec<f32> = cb.bounds.iter().map(|b| b * best).collect();
            simd::quantize_bounds(u, &bounds, codes);
        }
        scale
    }

    /// Rotated-domain reconstruction of unit-vector coordinates (× sqrt(d)).
    fn levels_of(&self, packed: &[u8], codes: &mut [u8], v: &mut [f32]) {
        unpack(packed, self.bits, codes);
        for (o, &c) in v.iter_mut().zip(codes.iter()) {
            *o = self.cb.levels[c as usize];
        }
    }
}

impl Codec for TurboMse {
    fn block_elems(&self) -> usize {
        self.dim
    }
    fn block_bytes(&self) -> usize {
        2 + self.code_bytes()
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        let mut u = vec![0f32; self.dim];
        let mut codes = vec![0u8; self.dim];
        for (xs, b) in x.chunks_exact(self.dim).zip(out.chunks_exact_mut(self.block_bytes())) {
            let norm = self.encode_vec(xs, &mut u, &mut codes, &mut b[2..]);
            if !self.fit || norm == 0.0 {
                put_f16(b, 0, norm);
                continue;
            }
            let scale = self.stretch(&u, &mut codes);
            pack(&codes, self.bits, &mut b[2..]);
            put_f16(b, 0, norm * scale);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        let mut c = vec![0u8; self.dim];
        let inv = 1.0 / (self.dim as f32).sqrt();
        for (b, y) in codes.chunks_exact(self.block_bytes()).zip(out.chunks_exact_mut(self.dim)) {
            if let Some(signs) = self.rht.pow2_signs() {
                unpack(&b[2..], self.bits, &mut c);
                simd::turbo_dequant(&c, &self.cb.levels, signs, get_f16(b, 0) * inv, y);
                continue;
            }
            self.levels_of(&b[2..], &mut c, y);
            let s = get_f16(b, 0) * inv;
            for v in y.iter_mut() {
                *v *= s;
            }
            self.rht.inverse(y);
        }
    }
    fn rotation(&self) -> Option<&Rht> {
        Some(&self.rht)
    }
    fn decode_rotated(&self, codes: &[u8], out: &mut [f32]) {
        simd::turbo_rows(codes, self.bits, self.dim, &self.cb.levels, out);
    }
    fn dot_f32(&self, codes: &[u8], x: &[f32]) -> f32 {
        let mut c = vec![0u8; self.dim];
        let mut q = vec![0f32; self.dim];
        let inv = 1.0 / (self.dim as f32).sqrt();
        let mut sum = 0f32;
        for (b, xs) in codes.chunks_exact(self.block_bytes()).zip(x.chunks_exact(self.dim)) {
            q.copy_from_slice(xs);
            self.rht.forward(&mut q);
            unpack(&b[2..], self.bits, &mut c);
            let d: f32 = c.iter().zip(&q).map(|(&ci, &qi)| self.cb.levels[ci as usize] * qi).sum();
            sum += d * get_f16(b, 0) * inv;
        }
        sum
    }
}

pub struct TurboIp {
    mse: TurboMse,
    proj: GaussProj,
}

impl TurboIp {
    /// `bits` is the total per coordinate: (bits−1) for the MSE code + 1 for QJL.
    pub fn new(dim: usize, bits: u32, seed: u64) -> Self {
        TurboIp { mse: TurboMse::new(dim, bits - 1, seed), proj: GaussProj::new(dim, seed.wrapping_add(1)) }
    }
}

impl Codec for TurboIp {
    fn block_elems(&self) -> usize {
        self.mse.dim
    }
    fn block_bytes(&self) -> usize {
        4 + self.mse.code_bytes() + self.mse.dim / 8
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        let d = self.mse.dim;
        let cb = self.mse.code_bytes();
        let inv = 1.0 / (d as f32).sqrt();
        let mut u = vec![0f32; d];
        let mut codes = vec![0u8; d];
        for (xs, b) in x.chunks_exact(d).zip(out.chunks_exact_mut(self.block_bytes())) {
            let norm = self.mse.encode_vec(xs, &mut u, &mut codes, &mut b[4..4 + cb]);
            // Residual in the unit-vector rotated domain.
            for (ui, &c) in u.iter_mut().zip(&codes) {
                *ui = (*ui - self.mse.cb.levels[c as usize]) * inv;
            }
            let rnorm = u.iter().map(|v| v * v).sum::<f32>().sqrt();
            put_f16(b, 0, norm);
            put_f16(b, 2, rnorm);
            self.proj.sketch(&u, &mut b[4 + cb..]);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        self.decode_rotated(codes, out);
        for y in out.chunks_exact_mut(self.mse.dim) {
            self.mse.rht.inverse(y);
        }
    }
    fn rotation(&self) -> Option<&Rht> {
        Some(&self.mse.rht)
    }
    fn decode_rotated(&self, codes: &[u8], out: &mut [f32]) {
        let d = self.mse.dim;
        let cb = self.mse.code_bytes();
        let inv = 1.0 / (d as f32).sqrt();
        let mut c = vec![0u8; d];
        for (b, y) in codes.chunks_exact(self.block_bytes()).zip(out.chunks_exact_mut(d)) {
            self.mse.levels_of(&b[4..4 + cb], &mut c, y);
            for v in y.iter_mut() {
                *v *= inv;
            }
            self.proj.add_transposed(&b[4 + cb..], self.proj.scale(get_f16(b, 2)), y);
            let norm = get_f16(b, 0);
            for v in y.iter_mut() {
                *v *= norm;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_vector_roundtrips_to_zero() {
        let t = TurboMse::new(64, 3, 0);
        let x = vec![0f32; 64];
        let mut out = vec![0u8; t.block_bytes()];
        t.encode(&x, None, &mut out);
        let mut y = vec![1f32; 64];
        t.decode(&out, &mut y);
        assert!(y.iter().all(|&v| v == 0.0));
    }
}
