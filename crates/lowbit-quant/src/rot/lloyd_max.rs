//! Lloyd–Max (MSE-optimal scalar) codebooks for a known density, computed
//! numerically once and cached: N(0,1), the law of one coordinate of a
//! random unit vector in R^d scaled by sqrt(d) (a Beta law, which tends to
//! N(0,1) as d grows).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A scalar codebook: sorted levels and the decision boundaries between them.
#[derive(Clone, Debug)]
pub struct Codebook {
    pub levels: Vec<f32>,
    /// `levels.len() - 1` midpoints; code = number of boundaries below x.
    pub bounds: Vec<f32>,
    /// Expected squared error per coordinate under the design density.
    pub mse: f64,
    /// Probability of each level (the mass of its cell) under the design
    /// density.
    pub mass: Vec<f64>,
}

impl Codebook {
    #[inline]
    pub fn quantize(&self, x: f32) -> u8 {
        self.bounds.iter().filter(|&&b| x > b).count() as u8
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Law {
    Gaussian,
    /// Coordinate of a uniform unit vector in R^d, times sqrt(d).
    UnitSphere(usize),
}

impl Law {
    fn support(self) -> (f64, f64) {
        match self {
            Law::Gaussian => (-9.0, 9.0),
            Law::UnitSphere(d) => {
                let r = (d as f64).sqrt().min(9.0);
                (-r, r)
            }
        }
    }

    fn density(self, x: f64) -> f64 {
        match self {
            Law::Gaussian => (-0.5 * x * x).exp(),
            Law::UnitSphere(d) => {
                let t = 1.0 - x * x / d as f64;
                if t <= 0.0 {
                    0.0
                } else {
                    t.powf((d as f64 - 3.0) / 2.0)
                }
            }
        }
    }
}

const GRID: usize = 1 << 16;

fn design(law: Law, bits: u32) -> Codebook {
    let (lo, hi) = law.support();
    let h = (hi - lo) / GRID as f64;
    // Prefix sums of mass, first moment and second moment on cell midpoints.
    let mut m0 = vec![0f64; GRID + 1];
    let mut m1 = vec![0f64; GRID + 1];
    let mut m2 = vec![0f64; GRID + 1];
    for i in 0..GRID {
        let x = lo + (i as f64 + 0.5) * h;
        let p = law.density(x) * h;
        m0[i + 1] = m0[i] + p;
        m1[i + 1] = m1[i] + p * x;
        m2[i + 1] = m2[i] + p * x * x;
    }
    let total = m0[GRID];
    let idx = |b: f64| (((b - lo) / h).round().max(0.0) as usize).min(GRID);
    let k = 1usize << bits;
    // Start from quantiles.
    let mut levels: Vec<f64> = (0..k)
        .map(|j| {
            let target = total * (j as f64 + 0.5) / k as f64;
            let i = m0.partition_point(|&m| m < target).min(GRID);
            lo + i as f64 * h
        })
        .collect();
    let mut bounds = vec![0f64; k - 1];
    for _ in 0..2000 {
        for j in 0..k - 1 {
            bounds[j] = 0.5 * (levels[j] + levels[j + 1]);
        }
        let mut moved = 0f64;
        for j in 0..k {
            let a = if j == 0 { 0 } else { idx(bounds[j - 1]) };
            let b = if j == k - 1 { GRID } else { idx(bounds[j]) };
            let mass = m0[b] - m0[a];
            if mass > 0.0 {
                let c = (m1[b] - m1[a]) / mass;
                moved = moved.max((c - levels[j]).abs());
                levels[j] = c;
            }
        }
        if moved < 1e-10 {
            break;
        }
    }
    for j in 0..k - 1 {
        bounds[j] = 0.5 * (levels[j] + levels[j + 1]);
    }
    let mut err = 0f64;
    let mut mass = vec![0f64; k];
    for j in 0..k {
        let a = if j == 0 { 0 } else { idx(bounds[j - 1]) };
        let b = if j == k - 1 { GRID } else { idx(bounds[j]) };
        let c = levels[j];
        err += (m2[b] - m2[a]) - 2.0 * c * (m1[b] - m1[a]) + c * c * (m0[b] - m0[a]);
        mass[j] = (m0[b] - m0[a]) / total;
    }
    Codebook {
        levels: levels.iter().map(|&v| v as f32).collect(),
        bounds: bounds.iter().map(|&v| v as f32).collect(),
        mse: err / total,
        mass,
    }
}

/// The cached `bits`-bit Lloyd–Max codebook for `law` (bits in 1..=8).
pub fn codebook(law: Law, bits: u32) -> Arc<Codebook> {
    static CACHE: OnceLock<Mutex<HashMap<(Law, u32), Arc<Codebook>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&(law, bits)) {
        return c.clone();
    }
    let c = Arc::new(design(law, bits));
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert((law, bits), c.clone());
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_codebooks_match_the_known_mse() {
        // Max (1960) / the TurboQuant paper: 0.3634, 0.1175, 0.03454, 0.009497.
        let known = [0.3634, 0.1175, 0.03454, 0.009497];
        for (b, &k) in (1..=4).zip(&known) {
            let c = codebook(Law::Gaussian, b);
            assert!((c.mse - k).abs() / k < 0.005, "b={b}: {} vs {k}", c.mse);
            assert_eq!(c.levels.len(), 1 << b);
        }
        let one = codebook(Law::Gaussian, 1);
        assert!((one.levels[1] - 0.7979).abs() < 1e-3); // sqrt(2/pi)
    }

    #[test]
    fn unit_sphere_law_approaches_gaussian() {
        let g = codebook(Law::Gaussian, 3);
        let s = codebook(Law::UnitSphere(4096), 3);
        for (a, b) in g.levels.iter().zip(&s.levels) {
            assert!((a - b).abs() < 0.01);
        }
    }
}
