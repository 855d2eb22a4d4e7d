//! k-means for the coarse quantizer: k-means++ seeding, then Lloyd
//! iterations; assignment is multithreaded and uses ‖x‖² − 2⟨x, c⟩ + ‖c‖²
//! through the SIMD row-dot kernel. An emptied cluster is re-seeded from a
//! point of the largest one (as FAISS does), so every list stays usable.

use lowbit_quant::rng::SplitMix64;
use lowbit_quant::simd;
use rayon::prelude::*;

use crate::error::{IndexError, Result};

pub(crate) fn sq_norms(data: &[f32], dim: usize) -> Vec<f32> {
    data.chunks_exact(dim).map(|r| r.iter().map(|v| v * v).sum()).collect()
}

/// Nearest centroid (L2) of every row and its squared distance.
pub fn assign(data: &[f32], dim: usize, centroids: &[f32]) -> Vec<(u32, f32)> {
    let cn = sq_norms(centroids, dim);
    let k = cn.len();
    data.par_chunks(dim * 64)
        .flat_map_iter(|rows| {
            let mut dots = vec![0f32; k];
            rows.chunks_exact(dim)
                .map(|x| {
                    simd::dot_rows(x, centroids, &mut dots);
                    let xn: f32 = x.iter().map(|v| v * v).sum();
                    let (best, d) = dots
                        .iter()
                        .zip(&cn)
                        .map(|(d, c)| c - 2.0 * d)
                        .enumerate()
                        .fold((0, f32::INFINITY), |a, (i, d)| if d < a.1 { (i, d) } else { a });
                    (best as u32, (xn + d).max(0.0))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// k centroids of `data` (row-major, `dim` wide). `progress` is called
/// after each iteration with the iteration number.
pub fn kmeans(data: &[f32], dim: usize, k: usize, iters: usize, seed: u64, progress: &(dyn Fn(usize) + Sync)) -> Result<Vec<f32>> {
    let n = data.len() / dim;
    if k == 0 || n < k {
        return Err(IndexError::Input(format!("k-means needs at least as many training vectors as lists: {n} vectors for {k} lists")));
    }
    let mut rng = SplitMix64::new(seed ^ 0x4b4d_4541_4e53);
    let mut cent = Vec::with_capacity(k * dim);
    // k-means++: each next centre drawn with probability ∝ D(x)².
    let first = (rng.next_u64() % n as u64) as usize;
    cent.extend_from_slice(&data[first * dim..(first + 1) * dim]);
    let mut best = vec![f32::INFINITY; n];
    for c in 1..=k {
        let last = &cent[(c - 1) * dim..c * dim];
        best.par_iter_mut().zip(data.par_chunks_exact(dim)).for_each(|(b, x)| {
            let d: f32 = x.iter().zip(last).map(|(a, c)| (a - c) * (a - c)).sum();
            *b = b.min(d);
        });
        if c == k {
            break;
        }
        let total: f64 = best.iter().map(|&d| d as f64).sum();
        let pick = if total > 0.0 {
            let mut t = rng.next_open01() * total;
            best.iter().position(|&d| {
                t -= d as f64;
                t <= 0.0
            })
            .unwrap_or(n - 1)
        } else {
            (rng.next_u64() % n as u64) as usize
        };
        cent.extend_from_slice(&data[pick * dim..(pick + 1) * dim]);
    }
    for it in 0..iters {
        let a = assign(data, dim, &cent);
        let mut sum = vec![0f64; k * dim];
        let mut count = vec![0usize; k];
        for (x, &(c, _)) in data.chunks_exact(dim).zip(&a) {
            let c = c as usize;
            count[c] += 1;
            for (s, v) in sum[c * dim..(c + 1) * dim].iter_mut().zip(x) {
                *s += *v as f64;
            }
        }
        for c in 0..k {
            if count[c] == 0 {
                // Re-seed from a random member of the largest cluster.
                let big = (0..k).max_by_key(|&j| count[j]).unwrap();
                let members: Vec<usize> = a.iter().enumerate().filter(|(_, &(j, _))| j as usize == big).map(|(i, _)| i).collect();
                let m = members[(rng.next_u64() % members.len() as u64) as usize];
                cent[c * dim..(c + 1) * dim].copy_from_slice(&data[m * dim..(m + 1) * dim]);
                count[big] -= 1;
                continue;
            }
            for (o, s) in cent[c * dim..(c + 1) * dim].iter_mut().zip(&sum[c * dim..(c + 1) * dim]) {
                *o = (*s / count[c] as f64) as f32;
            }
        }
        progress(it + 1);
    }
    Ok(cent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmeans_finds_well_separated_clusters() {
        let mut rng = SplitMix64::new(3);
        let centres = [[0f32, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
        let mut data = Vec::new();
        for i in 0..400 {
            let c = centres[i % 4];
            data.push(c[0] + rng.normal() as f32 * 0.3);
            data.push(c[1] + rng.normal() as f32 * 0.3);
        }
        let cent = kmeans(&data, 2, 4, 10, 1, &|_| {}).unwrap();
        for c in centres {
            let near = cent.chunks_exact(2).map(|x| (x[0] - c[0]).hypot(x[1] - c[1])).fold(f32::INFINITY, f32::min);
            assert!(near < 0.2, "no centroid near {c:?}: {cent:?}");
        }
        assert!(kmeans(&data[..6], 2, 4, 10, 1, &|_| {}).is_err());
    }
}
