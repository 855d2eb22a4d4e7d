//! Attention over one layer of one sequence, on the blocks as stored:
//! coded tokens are decoded (or scored straight from their codes by an
//! integer dot), raw ones read as f16, sink tokens first. Rotated codecs
//! score a once-rotated query against rotated-domain codes and accumulate
//! values in the rotated domain, undoing the rotation once per head.

use lowbit_quant::simd::f16_to_f32;
use rayon::prelude::*;

use super::pool::Pool;
use super::table::{Progress, SeqLayer};
use super::{LayerCodecs, PlaneCodecs};
use crate::attend::HeadAcc;
use crate::codec;
use crate::layout::{KvLayout, Side};

/// Queries per prefill task.
const QUERY_CHUNK: usize = 16;

/// One layer of one sequence, for reading.
pub(super) struct SeqView<'a> {
    pub lay: &'a KvLayout,
    pub lc: &'a LayerCodecs,
    pub pool: &'a Pool,
    pub sl: &'a SeqLayer,
}

/// Queries scaled by 1/√d, plain and (when keys rotate) rotated.
struct Prepared {
    d: usize,
    heads: usize,
    plain: Vec<f32>,
    rotated: Option<Vec<f32>>,
}

impl Prepared {
    fn get(&self, query: usize, head: usize, rotated: bool) -> &[f32] {
        let at = (query * self.heads + head) * self.d;
        let src = match (&self.rotated, rotated) {
            (Some(r), true) => r,
            _ => &self.plain,
        };
        &src[at..at + self.d]
    }
}

