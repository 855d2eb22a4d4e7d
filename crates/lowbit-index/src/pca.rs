//! The trained residual code `pcaB`: exactly B·d/8 bytes per vector,
//! its per-vector scalars included (FAISS's IndexPQ with d·B/8 one-byte
//! sub-quantizers stores the same).
//!
//! Training, on residuals r = x − c of a sample (c = the vector's coarse
//! centroid): the directions r/‖r‖ are decomposed into principal axes
//! (PCA of their second moment), each axis gets its share of the code bits
//! by greedy reverse water-filling on its variance (Lloyd–Max distortion of
//! a Gaussian at b bits), the axes are packed into whole bytes (first-fit
//! decreasing; a byte's spare bits go to the axis that gains most), and
//! each axis gets a Lloyd–Max codebook of its own trained on the sample
//! (1-D k-means). Axes of small variance may get no bits: they decode to
//! their mean.
//!
//! A vector is coded as u = V·r·√d/‖r‖ (V the principal axes as rows),
//! each coordinate to its codebook on the best of a few stretches of the
//! grid, plus f16 scalars: the least-squares scale s (r̂ = s·Vᵀℓ) and, for
//! L2, ‖r̂‖ — as the turbo code does, so a distance is the exact distance
//! to the decoded vector.
//!
//! Search: the query (minus the centroid for L2) is projected once, turned
//! into one 256-entry table per code byte (the byte's axes' products
//! summed for every byte value), and each vector's ⟨V·y, ℓ⟩ is the sum of
//! its bytes' table entries — as FAISS scans PQ codes.

use half::f16;
use lowbit_quant::simd;
use nalgebra::{DMatrix, SymmetricEigen};
use rayon::prelude::*;

/// Mean-squared error of the Lloyd–Max quantizer of a unit Gaussian at
/// 0..=8 bits (6–8 by the high-resolution formula): the allocation's model.
const GAUSS_MSE: [f64; 9] = [1.0, 0.3634, 0.1175, 0.03454, 0.009497, 0.002499, 0.000664, 0.000166, 0.0000415];
const MAX_BITS: u8 = 8;
/// Grid stretches tried per vector when coding.
const STRETCH: &[f32] = &[0.8, 0.9, 1.0, 1.1, 1.2];
const LLOYD_ITERS: usize = 30;

/// Where an axis's code lives: byte, first bit, bit count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub byte: u16,
    pub shift: u8,
    pub bits: u8,
}

pub struct PcaCoder {
    pub dim: usize,
    /// Code bytes per vector (scalars apart).
    pub code_bytes: usize,
    /// f16 scalars per vector: s, and ‖r̂‖ for L2.
    pub scalars: usize,
    /// Principal axes, one row of `dim` per axis, largest variance first.
    pub basis: Vec<f32>,
    pub slots: Vec<Slot>,
    /// Per axis its 2^bits levels (one, the mean, for 0 bits), ascending.
    pub levels: Vec<Vec<f32>>,
    /// Per axis the midpoints between its levels.
    bounds: Vec<Vec<f32>>,
    /// Per code byte its axes.
    bins: Vec<Vec<u32>>,
}

impl PcaCoder {
    /// Train on residuals (rows of `dim`), for `code_bytes` bytes of code.
    pub fn train(residuals: &[f32], dim: usize, code_bytes: usize, scalars: usize) -> PcaCoder {
        let sd = (dim as f64).sqrt();
        let dirs: Vec<f64> = residuals
            .chunks_exact(dim)
            .filter_map(|r| {
                let n = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                (n > 0.0).then(|| r.iter().map(move |v| *v as f64 * sd / n))
            })
            .flatten()
            .collect();
        let n = dirs.len() / dim;
        let u = DMatrix::from_row_slice(n, dim, &dirs);
        let moment = u.tr_mul(&u) / n.max(1) as f64;
        let eig = SymmetricEigen::new(moment);
        let mut order: Vec<usize> = (0..dim).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let var: Vec<f64> = order.iter().map(|&i| eig.eigenvalues[i].max(0.0)).collect();
        let basis: Vec<f32> = order.iter().flat_map(|&i| eig.eigenvectors.column(i).iter().map(|&v| v as f32).collect::<Vec<_>>()).collect();
        let slots = allocate(&var, code_bytes);
        // Coordinates of the sample on each axis, then a codebook per axis.
        let proj = &u * DMatrix::from_row_slice(dim, dim, &basis.iter().map(|&v| v as f64).collect::<Vec<_>>()).transpose();
        let levels: Vec<Vec<f32>> = (0..dim)
            .into_par_iter()
            .map(|a| {
                let mut col: Vec<f64> = proj.column(a).iter().copied().collect();
                col.sort_by(f64::total_cmp);
                lloyd_1d(&col, 1 << slots[a].bits).into_iter().map(|v| v as f32).collect()
            })
            .collect();
        PcaCoder::from_parts(dim, code_bytes, scalars, basis, slots, levels)
    }

