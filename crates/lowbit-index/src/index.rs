//! The index: a coarse quantizer (one list for `flat`, k-means centroids
//! for `ivfN`), per list the ids and either raw f32 vectors or residual
//! codes ([`crate::code`]), optionally the raw vectors or 8-bit residual
//! codes too for re-ranking.

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use lowbit_quant::simd;
use rayon::prelude::*;

use crate::code::Code;
use crate::error::{IndexError, Result};
use crate::kmeans::{assign, kmeans, sq_norms};
use crate::pca::PcaCoder;
use crate::spec::{CodeSpec, IndexSpec, Metric, Refine};
use crate::turbo::TurboCoder;
use crate::topk::TopK;

/// Training sample per list, as FAISS (`max_points_per_centroid`).
const SAMPLE_PER_LIST: usize = 256;
const KMEANS_ITERS: usize = 20;
/// Training sample of the PCA code (residuals).
const PCA_SAMPLE: usize = 65536;
/// Results per query at most (with the re-rank factor, candidates per
/// query stay far from overflowing and from exhausting memory).
pub const MAX_K: usize = 1 << 20;

/// Progress of long work: (stage, done, total).
pub type Progress<'a> = &'a (dyn Fn(&str, usize, usize) + Sync);

#[derive(Clone, Debug, Default)]
pub struct List {
    pub ids: Vec<i64>,
    /// `code_bytes` per vector.
    pub codes: Vec<u8>,
    /// f16 bits, `coder.scalars()` per vector.
    pub scal: Vec<u16>,
    /// `dim` floats per vector when raw vectors are stored.
    pub raw: Vec<f32>,
    /// ‖x‖² of each raw vector (derived, not saved).
    pub raw_sq: Vec<f32>,
    /// `pca` code under L2: ⟨V·c, ℓ⟩ of each vector, c the list's centroid
    /// (derived from the codes, not saved), so one set of lookup tables per
    /// query serves every list: ⟨V(q − c), ℓ⟩ = ⟨V·q, ℓ⟩ − cross.
    pub cross: Vec<f32>,
    /// `rerank=R:sq8`: `dim` 8-bit codes of the residual per vector …
    pub fine: Vec<i8>,
    /// … and their scale (residual ≈ scale·code).
    pub fine_scale: Vec<f32>,
}

pub struct Index {
    pub spec: IndexSpec,
    pub metric: Metric,
    pub dim: usize,
    pub seed: u64,
    pub(crate) centroids: Vec<f32>,
    pub(crate) rot_centroids: Vec<f32>,
    pub(crate) cent_sq: Vec<f32>,
    pub(crate) lists: Vec<List>,
    /// The residual code (`None` for raw vectors, or a PCA code not yet trained).
    pub(crate) coder: Option<Code>,
}

/// Search results, `k` per query, nearest first; missing ones have id −1.
/// Distances are squared L2, or inner products for `ip` (larger is closer).
#[derive(Clone, Debug, PartialEq)]
pub struct Hits {
    pub k: usize,
    pub ids: Vec<i64>,
    pub dists: Vec<f32>,
}

impl Hits {
    pub fn ids_of(&self, q: usize) -> &[i64] {
        &self.ids[q * self.k..(q + 1) * self.k]
    }
}

pub(crate) fn check_rows(data: &[f32], dim: usize, what: &str) -> Result<usize> {
    if data.is_empty() {
        return Err(IndexError::Input(format!("no {what} given")));
    }
    if data.len() % dim != 0 {
        return Err(IndexError::Input(format!("{} values are not a whole number of {dim}-dimensional {what}s", data.len())));
    }
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        return Err(IndexError::Input(format!("{what} {} has a non-finite value ({}) at dimension {}", i / dim, data[i], i % dim)));
    }
    Ok(data.len() / dim)
}

impl Index {
    pub fn new(spec: IndexSpec, metric: Metric, dim: usize, seed: u64) -> Result<Index> {
        if dim == 0 {
            return Err(IndexError::Input("dimension must be at least 1".into()));
        }
        let coder = match spec.code {
            Some(CodeSpec::Turbo(b)) => Some(Code::Turbo(TurboCoder::new(dim, b, seed, metric))),
            Some(CodeSpec::Pca(b)) => {
                pca_code_bytes(b, dim, metric)?;
                None
            }
            None => None,
        };
        let mut ix = Index {
            spec,
            metric,
            dim,
            seed,
            centroids: Vec::new(),
            rot_centroids: Vec::new(),
            cent_sq: Vec::new(),
            lists: Vec::new(),
            coder,
        };
        if spec.nlist.is_none() && spec.code.is_none() {
            // Exact flat search needs no training.
            ix.set_centroids(vec![0.0; dim]);
        }
        Ok(ix)
    }

