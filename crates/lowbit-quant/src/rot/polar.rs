//! PolarQuant (arXiv 2502.02617), in the one-level form: rotate with the
//! RHT so coordinates are near N(0,1), then code each coordinate pair in
//! polar form — a point of a ring constellation (rot/rings.rs): rings of
//! Lloyd-designed radii, each with its own number of equally spaced angles,
//! more on the outer rings. `polar3` = 64 points per pair (6 bits),
//! `polar4` = 256 (8 bits). Block: norm:f16 | pair codes (2·b bits each).
//! (Until session 12 the pair code was a uniform angle code times a
//! Lloyd–Max radius code, 4 + 2 and 5 + 3 bits: 17–22% more squared error.)
//! With `:fit`, as turbo's, the encoder also tries stretches of the
//! constellation and stores the least-squares scale of the chosen points in
//! place of ‖x‖ (without it: the point nearest the pair, and ‖x‖).

use std::sync::Arc;

use super::rht::Rht;
use super::rings::Rings;
use super::turbo::{best_stretch, STRETCH_MARGIN};
use crate::bitpack::{pack, packed_len, unpack};
use crate::bytes::{get_f16, put_f16};
use crate::codec::Codec;

pub struct Polar {
    dim: usize,
    /// Bits per pair: 2 × the bits per coordinate.
    pair_bits: u32,
    rht: Rht,
    rings: Arc<Rings>,
    /// Search constellation stretches when encoding (`:fit`).
    fit: bool,
}

impl Polar {
    /// `bits` per coordinate: 3 or 4.
    pub fn new(dim: usize, bits: u32, seed: u64) -> Self {
        Polar { dim, pair_bits: 2 * bits, rht: Rht::new(dim, seed), rings: Rings::get(2 * bits), fit: false }
    }

    /// The same code with the stretch search on (`fit`) or off.
    pub fn fitted(mut self, fit: bool) -> Self {
        self.fit = fit;
        self
    }
}

impl Codec for Polar {
    fn block_elems(&self) -> usize {
        self.dim
    }
    fn block_bytes(&self) -> usize {
        2 + packed_len(self.dim / 2, self.pair_bits)
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        let mut u = vec![0f32; self.dim];
        let mut codes = vec![0u8; self.dim / 2];
        // Per pair and ring: the ring's point nearest in angle and the
        // pair's projection on it (the same for every stretch).
        let k = self.rings.rings();
        let mut cands = vec![(0u8, 0f32); self.dim / 2 * k];
        let mut radius = vec![0f32; self.dim / 2];
        for (xs, b) in x.chunks_exact(self.dim).zip(out.chunks_exact_mut(self.block_bytes())) {
            let norm = xs.iter().map(|v| v * v).sum::<f32>().sqrt();
            u.copy_from_slice(xs);
            self.rht.forward(&mut u);
            let s = if norm > 0.0 { (self.dim as f32).sqrt() / norm } else { 0.0 };
            let mut energy = 0f32;
            for ((p, c), r) in u.chunks_exact(2).zip(cands.chunks_exact_mut(k)).zip(&mut radius) {
                let (a, bb) = (p[0] * s, p[1] * s);
                energy += a * a + bb * bb;
                *r = a.hypot(bb);
                self.rings.candidates(a, bb, c);
            }
            // Without `fit`: the nearest point and ‖x‖. With it: the
            // constellation stretched as turbo's codebook (turbo.rs), the
            // least-squares scale of the chosen points stored for ‖x‖.
            let (st, scale) = if self.fit {
                let fit = |st: f32| {
                    let (mut uc, mut cc) = (0f32, 0f32);
                    for (c, &r) in cands.chunks_exact(k).zip(&radius) {
                        let (_, rho, p) = self.rings.choose(c, r, st);
                        uc += rho * p;
                        cc += rho * rho;
                    }
                    (uc, cc)
                };
                best_stretch(fit, STRETCH_MARGIN * energy)
            } else {
                (1.0, 1.0)
            };
            for ((code, c), &r) in codes.iter_mut().zip(cands.chunks_exact(k)).zip(&radius) {
                *code = self.rings.choose(c, r, st).0;
            }
            put_f16(b, 0, if norm > 0.0 { norm * scale } else { 0.0 });
            pack(&codes, self.pair_bits, &mut b[2..]);
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
        for (b, y) in codes.chunks_exact(self.block_bytes()).zip(out.chunks_exact_mut(self.dim)) {
            unpack(&b[2..], self.pair_bits, &mut c);
            let s = get_f16(b, 0) / (self.dim as f32).sqrt();
            for (p, &ci) in y.chunks_exact_mut(2).zip(&c) {
                let [x0, x1] = self.rings.point(ci);
                p[0] = x0 * s;
                p[1] = x1 * s;
            }
        }
    }
}