    /// Assemble a coder from its stored parts (checked by the caller).
    pub fn from_parts(dim: usize, code_bytes: usize, scalars: usize, basis: Vec<f32>, slots: Vec<Slot>, levels: Vec<Vec<f32>>) -> PcaCoder {
        let bounds = levels.iter().map(|l| l.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect()).collect();
        let mut bins = vec![Vec::new(); code_bytes];
        for (a, s) in slots.iter().enumerate() {
            if s.bits > 0 {
                bins[s.byte as usize].push(a as u32);
            }
        }
        PcaCoder { dim, code_bytes, scalars, basis, slots, levels, bounds, bins }
    }

    pub fn bytes_per_vector(&self) -> usize {
        self.code_bytes + 2 * self.scalars
    }

    /// Project onto the principal axes: out = V·y.
    pub fn project(&self, y: &[f32], out: &mut [f32]) {
        simd::dot_rows(y, &self.basis, out);
    }

    /// Code the residual `r` (overwritten as scratch) into `codes` and its
    /// scalars into `scal`.
    pub fn encode(&self, r: &mut [f32], idx: &mut [u8], codes: &mut [u8], scal: &mut [u16]) {
        let d = self.dim;
        let norm = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        let mut u = vec![0f32; d];
        self.project(r, &mut u);
        let k = if norm > 0.0 { (d as f32).sqrt() / norm } else { 0.0 };
        u.iter_mut().for_each(|v| *v *= k);
        // Best stretch a of the grid: nearest of a·levels, kept if its
        // least-squares fit ⟨u, ℓ⟩²/‖ℓ‖² is the largest.
        let mut best = (f64::NEG_INFINITY, 0f64, 0f64, 1f32);
        for &a in STRETCH {
            let (ul, ll) = self.nearest(&u, a, idx);
            let fit = if ll > 0.0 { ul * ul / ll } else { 0.0 };
            if fit > best.0 {
                best = (fit, ul, ll, a);
            }
        }
        let (ul, ll) = self.nearest(&u, best.3, idx);
        codes.fill(0);
        for (s, &c) in self.slots.iter().zip(idx.iter()) {
            if s.bits > 0 {
                codes[s.byte as usize] |= c << s.shift;
            }
        }
        let s = if ll > 0.0 { norm as f64 / (d as f64).sqrt() * ul / ll } else { 0.0 };
        scal[0] = f16::from_f64(s).to_bits();
        if self.scalars == 2 {
            scal[1] = f16::from_f64(s * ll.sqrt()).to_bits();
        }
    }

    /// Nearest level of u/a on every axis into `idx`; returns ⟨u, ℓ⟩, ‖ℓ‖².
    fn nearest(&self, u: &[f32], a: f32, idx: &mut [u8]) -> (f64, f64) {
        let (mut ul, mut ll) = (0f64, 0f64);
        for (i, &v) in u.iter().enumerate() {
            let c = self.bounds[i].partition_point(|&b| b * a < v);
            idx[i] = c as u8;
            let l = self.levels[i][c] as f64;
            ul += v as f64 * l;
            ll += l * l;
        }
        (ul, ll)
    }

    /// Decoded residual r̂ = s·Vᵀℓ (for tests).
    pub fn decode(&self, codes: &[u8], scal: &[u16], out: &mut [f32]) {
        let s = f16::from_bits(scal[0]).to_f32();
        out.fill(0.0);
        for (a, sl) in self.slots.iter().enumerate() {
            let c = (codes[sl.byte as usize] >> sl.shift) as usize & ((1usize << sl.bits) - 1);
            let l = s * self.levels[a][c];
            for (o, b) in out.iter_mut().zip(&self.basis[a * self.dim..(a + 1) * self.dim]) {
                *o += l * b;
            }
        }
    }