    pub(crate) fn set_centroids(&mut self, c: Vec<f32>) {
        let n = c.len() / self.dim;
        self.cent_sq = sq_norms(&c, self.dim);
        self.rot_centroids = c.clone();
        if let Some(coder) = &self.coder {
            self.rot_centroids.chunks_exact_mut(self.dim).for_each(|r| coder.rotate(r));
        }
        self.centroids = c;
        self.lists.resize(n, List::default());
    }

    pub fn is_trained(&self) -> bool {
        !self.centroids.is_empty()
    }

    pub fn nlist(&self) -> usize {
        self.centroids.len() / self.dim
    }

    pub fn len(&self) -> usize {
        self.lists.iter().map(|l| l.ids.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether raw f32 vectors are kept (exact search or re-ranking).
    pub fn stores_raw(&self) -> bool {
        self.spec.code.is_none() || self.spec.rerank.is_some_and(|r| r.with == Refine::F32)
    }

    /// Whether 8-bit residual codes are kept for re-ranking.
    pub fn stores_sq8(&self) -> bool {
        self.spec.rerank.is_some_and(|r| r.with == Refine::Sq8)
    }

    /// Stored bytes per vector, ids excluded: codes, per-vector scalars and
    /// raw vectors or 8-bit re-ranking codes when kept.
    pub fn bytes_per_vector(&self) -> usize {
        let code = match self.spec.code {
            Some(CodeSpec::Pca(b)) => b as usize * self.dim / 8,
            _ => self.coder.as_ref().map_or(0, Code::bytes_per_vector),
        };
        code
            + if self.stores_raw() { 4 * self.dim } else { 0 }
            + if self.stores_sq8() { self.dim + 4 } else { 0 }
    }

    /// Learn the coarse quantizer (`ivfN`: k-means on a sample of at most
    /// 256 vectors per list; `flat` with a code: the mean the residuals are
    /// taken from), then a `pca` code on the residuals of a sample (the
    /// `turbo` code needs no training).
    pub fn train(&mut self, data: &[f32], progress: Progress) -> Result<()> {
        let n = check_rows(data, self.dim, "training vector")?;
        let d = self.dim;
        match self.spec.nlist {
            None => {
                let mut mean = vec![0f64; d];
                for r in data.chunks_exact(d) {
                    for (m, v) in mean.iter_mut().zip(r) {
                        *m += *v as f64;
                    }
                }
                self.set_centroids(mean.iter().map(|m| (m / n as f64) as f32).collect());
            }
            Some(k) => {
                let sample = sample_rows(data, d, k * SAMPLE_PER_LIST, self.seed ^ 0x5341_4d50);
                let c = kmeans(&sample, d, k, KMEANS_ITERS, self.seed, &|it| progress("train", it, KMEANS_ITERS))?;
                self.set_centroids(c);
            }
        }
        if let Some(CodeSpec::Pca(b)) = self.spec.code {
            progress("train pca", 0, 1);
            let mut sample = sample_rows(data, d, PCA_SAMPLE, self.seed ^ 0x5043_41);
            let lists = self.coarse_assign(&sample);
            for (r, &l) in sample.chunks_exact_mut(d).zip(&lists) {
                r.iter_mut().zip(&self.centroids[l as usize * d..(l as usize + 1) * d]).for_each(|(v, c)| *v -= c);
            }
            let code_bytes = pca_code_bytes(b, d, self.metric)?;
            self.coder = Some(Code::Pca(PcaCoder::train(&sample, d, code_bytes, scalars(self.metric))));
            // Rotate the centroids into the trained code's domain.
            self.set_centroids(self.centroids.clone());
            progress("train pca", 1, 1);
        }
        Ok(())
    }

    /// The list of each row: nearest centroid (L2) or largest inner product.
    fn coarse_assign(&self, data: &[f32]) -> Vec<u32> {
        if self.nlist() == 1 {
            return vec![0; data.len() / self.dim];
        }
        match self.metric {
            Metric::L2 => assign(data, self.dim, &self.centroids).into_iter().map(|(c, _)| c).collect(),
            Metric::Ip => data
                .par_chunks(self.dim)
                .map_init(
                    || vec![0f32; self.nlist()],
                    |dots, x| {
                        simd::dot_rows(x, &self.centroids, dots);
                        (0..dots.len()).fold(0, |b, i| if dots[i] > dots[b] { i } else { b }) as u32
                    },
                )
                .collect(),
        }
    }

    /// Add vectors with their ids (default: 0, 1, … continuing the count).
    pub fn add(&mut self, data: &[f32], ids: Option<&[i64]>, progress: Progress) -> Result<()> {
        if !self.is_trained() {
            return Err(IndexError::NotTrained);
        }
        let n = check_rows(data, self.dim, "vector")?;
        let start = self.len() as i64;
        let ids: Vec<i64> = match ids {
            Some(ids) if ids.len() != n => return Err(IndexError::Input(format!("{n} vectors but {} ids", ids.len()))),
            Some(ids) => ids.to_vec(),
            None => (start..start + n as i64).collect(),
        };
        let d = self.dim;
        let list_of = self.coarse_assign(data);
        const CHUNK: usize = 1024;
        if let Some(coder) = &self.coder {
            let (rb, sc) = (coder.code_bytes(), coder.scalars());
            let mut codes = vec![0u8; n * rb];
            let mut scal = vec![0u16; n * sc];
            let done = std::sync::atomic::AtomicUsize::new(0);
            codes
                .par_chunks_mut(CHUNK * rb)
                .zip(scal.par_chunks_mut(CHUNK * sc))
                .enumerate()
                .for_each(|(ch, (codes, scal))| {
                    let (mut r, mut idx) = (vec![0f32; d], vec![0u8; d]);
                    for (j, (c, s)) in codes.chunks_exact_mut(rb).zip(scal.chunks_exact_mut(sc)).enumerate() {
                        let i = ch * CHUNK + j;
                        let l = list_of[i] as usize;
                        for ((o, x), m) in r.iter_mut().zip(&data[i * d..(i + 1) * d]).zip(&self.centroids[l * d..(l + 1) * d]) {
                            *o = x - m;
                        }
                        coder.encode(&mut r, &mut idx, c, s);
                    }
                    let n_done = done.fetch_add(codes.len() / rb, std::sync::atomic::Ordering::Relaxed) + codes.len() / rb;
                    progress("add", n_done, n);
                });
            for i in 0..n {
                let l = &mut self.lists[list_of[i] as usize];
                l.codes.extend_from_slice(&codes[i * rb..(i + 1) * rb]);
                l.scal.extend_from_slice(&scal[i * sc..(i + 1) * sc]);
            }
        }
        let (raw, sq8) = (self.stores_raw(), self.stores_sq8());
        for i in 0..n {
            let li = list_of[i] as usize;
            let x = &data[i * d..(i + 1) * d];
            if sq8 {
                let c = &self.centroids[li * d..(li + 1) * d];
                let amax = x.iter().zip(c).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                let scale = amax / 127.0;
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                let l = &mut self.lists[li];
                l.fine.extend(x.iter().zip(c).map(|(a, b)| ((a - b) * inv).round() as i8));
                l.fine_scale.push(scale);
            }
            let l = &mut self.lists[li];
            l.ids.push(ids[i]);
            if raw {
                l.raw.extend_from_slice(x);
                l.raw_sq.push(x.iter().map(|v| v * v).sum());
            }
        }
        self.refresh_cross();
        progress("add", n, n);
        Ok(())
    }

    /// Whether lists keep the `cross` term (a `pca` code under L2).
    fn uses_cross(&self) -> bool {
        self.metric == Metric::L2 && matches!(self.coder, Some(Code::Pca(_)))
    }

    /// Recompute every list's `cross` term from its codes.
    pub(crate) fn refresh_cross(&mut self) {
        if !self.uses_cross() {
            return;
        }
        let (coder, d, rc) = (self.coder.as_ref().unwrap(), self.dim, &self.rot_centroids);
        self.lists.par_iter_mut().enumerate().for_each(|(l, list)| {
            let mut tables = Vec::new();
            let y = &rc[l * d..(l + 1) * d];
            let c0 = coder.prepare(y, &mut tables);
            list.cross.resize(list.ids.len(), 0.0);
            coder.scan(&list.codes, y, &tables, c0, &mut list.cross);
        });
    }

    /// Remove every vector whose id is in `ids`; returns how many went.
    pub fn remove(&mut self, ids: &[i64]) -> usize {
        let gone: std::collections::HashSet<i64> = ids.iter().copied().collect();
        let (rb, sc) = self.coder.as_ref().map_or((0, 0), |c| (c.code_bytes(), c.scalars()));
        let (d, raw, sq8) = (self.dim, self.stores_raw(), self.stores_sq8());
        let mut removed = 0;
        for l in &mut self.lists {
            let mut w = 0;
            for r in 0..l.ids.len() {
                if gone.contains(&l.ids[r]) {
                    removed += 1;
                    continue;
                }
                if w != r {
                    l.ids[w] = l.ids[r];
                    l.codes.copy_within(r * rb..(r + 1) * rb, w * rb);
                    l.scal.copy_within(r * sc..(r + 1) * sc, w * sc);
                    if raw {
                        l.raw.copy_within(r * d..(r + 1) * d, w * d);
                        l.raw_sq[w] = l.raw_sq[r];
                    }
                    if sq8 {
                        l.fine.copy_within(r * d..(r + 1) * d, w * d);
                        l.fine_scale[w] = l.fine_scale[r];
                    }
                }
                w += 1;
            }
            l.ids.truncate(w);
            l.codes.truncate(w * rb);
            l.scal.truncate(w * sc);
            if raw {
                l.raw.truncate(w * d);
                l.raw_sq.truncate(w);
            }
            if sq8 {
                l.fine.truncate(w * d);
                l.fine_scale.truncate(w);
            }
        }
        self.refresh_cross();
        removed
    }

    /// The `k` nearest stored vectors of each query, visiting the `nprobe`
    /// closest lists; threads over queries.
    pub fn search(&self, queries: &[f32], k: usize, nprobe: usize) -> Result<Hits> {
        if !self.is_trained() {
            return Err(IndexError::NotTrained);
        }
        let nq = check_rows(queries, self.dim, "query")?;
        if k == 0 || k > MAX_K {
            return Err(IndexError::Input(format!("k must be in 1..={MAX_K}, got {k}")));
        }
        let nprobe = nprobe.clamp(1, self.nlist());
        let mut ids = vec![-1i64; nq * k];
        let mut dists = vec![f32::NAN; nq * k];
        ids.par_chunks_mut(k).zip(dists.par_chunks_mut(k)).enumerate().for_each_init(Scratch::default, |s, (i, (ids, dists))| {
            self.search_one(&queries[i * self.dim..(i + 1) * self.dim], k, nprobe, s, ids, dists)
        });
        Ok(Hits { k, ids, dists })
    }

    fn search_one(&self, q: &[f32], k: usize, nprobe: usize, s: &mut Scratch, ids: &mut [i64], dists: &mut [f32]) {
        let d = self.dim;
        let nl = self.nlist();
        let qsq: f32 = q.iter().map(|v| v * v).sum();
        // Coarse distances: squared L2, or −⟨q, c⟩ for inner product.
        s.coarse.resize(nl, 0.0);
        simd::dot_rows(q, &self.centroids, &mut s.coarse);
        for (c, sq) in s.coarse.iter_mut().zip(&self.cent_sq) {
            *c = match self.metric {
                Metric::L2 => qsq - 2.0 * *c + sq,
                Metric::Ip => -*c,
            };
        }
        s.order.clear();
        s.order.extend(0..nl as u32);
        if nprobe < nl {
            s.order.select_nth_unstable_by(nprobe, |&a, &b| s.coarse[a as usize].total_cmp(&s.coarse[b as usize]));
            s.order.truncate(nprobe);
        }
        let keep = k * self.spec.rerank.map_or(1, |r| r.factor);
        let mut top = TopK::<(u32, u32)>::new(keep);
        if let Some(coder) = &self.coder {
            s.qr.clear();
            s.qr.extend_from_slice(q);
            coder.rotate(&mut s.qr);
            if self.metric == Metric::Ip || self.uses_cross() {
                s.c0 = coder.prepare(&s.qr, &mut s.tables);
            }
        }
        for &l in &s.order {
            let list = &self.lists[l as usize];
            let n = list.ids.len();
            if n == 0 {
                continue;
            }
            s.dots.resize(n, 0.0);
            let base = s.coarse[l as usize];
            match &self.coder {
                None => {
                    simd::dot_rows(q, &list.raw, &mut s.dots);
                    for (i, (&dot, &xsq)) in s.dots.iter().zip(&list.raw_sq).enumerate() {
                        let dist = match self.metric {
                            Metric::L2 => qsq - 2.0 * dot + xsq,
                            Metric::Ip => -dot,
                        };
                        top.push(dist, (l, i as u32));
                    }
                }
                Some(coder) => {
                    let cross = self.uses_cross();
                    let y: &[f32] = match self.metric {
                        Metric::L2 if !cross => {
                            s.qd.clear();
                            s.qd.extend(s.qr.iter().zip(&self.rot_centroids[l as usize * d..(l as usize + 1) * d]).map(|(a, b)| a - b));
                            &s.qd
                        }
                        _ => &s.qr,
                    };
                    coder.scan(&list.codes, y, &s.tables, s.c0, &mut s.dots);
                    if cross {
                        s.dots.iter_mut().zip(&list.cross).for_each(|(d, c)| *d -= c);
                    }
                    // Bulk f16 → f32 (F16C when the CPU has it).
                    s.scal.resize(list.scal.len(), 0.0);
                    let halves: &[f16] = list.scal.reinterpret_cast();
                    halves.convert_to_f32_slice(&mut s.scal);
                    match self.metric {
                        Metric::L2 => {
                            for (i, (dot, sc)) in s.dots.iter().zip(s.scal.chunks_exact(2)).enumerate() {
                                top.push(base - 2.0 * sc[0] * dot + sc[1] * sc[1], (l, i as u32));
                            }
                        }
                        Metric::Ip => {
                            for (i, (dot, &sc)) in s.dots.iter().zip(&s.scal).enumerate() {
                                top.push(base - sc * dot, (l, i as u32));
                            }
                        }
                    }
                }
            }
        }
        let mut found = top.into_sorted();
        if let Some(r) = self.spec.rerank {
            let mut exact = TopK::new(k);
            for &(_, (l, i)) in &found {
                let (list, i) = (&self.lists[l as usize], i as usize);
                let dist = match r.with {
                    Refine::F32 => {
                        let dot = simd::dot_f32(q, &list.raw[i * d..(i + 1) * d]);
                        match self.metric {
                            Metric::L2 => qsq - 2.0 * dot + list.raw_sq[i],
                            Metric::Ip => -dot,
                        }
                    }
                    Refine::Sq8 => {
                        // Distance to c + scale·code, c the list's centroid.
                        let c = &self.centroids[l as usize * d..(l as usize + 1) * d];
                        let sc = list.fine_scale[i];
                        let code = &list.fine[i * d..(i + 1) * d];
                        match self.metric {
                            Metric::L2 => code.iter().zip(q).zip(c).map(|((&k, a), b)| (a - b - sc * k as f32).powi(2)).sum(),
                            // coarse = −⟨q, c⟩.
                            Metric::Ip => s.coarse[l as usize] - sc * code.iter().zip(q).map(|(&k, a)| k as f32 * a).sum::<f32>(),
                        }
                    }
                };
                exact.push(dist, (l, i as u32));
            }
            found = exact.into_sorted();
        }
        for (j, (dist, (l, i))) in found.into_iter().take(k).enumerate() {
            ids[j] = self.lists[l as usize].ids[i as usize];
            dists[j] = match self.metric {
                Metric::L2 => dist.max(0.0),
                Metric::Ip => -dist,
            };
        }
    }
}

#[derive(Default)]
struct Scratch {
    coarse: Vec<f32>,
    order: Vec<u32>,
    qr: Vec<f32>,
    qd: Vec<f32>,
    dots: Vec<f32>,
    scal: Vec<f32>,
    /// The PCA code's lookup tables for the current query (or query − centroid).
    tables: Vec<f32>,
    c0: f32,
}

/// f16 scalars per coded vector: s, and ‖r̂‖ for L2.
pub(crate) fn scalars(metric: Metric) -> usize {
    if metric == Metric::L2 {
        2
    } else {
        1
    }
}

/// Code bytes of `pcaB` on `dim` dimensions: B·dim/8 in all, less the scalars.
pub(crate) fn pca_code_bytes(bits: u32, dim: usize, metric: Metric) -> Result<usize> {
    let total = bits as usize * dim / 8;
    let sc = 2 * scalars(metric);
    if total <= sc {
        return Err(IndexError::Input(format!(
            "pca{bits} on {dim} dimensions stores {total} bytes per vector, not more than its {sc} bytes of scalars: use more bits"
        )));
    }
    Ok(total - sc)
}

/// At most `want` rows of `data`, drawn without replacement (all when fewer).
fn sample_rows(data: &[f32], d: usize, want: usize, seed: u64) -> Vec<f32> {
    let n = data.len() / d;
    if want >= n {
        return data.to_vec();
    }
    let mut rng = lowbit_quant::rng::SplitMix64::new(seed);
    let mut pick: Vec<usize> = (0..n).collect();
    for i in 0..want {
        let j = i + (rng.next_u64() % (n - i) as u64) as usize;
        pick.swap(i, j);
    }
    pick[..want].iter().flat_map(|&i| data[i * d..(i + 1) * d].iter().copied()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut r = lowbit_quant::rng::SplitMix64::new(seed);
        (0..n * d).map(|_| r.normal() as f32).collect()
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let spec = IndexSpec::parse("ivf4,turbo4").unwrap();
        let mut ix = Index::new(spec, Metric::L2, 8, 1).unwrap();
        let x = data(100, 8, 1);
        assert!(matches!(ix.add(&x, None, &|_, _, _| {}), Err(IndexError::NotTrained)));
        assert!(matches!(ix.search(&x[..8], 1, 1), Err(IndexError::NotTrained)));
        assert!(ix.train(&x[..16], &|_, _, _| {}).is_err(), "2 vectors cannot make 4 lists");
        assert!(ix.train(&[], &|_, _, _| {}).is_err());
        ix.train(&x, &|_, _, _| {}).unwrap();
        assert!(ix.add(&x[..12], None, &|_, _, _| {}).unwrap_err().to_string().contains("8-dimensional"));
        let mut nan = x.clone();
        nan[13] = f32::NAN;
        let e = ix.add(&nan, None, &|_, _, _| {}).unwrap_err().to_string();
        assert!(e.contains("vector 1") && e.contains("NaN"), "{e}");
        assert!(ix.add(&x, Some(&[1, 2]), &|_, _, _| {}).is_err());
        ix.add(&x, None, &|_, _, _| {}).unwrap();
        assert!(ix.search(&x[..8], 0, 1).is_err());
        assert!(ix.search(&x[..8], 100_000_000_000, 1).unwrap_err().to_string().contains("k must be"));
        assert!(ix.search(&nan[8..16], 3, 1).is_err());
        assert!(Index::new(spec, Metric::L2, 0, 1).is_err());
        // More results than vectors: the rest are −1.
        let h = ix.search(&x[..8], 500, 4).unwrap();
        assert_eq!(h.ids.iter().filter(|&&i| i >= 0).count(), 100);
        assert_eq!(h.ids[100..], vec![-1; 400][..]);
    }

    #[test]
    fn a_stored_vector_finds_itself_first() {
        for (spec, metric) in [("flat", Metric::L2), ("flat,turbo4", Metric::L2), ("ivf8,turbo3", Metric::L2), ("ivf8,turbo4,rerank=4", Metric::Ip), ("ivf8,turbo2,rerank=8:sq8", Metric::L2), ("flat,turbo1,rerank=16:sq8", Metric::Ip), ("flat,pca4", Metric::L2), ("ivf8,pca3", Metric::Ip), ("ivf8,pca2,rerank=8", Metric::L2)] {
            let mut ix = Index::new(IndexSpec::parse(spec).unwrap(), metric, 48, 3).unwrap();
            let mut x = data(400, 48, 2);
            if metric == Metric::Ip {
                for r in x.chunks_exact_mut(48) {
                    let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
                    r.iter_mut().for_each(|v| *v /= n);
                }
            }
            if !ix.is_trained() {
                ix.train(&x, &|_, _, _| {}).unwrap();
            }
            let ids: Vec<i64> = (0..400).map(|i| 1000 + 3 * i).collect();
            ix.add(&x, Some(&ids), &|_, _, _| {}).unwrap();
            let h = ix.search(&x[..20 * 48], 1, 8).unwrap();
            let hits = (0..20).filter(|&q| h.ids[q] == 1000 + 3 * q as i64).count();
            assert!(hits >= 19, "{spec}: {hits}/20 found themselves");
        }
    }
}
