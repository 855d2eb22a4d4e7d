//! The residual codes an index can store, behind one interface: the
//! untrained rotation code ([`crate::turbo`]) and the trained principal-axes
//! code ([`crate::pca`]). Both store f16 scalars s (and ‖r̂‖ for L2) per
//! vector, so a score is s·⟨y, ℓ⟩ for a query y in the code's domain.

use lowbit_quant::simd;

use crate::pca::PcaCoder;
use crate::turbo::{code_dots, TurboCoder};

pub enum Code {
    Turbo(TurboCoder),
    Pca(PcaCoder),
}

impl Code {
    pub fn code_bytes(&self) -> usize {
        match self {
            Code::Turbo(c) => c.code_bytes(),
            Code::Pca(c) => c.code_bytes,
        }
    }

    /// f16 scalars per vector.
    pub fn scalars(&self) -> usize {
        match self {
            Code::Turbo(c) => c.scalars,
            Code::Pca(c) => c.scalars,
        }
    }

    pub fn bytes_per_vector(&self) -> usize {
        self.code_bytes() + 2 * self.scalars()
    }

    /// Code the residual `r` (overwritten as scratch).
    pub fn encode(&self, r: &mut [f32], idx: &mut [u8], codes: &mut [u8], scal: &mut [u16]) {
        match self {
            Code::Turbo(c) => c.encode(r, idx, codes, scal),
            Code::Pca(c) => c.encode(r, idx, codes, scal),
        }
    }

    /// Map a query (or centroid) into the code's domain, in place.
    pub fn rotate(&self, y: &mut [f32]) {
        match self {
            Code::Turbo(c) => c.rotate(y),
            Code::Pca(c) => {
                let mut p = vec![0f32; y.len()];
                c.project(y, &mut p);
                y.copy_from_slice(&p);
            }
        }
    }

    /// Per-query work before scanning against `y` (in the code's domain):
    /// the PCA code's lookup tables; returns their constant part.
    pub fn prepare(&self, y: &[f32], tables: &mut Vec<f32>) -> f32 {
        match self {
            Code::Turbo(_) => 0.0,
            Code::Pca(c) => c.tables(y, tables),
        }
    }

    /// out[i] = ⟨y, ℓ_i⟩ for the rows of `codes` (`prepare` done for `y`).
    pub fn scan(&self, codes: &[u8], y: &[f32], tables: &[f32], c0: f32, out: &mut [f32]) {
        match self {
            Code::Turbo(c) => code_dots(codes, c.code_bytes(), c.bits, &c.cb.levels, y, out),
            Code::Pca(c) => simd::table_dots(codes, c.code_bytes, tables, c0, out),
        }
    }
}