    /// Lookup tables for a projected query `y` (= V·y): 256 entries per
    /// code byte; returns the constant part (axes without bits).
    pub fn tables(&self, y: &[f32], t: &mut Vec<f32>) -> f32 {
        t.clear();
        t.resize(self.code_bytes * 256, 0.0);
        for (tb, axes) in t.chunks_exact_mut(256).zip(&self.bins) {
            for &a in axes {
                let (s, lv, ya) = (self.slots[a as usize], &self.levels[a as usize], y[a as usize]);
                let mask = (1usize << s.bits) - 1;
                for (c, e) in tb.iter_mut().enumerate() {
                    *e += ya * lv[(c >> s.shift) & mask];
                }
            }
        }
        self.slots.iter().zip(&self.levels).zip(y).filter(|((s, _), _)| s.bits == 0).map(|((_, l), v)| v * l[0]).sum()
    }
}

/// Bits per axis (variances `var`, largest first) packed into `bytes`
/// whole bytes: greedy allocation of a budget, first-fit-decreasing
/// packing, spare bits of a byte to its axis that gains most; of the
/// budgets that pack, the one with the least modelled distortion.
pub fn allocate(var: &[f64], bytes: usize) -> Vec<Slot> {
    let d = var.len();
    let model = |b: &[u8]| -> f64 { var.iter().zip(b).map(|(v, &b)| v * GAUSS_MSE[b as usize]).sum() };
    let mut best: Option<(f64, Vec<Slot>)> = None;
    let mut budget = (8 * bytes).min(MAX_BITS as usize * d);
    let mut tries_after_fit = 64;
    loop {
        let mut bits = greedy(var, budget);
        if let Some(bins) = first_fit_decreasing(&bits, bytes) {
            for axes in &bins {
                let spare = 8 - axes.iter().map(|&a| bits[a] as usize).sum::<usize>() as u8;
                if spare > 0 {
                    let gain = |a: usize| {
                        let b = bits[a] as usize;
                        var[a] * (GAUSS_MSE[b] - GAUSS_MSE[(b + spare as usize).min(8)])
                    };
                    let a = axes.iter().copied().filter(|&a| bits[a] + spare <= MAX_BITS).max_by(|&x, &y| gain(x).total_cmp(&gain(y)));
                    if let Some(a) = a {
                        bits[a] += spare;
                    }
                }
            }
            let dist = model(&bits);
            if best.as_ref().map_or(true, |b| dist < b.0) {
                let mut slots = vec![Slot { byte: 0, shift: 0, bits: 0 }; d];
                for (j, axes) in bins.iter().enumerate() {
                    let mut shift = 0;
                    for &a in axes {
                        slots[a] = Slot { byte: j as u16, shift, bits: bits[a] };
                        shift += bits[a];
                    }
                }
                best = Some((dist, slots));
            }
            tries_after_fit -= 1;
        }
        if budget == 0 || tries_after_fit == 0 {
            break;
        }
        budget -= 1;
    }
    best.expect("a zero budget always packs").1
}

/// Reverse water-filling: each next bit to the axis whose modelled error
/// drops most.
fn greedy(var: &[f64], budget: usize) -> Vec<u8> {
    let mut bits = vec![0u8; var.len()];
    for _ in 0..budget {
        let gain = |a: usize| if bits[a] < MAX_BITS { var[a] * (GAUSS_MSE[bits[a] as usize] - GAUSS_MSE[bits[a] as usize + 1]) } else { -1.0 };
        let a = (0..var.len()).max_by(|&x, &y| gain(x).total_cmp(&gain(y)).then(y.cmp(&x))).unwrap();
        bits[a] += 1;
    }
    bits
}

/// Axes with bits packed into at most `bytes` bytes, or None.
fn first_fit_decreasing(bits: &[u8], bytes: usize) -> Option<Vec<Vec<usize>>> {
    let mut order: Vec<usize> = (0..bits.len()).filter(|&a| bits[a] > 0).collect();
    order.sort_by(|&a, &b| bits[b].cmp(&bits[a]).then(a.cmp(&b)));
    let mut bins: Vec<(u8, Vec<usize>)> = Vec::new();
    for a in order {
        if let Some((used, axes)) = bins.iter_mut().find(|(used, _)| used + bits[a] <= 8) {
            *used += bits[a];
            axes.push(a);
        } else if bins.len() < bytes {
            bins.push((bits[a], vec![a]));
        } else {
            return None;
        }
    }
    bins.resize(bytes, (0, Vec::new()));
    Some(bins.into_iter().map(|(_, a)| a).collect())
}

