//! PolarQuant (arXiv 2502.02617), in the one-level form: rotate with the
//! RHT so coordinates are near N(0,1), then code each coordinate pair in
//! polar form — a uniform angle code over [0, 2π) and a Lloyd–Max code of
//! the (Rayleigh-distributed) radius. `polar3` = 4 angle + 2 radius bits per
//! pair, `polar4` = 5 + 3. Block: norm:f16 | pair codes ((a+r) bits each).
//! With `:fit`, as turbo's, the encoder also tries stretches of the radius
//! codebook and stores the least-squares scale of the chosen code in place
//! of ‖x‖ (without it: the radius code nearest the pair's radius and ‖x‖).

use std::f32::consts::TAU;
use std::sync::Arc;

use super::lloyd_max::{codebook, Codebook, Law};
use super::rht::Rht;
use super::turbo::{best_stretch, STRETCH_MARGIN};
use crate::bitpack::{pack, packed_len, unpack};
use crate::bytes::{get_f16, put_f16};
use crate::codec::Codec;

pub struct Polar {
    dim: usize,
    angle_bits: u32,
    radius_bits: u32,
    rht: Rht,
    radius: Arc<Codebook>,
    /// Search radius-codebook stretches when encoding (`:fit`).
    fit: bool,
}

impl Polar {
    /// `bits` per coordinate: 3 or 4.
    pub fn new(dim: usize, bits: u32, seed: u64) -> Self {
        let (a, r) = if bits == 3 { (4, 2) } else { (5, 3) };
        Polar { dim, angle_bits: a, radius_bits: r, rht: Rht::new(dim, seed), radius: codebook(Law::Rayleigh, r), fit: false }
    }

    /// The same code with the stretch search on (`fit`) or off.
    pub fn fitted(mut self, fit: bool) -> Self {
        self.fit = fit;
        self
    }

    fn pair_bits(&self) -> u32 {
        self.angle_bits + self.radius_bits
    }
}

impl Codec for Polar {
    fn block_elems(&self) -> usize {
        self.dim
    }
    fn block_bytes(&self) -> usize {
        2 + packed_len(self.dim / 2, self.pair_bits())
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        let mut u = vec![0f32; self.dim];
        let mut codes = vec![0u8; self.dim / 2];
        // Per pair: its length along its angle code's direction — the radius
        // level nearest to that is the one nearest to the pair.
        let mut along = vec![0f32; self.dim / 2];
        let na = (1u32 << self.angle_bits) as f32;
        for (xs, b) in x.chunks_exact(self.dim).zip(out.chunks_exact_mut(self.block_bytes())) {
            let norm = xs.iter().map(|v| v * v).sum::<f32>().sqrt();
            u.copy_from_slice(xs);
            self.rht.forward(&mut u);
            let s = if norm > 0.0 { (self.dim as f32).sqrt() / norm } else { 0.0 };
            let mut energy = 0f32;
            for (i, p) in u.chunks_exact(2).enumerate() {
                let (a, bb) = (p[0] * s, p[1] * s);
                let theta = bb.atan2(a).rem_euclid(TAU);
                let ac = ((theta / TAU * na) as u32).min(na as u32 - 1);
                let r2 = a * a + bb * bb;
                // Without `fit`: the radius code nearest the pair's radius.
                let rc = if self.fit {
                    let centre = (ac as f32 + 0.5) / na * TAU;
                    energy += r2;
                    along[i] = a * centre.cos() + bb * centre.sin();
                    0
                } else {
                    self.radius.quantize(r2.sqrt()) as u32
                };
                codes[i] = ((rc << self.angle_bits) | ac) as u8;
            }
            if !self.fit {
                put_f16(b, 0, norm);
                pack(&codes, self.pair_bits(), &mut b[2..]);
                continue;
            }
            // The radius codebook stretched as turbo's codebook (turbo.rs), the
            // least-squares scale of the chosen radii stored for ‖x‖.
            let fit = |st: f32| {
                let (mut uc, mut cc) = (0f32, 0f32);
                for &p in &along {
                    let l = self.radius.levels[self.radius.quantize(p / st) as usize];
                    uc += p * l;
                    cc += l * l;
                }
                (uc, cc)
            };
            let (st, scale) = best_stretch(fit, STRETCH_MARGIN * energy);
            for (c, &p) in codes.iter_mut().zip(&along) {
                *c |= self.radius.quantize(p / st) << self.angle_bits;
            }
            put_f16(b, 0, if norm > 0.0 { norm * scale } else { 0.0 });
            pack(&codes, self.pair_bits(), &mut b[2..]);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        self.decode_rotated(codes, out);
        for y in out.chunks_exact_mut(self.dim) {
            self.rht.inverse(y);
        }
    }
    fn rotation(&self) -> Option<&Rht> {
        Some(&self.rht)
    }
    fn decode_rotated(&self, codes: &[u8], out: &mut [f32]) {
        let mut c = vec![0u8; self.dim / 2];
        let na = (1u32 << self.angle_bits) as f32;
        let amask = (1u8 << self.angle_bits) - 1;
        for (b, y) in codes.chunks_exact(self.block_bytes()).zip(out.chunks_exact_mut(self.dim)) {
            unpack(&b[2..], self.pair_bits(), &mut c);
            let s = get_f16(b, 0) / (self.dim as f32).sqrt();
            for (p, &ci) in y.chunks_exact_mut(2).zip(&c) {
                let theta = ((ci & amask) as f32 + 0.5) / na * TAU;
                let r = self.radius.levels[(ci >> self.angle_bits) as usize] * s;
                p[0] = r * theta.cos();
                p[1] = r * theta.sin();
            }
        }
    }
}