impl SeqView<'_> {
    /// Per-query view of which tokens a plane serves coded: tokens below
    /// the cut-off of query position `p`.
    fn cutoff(&self, pc: &PlaneCodecs, prog: &Progress, p: usize) -> usize {
        match pc.layout {
            None => 0,
            Some(l) => self.lay.coded_target(Some(&l), p + 1).max(prog.base).min(prog.coded),
        }
    }

    /// Attention of the queries at `positions` (rows `first..` of `q`)
    /// for KV head `h` over blocks `blocks`; returns one accumulator per
    /// query and query head of the group.
    fn head_task(&self, h: usize, positions: &[usize], q: &Prepared, first: usize, blocks: std::ops::Range<usize>) -> Vec<HeadAcc> {
        let s = &self.lay.shape;
        let (d, kvd, g, bt, sink) = (s.head_dim, s.kv_dim(), s.group(), self.lay.block, self.lay.sink);
        let (sl, lk, lv) = (self.sl, self.lc.side(Side::Key), self.lc.side(Side::Value));
        let (pk, pv) = (&sl.progress[Side::Key as usize], &sl.progress[Side::Value as usize]);
        let mut accs = vec![HeadAcc::new(d); positions.len() * g];
        let (mut kc, mut kr, mut vc, mut vr) = (vec![0f32; bt * d], vec![0f32; bt * d], vec![0f32; bt * d], vec![0f32; bt * d]);
        let mut scores = vec![0f32; bt.max(sink)];
        if blocks.start == 0 && sink > 0 {
            let (sink_k, sink_v) = (&sl.sink[Side::Key as usize], &sl.sink[Side::Value as usize]);
            let n = sink_k.len() / kvd;
            let (mut sk, mut sv) = (vec![0f32; n * d], vec![0f32; n * d]);
            for t in 0..n {
                f16_to_f32(&sink_k[t * kvd + h * d..t * kvd + (h + 1) * d], &mut sk[t * d..(t + 1) * d]);
                f16_to_f32(&sink_v[t * kvd + h * d..t * kvd + (h + 1) * d], &mut sv[t * d..(t + 1) * d]);
            }
            for (i, &p) in positions.iter().enumerate() {
                let e = (p + 1).min(n);
                for j in 0..g {
                    accs[i * g + j].absorb(q.get(first + i, h * g + j, false), &sk[..e * d], &sv[..e * d], false, &mut scores);
                }
            }
        }

        let cuts: Vec<(usize, usize)> = positions.iter().map(|&p| (self.cutoff(lk, pk, p), self.cutoff(lv, pv, p))).collect();
        let p_max = positions.iter().copied().max().unwrap_or(0);
        let (ck_min, cv_min) = (cuts.iter().map(|c| c.0).min().unwrap_or(0), cuts.iter().map(|c| c.1).min().unwrap_or(0));
        let (ck_max, cv_max) = (cuts.iter().map(|c| c.0).max().unwrap_or(0), cuts.iter().map(|c| c.1).max().unwrap_or(0));
        let k_rot = lk.codec.as_ref().is_some_and(|c| c.rotation().is_some());
        // Codecs with an integer dot product score coded keys straight from
        // their codes against the query quantized once to 8 bits.
        let k_int = lk.codec.as_ref().and_then(|c| c.activation());
        let q8: Vec<Vec<u8>> = match k_int {
            Some(a) => (0..positions.len() * g).map(|ij| codec::quantize_query(a, q.get(first + ij / g, h * g + ij % g, false))).collect(),
            None => Vec::new(),
        };
        let v_rot = lv.codec.as_ref().is_some_and(|c| c.rotation().is_some());
        // An f16 cache (no codec on either plane) is read in place by a single
        // query (decode); a batch converts each block once for all queries.
        let direct = lk.codec.is_none() && lv.codec.is_none() && positions.len() == 1;
        for b in blocks {
            let b0 = b * bt;
            // Sink tokens are not in the blocks; `lo` is the first that is.
            let lo = b0.max(sink);
            let e_max = (b0 + bt).min(p_max + 1);
            if lo >= e_max {
                continue;
            }
            let blk = self.pool.get(sl.table[b]);
            // Keys scored by integer dots are never decoded.
            for (side, decode, cmin, cmax, coded, raw) in
                [(Side::Key, k_int.is_none(), ck_min, ck_max, &mut kc, &mut kr), (Side::Value, true, cv_min, cv_max, &mut vc, &mut vr)]
            {
                let (pc, plane) = (self.lc.side(side), blk.plane(side));
                if pc.codec.is_some() && decode {
                    let c = pc.at(plane.tier);
                    let t1 = e_max.min(cmax);
                    if t1 > lo {
                        let hb = c.head_bytes();
                        c.decode(&plane.codes[h * hb..(h + 1) * hb], lo - b0, t1 - b0, &mut coded[(lo - b0) * d..(t1 - b0) * d]);
                    }
                }
                for t in if direct { 0..0 } else { cmin.max(lo)..e_max } {
                    let at = (t - b0) * kvd + h * d;
                    f16_to_f32(&plane.raw[at..at + d], &mut raw[(t - b0) * d..(t - b0 + 1) * d]);
                }
            }
            let (kplane, vplane) = (blk.plane(Side::Key), blk.plane(Side::Value));
            for (i, (&p, &(ck, cv))) in positions.iter().zip(&cuts).enumerate() {
                let e = (b0 + bt).min(p + 1);
                if lo >= e {
                    continue;
                }
                let mut edges = [lo, ck.clamp(lo, e), cv.clamp(lo, e), e];
                edges[1..3].sort_unstable();
                for w in edges.windows(2) {
                    let (s0, s1) = (w[0], w[1]);
                    if s0 >= s1 {
                        continue;
                    }
                    let (kcoded, vcoded) = (s0 < ck, s0 < cv);
                    if direct {
                        let at = (s0 - b0) * kvd + h * d;
                        for j in 0..g {
                            accs[i * g + j].absorb_f16(q.get(first + i, h * g + j, false), &kplane.raw[at..], &vplane.raw[at..], kvd, s1 - s0, &mut scores);
                        }
                        continue;
                    }
                    let rows = (s0 - b0) * d..(s1 - b0) * d;
                    let keys = if kcoded { &kc[rows.clone()] } else { &kr[rows.clone()] };
                    let vals = if vcoded { &vc[rows.clone()] } else { &vr[rows] };
                    for j in 0..g {
                        let acc = &mut accs[i * g + j];
                        match (kcoded, k_int, &lk.codec) {
                            (true, Some(_), Some(c)) => {
                                let region = &kplane.codes[h * c.head_bytes()..(h + 1) * c.head_bytes()];
                                let sc = &mut scores[..s1 - s0];
                                for (t, s) in (s0..s1).zip(sc.iter_mut()) {
                                    *s = c.dot_q8(region, t - b0, &q8[i * g + j]);
                                }
                                acc.fold(sc, vals, vcoded && v_rot);
                            }
                            _ => acc.absorb(q.get(first + i, h * g + j, kcoded && k_rot), keys, vals, vcoded && v_rot, &mut scores),
                        }
                    }
                }
            }
        }
        accs
    }

    fn prepare(&self, q: &[f32]) -> Prepared {
        let d = self.lay.shape.head_dim;
        let scale = 1.0 / (d as f32).sqrt();
        let plain: Vec<f32> = q.iter().map(|x| x * scale).collect();
        let rotated = self.lc.side(Side::Key).codec.as_ref().and_then(|c| c.rotation()).map(|r| {
            let mut y = plain.clone();
            y.chunks_exact_mut(d).for_each(|row| r.forward(row));
            y
        });
        Prepared { d, heads: self.lay.shape.n_heads, plain, rotated }
    }

    /// Causal attention of one query at position `pos`.
    pub fn attend(&self, pos: usize, q: &[f32], out: &mut [f32]) {
        let s = &self.lay.shape;
        let (g, nkv) = (s.group(), s.n_kv_heads);
        let prepared = self.prepare(q);
        let nblocks = (pos + 1).div_ceil(self.lay.block);
        // Split each head's blocks so every thread has work (flash-decoding).
        let want = (4 * rayon::current_num_threads()).div_ceil(nkv);
        let chunks = want.min(nblocks.div_ceil(8)).max(1);
        let per = nblocks.div_ceil(chunks);
        let tasks: Vec<(usize, usize)> = (0..nkv).flat_map(|h| (0..chunks).map(move |c| (h, c))).collect();
        let run = |&(h, c): &(usize, usize)| self.head_task(h, &[pos], &prepared, 0, c * per..((c + 1) * per).min(nblocks));
        let parts: Vec<Vec<HeadAcc>> = if nblocks * nkv >= 16 { tasks.par_iter().map(run).collect() } else { tasks.iter().map(run).collect() };
        let mut merged: Vec<HeadAcc> = Vec::with_capacity(nkv * g);
        for group in parts.chunks(chunks) {
            let mut acc = group[0].clone();
            for p in &group[1..] {
                for (a, b) in acc.iter_mut().zip(p) {
                    a.merge(b);
                }
            }
            merged.extend(acc);
        }
        let rot = self.lc.side(Side::Value).codec.as_ref().and_then(|c| c.rotation());
        for (acc, o) in merged.into_iter().zip(out.chunks_exact_mut(s.head_dim)) {
            acc.finish(rot, o);
        }
    }

    /// Attention of `n` consecutive queries at positions pos0.. (prefill).
    pub fn attend_batch(&self, pos0: usize, n: usize, q: &[f32], out: &mut [f32]) {
        let s = &self.lay.shape;
        let (d, g, nkv, w) = (s.head_dim, s.group(), s.n_kv_heads, s.n_heads * s.head_dim);
        let prepared = self.prepare(q);
        let nq = n.div_ceil(QUERY_CHUNK);
        let tasks: Vec<(usize, usize)> = (0..nq).flat_map(|c| (0..nkv).map(move |h| (c, h))).collect();
        let parts: Vec<Vec<HeadAcc>> = tasks
            .par_iter()
            .map(|&(c, h)| {
                let i0 = c * QUERY_CHUNK;
                let positions: Vec<usize> = (pos0 + i0..pos0 + (i0 + QUERY_CHUNK).min(n)).collect();
                let nblocks = (positions[positions.len() - 1] + 1).div_ceil(self.lay.block);
                self.head_task(h, &positions, &prepared, i0, 0..nblocks)
            })
            .collect();
        let rot = self.lc.side(Side::Value).codec.as_ref().and_then(|c| c.rotation());
        for (&(c, h), accs) in tasks.iter().zip(parts) {
            for (k, acc) in accs.into_iter().enumerate() {
                let (i, j) = (c * QUERY_CHUNK + k / g, k % g);
                let at = i * w + (h * g + j) * d;
                acc.finish(rot, &mut out[at..at + d]);
            }
        }
    }
}
