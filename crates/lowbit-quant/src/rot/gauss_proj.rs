//! A seeded random projection S (d × d) and the 1-bit sketch sign(S·r)
//! that QJL stores, with the factor that makes ‖r‖·c·Sᵀ·sign(S·r) an
//! unbiased estimate of r.
//!
//! QJL draws S Gaussian. We draw S = √d·Q with Q Haar-orthogonal (Gram–
//! Schmidt of a Gaussian matrix): each row is then uniform on the sphere of
//! radius √d, so the estimate stays unbiased over the draw of S, and
//! because SᵀS = d·I exactly, a single fixed S also has zero mean error
//! over isotropic inputs — a plain Gaussian S carries a per-seed bias of
//! about 1% from its random row norms.

use crate::rng::SplitMix64;

#[derive(Clone, Debug)]
pub struct GaussProj {
    dim: usize,
    rows: Vec<f32>,
    /// 1 / (m · E|<s, r̂>|) for a row s and a unit vector r̂.
    factor: f32,
}

impl GaussProj {
    /// A square projection (m = d).
    pub fn new(dim: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x514A_4C00);
        let mut q: Vec<f64> = (0..dim * dim).map(|_| rng.normal()).collect();
        for i in 0..dim {
            for j in 0..i {
                let dot: f64 = (0..dim).map(|k| q[i * dim + k] * q[j * dim + k]).sum();
                for k in 0..dim {
                    q[i * dim + k] -= dot * q[j * dim + k];
                }
            }
            let norm = (0..dim).map(|k| q[i * dim + k].powi(2)).sum::<f64>().sqrt();
            for k in 0..dim {
                q[i * dim + k] /= norm;
            }
        }
        let sd = (dim as f64).sqrt();
        // E|u₁| for u uniform on the unit sphere in R^d: Γ(d/2) / (√π Γ((d+1)/2)).
        let mut ratio = if dim % 2 == 1 { std::f64::consts::PI.sqrt() } else { 2.0 / std::f64::consts::PI.sqrt() };
        let mut k = if dim % 2 == 1 { 1 } else { 2 };
        while k < dim {
            ratio *= k as f64 / (k as f64 + 1.0);
            k += 2;
        }
        let abs_mean = ratio / std::f64::consts::PI.sqrt();
        let rows = q.iter().map(|v| (v * sd) as f32).collect();
        GaussProj { dim, rows, factor: (1.0 / (dim as f64 * sd * abs_mean)) as f32 }
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

    /// The unbiased reconstruction factor for a vector of norm `norm`
    /// (≈ ‖r‖·sqrt(π/2)/m, exact for rows on the √d-sphere).
    pub fn scale(&self, norm: f32) -> f32 {
        norm * self.factor
    }
}
