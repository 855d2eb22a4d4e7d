//! Seeded randomized Hadamard transform: random signs, then an orthonormal
//! fast Walsh–Hadamard transform, O(d log d). A dimension that is not a
//! power of two is split into power-of-two blocks (largest first), each
//! transformed on its own, so every length is supported.

use crate::rng::SplitMix64;
use crate::simd;

#[derive(Clone, Debug)]
pub struct Rht {
    signs: Vec<f32>,
    /// (offset, length) of each power-of-two block.
    blocks: Vec<(usize, usize)>,
}

impl Rht {
    pub fn new(dim: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed ^ 0x5248_5421);
        let signs = (0..dim).map(|_| rng.sign()).collect();
        let mut blocks = Vec::new();
        let (mut at, mut left) = (0, dim);
        while left > 0 {
            let len = 1usize << (usize::BITS - 1 - left.leading_zeros());
            blocks.push((at, len));
            at += len;
            left -= len;
        }
        Rht { signs, blocks }
    }

    pub fn dim(&self) -> usize {
        self.signs.len()
    }

    /// The random signs, when the dimension is a power of two (one block),
    /// for the fused kernels in [`crate::simd`].
    pub fn pow2_signs(&self) -> Option<&[f32]> {
        (self.blocks.len() == 1).then_some(&self.signs[..])
    }

    /// x ← H·D·x (orthonormal).
    pub fn forward(&self, x: &mut [f32]) {
        for (v, s) in x.iter_mut().zip(&self.signs) {
            *v *= s;
        }
        for &(at, len) in &self.blocks {
            simd::fwht(&mut x[at..at + len]);
        }
    }

    /// x ← D·H·x, the inverse of [`Rht::forward`].
    pub fn inverse(&self, x: &mut [f32]) {
        for &(at, len) in &self.blocks {
            simd::fwht(&mut x[at..at + len]);
        }
        for (v, s) in x.iter_mut().zip(&self.signs) {
            *v *= s;
        }
    }
}

/// Scalar reference: in-place orthonormal Walsh–Hadamard transform of a
/// power-of-two length slice.
pub fn fwht_ref(x: &mut [f32]) {
    let n = x.len();
    let mut h = 1;
    while h < n {
        for i in (0..n).step_by(2 * h) {
            for j in i..i + h {
                let (a, b) = (x[j], x[j + h]);
                x[j] = a + b;
                x[j + h] = a - b;
            }
        }
        h *= 2;
    }
    let s = 1.0 / (n as f32).sqrt();
    for v in x.iter_mut() {
        *v *= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_undoes_forward_and_preserves_norm() {
        for dim in [1usize, 2, 3, 64, 100, 128, 384] {
            let rht = Rht::new(dim, 7);
            let x: Vec<f32> = (0..dim).map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.3).collect();
            let mut y = x.clone();
            rht.forward(&mut y);
            let n0: f32 = x.iter().map(|v| v * v).sum();
            let n1: f32 = y.iter().map(|v| v * v).sum();
            assert!((n0 - n1).abs() <= 1e-4 * n0.max(1.0), "dim {dim}: {n0} vs {n1}");
            rht.inverse(&mut y);
            for (a, b) in x.iter().zip(&y) {
                assert!((a - b).abs() < 1e-4, "dim {dim}");
            }
        }
    }

    #[test]
    fn same_seed_same_transform_other_seed_differs() {
        let x: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let (mut a, mut b, mut c) = (x.clone(), x.clone(), x.clone());
        Rht::new(64, 1).forward(&mut a);
        Rht::new(64, 1).forward(&mut b);
        Rht::new(64, 2).forward(&mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
