//! A seeded dense Gaussian projection S (m × d) and the 1-bit sketch
//! sign(S·r) that QJL stores. E[sign(<s,r>)·<s,y>] = sqrt(2/π)·<r,y>/‖r‖
//! for Gaussian rows s, which is what makes the inner-product estimate
//! unbiased.

use crate::rng::SplitMix64;

#[derive(Clone, Debug)]
pub struct GaussProj {
    dim: usize,
    rows: Vec<f32>,
}

impl GaussProj {
    /// A square projection (m = d), as QJL uses for keys.
    pub fn new(dim: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x514A_4C00);
        let rows = (0..dim * dim).map(|_| rng.normal() as f32).collect();
        GaussProj { dim, rows }
    }

    /// Sign bits of S·r, bit j of byte j/8 set where (S·r)_j >= 0.
    pub fn sketch(&self, r: &[f32], out: &mut [u8]) {
        out[..self.dim / 8].fill(0);
        for (j, row) in self.rows.chunks_exact(self.dim).enumerate() {
            let p: f32 = row.iter().zip(r).map(|(a, b)| a * b).sum();
            if p >= 0.0 {
                out[j / 8] |= 1 << (j % 8);
            }
        }
    }

    /// out += scale · Sᵀ·s, with s the ±1 signs of a sketch.
    pub fn add_transposed(&self, bits: &[u8], scale: f32, out: &mut [f32]) {
        for (j, row) in self.rows.chunks_exact(self.dim).enumerate() {
            let s = if bits[j / 8] >> (j % 8) & 1 == 1 { scale } else { -scale };
            for (o, a) in out.iter_mut().zip(row) {
                *o += s * a;
            }
        }
    }

    /// The unbiased reconstruction factor: ‖r‖·sqrt(π/2)/m.
    pub fn scale(&self, norm: f32) -> f32 {
        norm * (std::f32::consts::PI / 2.0).sqrt() / self.dim as f32
    }
}