/// 1-D Lloyd–Max (k-means) of sorted values into k levels, ascending;
/// starts from the quantiles, an empty cell keeps its level.
fn lloyd_1d(sorted: &[f64], k: usize) -> Vec<f64> {
    let n = sorted.len();
    if n == 0 {
        return vec![0.0; k];
    }
    let mut prefix = Vec::with_capacity(n + 1);
    prefix.push(0.0);
    for v in sorted {
        prefix.push(prefix.last().unwrap() + v);
    }
    let mut lv: Vec<f64> = (0..k).map(|j| sorted[(((j as f64 + 0.5) / k as f64) * n as f64) as usize]).collect();
    for _ in 0..LLOYD_ITERS {
        let mut lo = 0;
        for j in 0..k {
            let hi = if j + 1 < k { sorted.partition_point(|&v| v < 0.5 * (lv[j] + lv[j + 1])) } else { n };
            if hi > lo {
                lv[j] = (prefix[hi] - prefix[lo]) / (hi - lo) as f64;
            }
            lo = hi.max(lo);
        }
        lv.sort_by(f64::total_cmp);
    }
    lv
}

#[cfg(test)]
mod tests {
    use super::*;
    use lowbit_quant::rng::SplitMix64;

    #[test]
    fn allocation_fills_every_byte_and_favours_large_variances() {
        let var: Vec<f64> = (0..128).map(|i| 10.0 * 0.97f64.powi(i)).collect();
        for bytes in [8, 32, 60, 64] {
            let slots = allocate(&var, bytes);
            let mut used = vec![0u32; bytes];
            for s in &slots {
                assert!(s.shift + s.bits <= 8 && (s.byte as usize) < bytes);
                if s.bits > 0 {
                    assert_eq!(used[s.byte as usize] >> s.shift & ((1 << s.bits) - 1), 0, "bits overlap");
                    used[s.byte as usize] |= ((1 << s.bits) - 1) << s.shift;
                }
            }
            let total: u32 = slots.iter().map(|s| s.bits as u32).sum();
            assert!(total as usize >= 8 * bytes - 8, "{bytes} bytes: only {total} bits used");
            assert!(slots[0].bits >= slots[127].bits);
        }
    }

    #[test]
    fn lloyd_levels_are_the_cell_means() {
        let mut rng = SplitMix64::new(3);
        let mut x: Vec<f64> = (0..20000).map(|_| rng.normal()).collect();
        x.sort_by(f64::total_cmp);
        let lv = lloyd_1d(&x, 4);
        // Lloyd–Max for a unit Gaussian at 2 bits: ±0.4528, ±1.510.
        for (a, b) in lv.iter().zip([-1.510, -0.4528, 0.4528, 1.510]) {
            assert!((a - b).abs() < 0.03, "{lv:?}");
        }
    }

    #[test]
    fn tables_give_the_decoded_dot_and_coding_tracks_the_input() {
        let (d, n) = (48, 600);
        let mut rng = SplitMix64::new(9);
        // Correlated data: a few strong directions.
        let x: Vec<f32> = (0..n * d).map(|i| (rng.normal() * (1.0 + 5.0 * ((i % d) < 4) as i32 as f64)) as f32).collect();
        let pc = PcaCoder::train(&x, d, 20, 2);
        assert_eq!(pc.bytes_per_vector(), 24);
        let q: Vec<f32> = (0..d).map(|_| rng.normal() as f32).collect();
        let mut qp = vec![0f32; d];
        pc.project(&q, &mut qp);
        let mut t = Vec::new();
        let c0 = pc.tables(&qp, &mut t);
        let mut codes = vec![0u8; n * 20];
        let mut scal = vec![0u16; 2 * n];
        let mut idx = vec![0u8; d];
        for i in 0..n {
            let mut r = x[i * d..(i + 1) * d].to_vec();
            pc.encode(&mut r, &mut idx, &mut codes[i * 20..(i + 1) * 20], &mut scal[2 * i..2 * i + 2]);
        }
        let mut dots = vec![0f32; n];
        simd::table_dots(&codes, 20, &t, c0, &mut dots);
        let (mut err, mut tot) = (0f64, 0f64);
        for i in 0..n {
            let mut dec = vec![0f32; d];
            pc.decode(&codes[i * 20..(i + 1) * 20], &scal[2 * i..2 * i + 2], &mut dec);
            let s = f16::from_bits(scal[2 * i]).to_f32();
            let via_dec: f32 = dec.iter().zip(&q).map(|(a, b)| a * b).sum();
            assert!((s * dots[i] - via_dec).abs() <= 1e-3 * (1.0 + via_dec.abs()), "{} vs {via_dec}", s * dots[i]);
            let xi = &x[i * d..(i + 1) * d];
            err += dec.iter().zip(xi).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
            tot += xi.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        }
        // 160 bits over 48 axes, most of the energy in 4: well under 5% error.
        assert!(err / tot < 0.05, "relative squared error {}", err / tot);
    }
}
