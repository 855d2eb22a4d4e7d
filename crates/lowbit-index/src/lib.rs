//! lowbit-index: compressed vector search.
//!
//! The same rotation + codebook quantizers lowbit uses for KV caches,
//! applied to embedding vectors. An [`Index`] is chosen by a spec string
//! ([`IndexSpec`], like FAISS's `index_factory`): `flat` (exact), `flat,turbo4`,
//! `ivf256,turbo4`, `ivf256,turbo2,rerank=8`, `ivf64,pca4`. Vectors are
//! coded as residuals from their coarse centroid ([`turbo`]: a seeded
//! rotation, no training; [`pca`]: trained principal axes and codebooks at
//! exactly FAISS's bytes), searched with asymmetric distance computation
//! (an f32 query, rotated once, against packed codes), and
//! optionally re-ranked with the stored f32 vectors. Indexes are saved in a
//! versioned, checksummed file ([`file`]).
//!
//! This crate knows codecs (lowbit-quant) and vector files; it knows
//! nothing about models or text.

pub mod code;
pub mod error;
pub mod file;
pub mod index;
pub mod kmeans;
pub mod pca;
pub mod spec;
pub mod topk;
pub mod turbo;
pub mod vecio;

pub use error::{IndexError, Result};
pub use index::{Hits, Index, Progress};
pub use spec::{CodeSpec, IndexSpec, Metric, Refine, Rerank};
pub use vecio::Vectors;

/// Recall of `hits` against ground truth: for each query, the share of
/// its true `at` nearest (first `at` columns of `gt`) found among the first
/// `at` results, averaged over queries ("R@R" / "k-recall@k").
pub fn recall_at(hits: &Hits, gt: &Vectors<i32>, at: usize) -> f64 {
    let nq = hits.ids.len() / hits.k;
    let at_h = at.min(hits.k);
    let at_g = at.min(gt.dim);
    let mut sum = 0.0;
    for q in 0..nq {
        let truth = &gt.row(q)[..at_g];
        let got = &hits.ids_of(q)[..at_h];
        sum += truth.iter().filter(|t| got.contains(&(**t as i64))).count() as f64 / at_g as f64;
    }
    sum / nq as f64
}
