//! Writing a sequence's tokens: raw f16 rows into blocks, coding them as
//! they leave the window, re-coding aged blocks at their tier's width,
//! freeing raw rows of fully coded blocks, and truncation.

use std::sync::Arc;

use half::f16;
use half::slice::HalfFloatSliceExt;
use lowbit_quant::simd::f16_to_f32;

use super::pool::{Block, Pool};
use super::table::SeqLayer;
use super::LayerCodecs;
use crate::codec::PlaneCodec;
use crate::layout::{KvLayout, Side};

/// One layer of one sequence, open for writing.
pub(super) struct SeqEdit<'a> {
    pub lay: &'a KvLayout,
    pub lc: &'a LayerCodecs,
    pub pool: &'a mut Pool,
    pub sl: &'a mut SeqLayer,
}

impl SeqEdit<'_> {
    /// Store `n` positions from `pos0 <= len` (dropping any from `pos0` on
    /// first); `k` and `v` hold n·kv_dim floats.
    pub fn store(&mut self, pos0: usize, k: &[f32], v: &[f32]) {
        let kvd = self.lay.shape.kv_dim();
        let n = k.len() / kvd;
        self.settle();
        let total = self.sl.len;
        // The sink's share.
        let s = self.lay.sink;
        let in_sink = s.saturating_sub(pos0).min(n);
        for (side, src) in [(Side::Key, k), (Side::Value, v)] {
            let dst = &mut self.sl.sink[side as usize];
            dst.truncate(pos0.min(s) * kvd);
            dst.extend(src[..in_sink * kvd].iter().map(|&x| f16::from_f32(x)));
        }
        if pos0 < total {
            self.truncate(pos0);
        }
        let (bt, raw_len) = (self.lay.block, self.lay.raw_len());
        for i in 0..n {
            let t = pos0 + i;
            let b = t / bt;
            while self.sl.table.len() <= b {
                let id = self.pool.alloc(Block::default());
                self.sl.table.push(id);
            }
            if t < s {
                continue;
            }
            let blk = self.pool.unique(&mut self.sl.table[b]);
            let slot = t % bt;
            for (side, src) in [(Side::Key, &k[i * kvd..(i + 1) * kvd]), (Side::Value, &v[i * kvd..(i + 1) * kvd])] {
                let plane = blk.plane_mut(side);
                if plane.raw.is_empty() {
                    plane.raw = vec![f16::ZERO; raw_len];
                }
                plane.raw[slot * kvd..(slot + 1) * kvd].convert_from_f32_slice(src);
            }
        }
        let len = pos0 + n;
        self.sl.len = len;
        for side in Side::BOTH {
            let target = self.lay.coded_target(self.lc.side(side).layout.as_ref(), len);
            self.code(side, target);
        }
    }

    /// Free the raw rows of blocks whose tokens are all coded, after
    /// moving aged blocks to their tier. Runs at the start of a store, so
    /// the previous batch's queries could still read the raw rows.
    pub fn settle(&mut self) {
        self.retier();
        let bt = self.lay.block;
        for side in Side::BOTH {
            if self.lc.side(side).codec.is_none() {
                continue;
            }
            let p = &mut self.sl.progress[side as usize];
            // The watermark only passes full blocks, so a partial one is
            // checked again after it grows.
            for b in p.settled..self.sl.table.len() {
                if p.coded < ((b + 1) * bt).min(self.sl.len) {
                    break;
                }
                // Every holder of a shared block has the same tokens coded.
                self.pool.get_mut(self.sl.table[b]).plane_mut(side).raw = Vec::new();
            }
            p.settled = p.settled.max(p.coded / bt);
            p.base = p.coded;
        }
    }

    /// Re-code the fully coded blocks whose age moved them to a later tier
    /// (decode, undo the rotation, encode at the new width). One watermark
    /// per tier age keeps this O(1) amortized per block.
    fn retier(&mut self) {
        let ages = &self.lay.tier_ages;
        if ages.is_empty() {
            return;
        }
        let (d, bt) = (self.lay.shape.head_dim, self.lay.block);
        let mut rows = vec![0f32; bt * d];
        for side in Side::BOTH {
            let tiers = &self.lc.side(side).tiers;
            if tiers.len() < 2 {
                continue;
            }
            for (j, &age) in ages.iter().enumerate() {
                loop {
                    let p = &mut self.sl.progress[side as usize];
                    p.tiered.resize(ages.len(), 0);
                    let b = p.tiered[j];
                    let hi = (b + 1) * bt;
                    if hi > p.coded || self.sl.len - hi < age {
                        break;
                    }
                    p.tiered[j] += 1;
                    self.recode(side, b, tiers, &mut rows);
                }
            }
        }
    }

    /// Bring block `b` of a plane to the tier its age asks for.
    fn recode(&mut self, side: Side, b: usize, tiers: &[Arc<dyn PlaneCodec>], rows: &mut [f32]) {
        let (d, bt, nh) = (self.lay.shape.head_dim, self.lay.block, self.lay.shape.n_kv_heads);
        let (lo, hi) = ((b * bt).max(self.lay.sink), (b + 1) * bt);
        let want = self.lay.tier_at(self.sl.len, hi);
        let have = self.pool.get(self.sl.table[b]).plane(side).tier as usize;
        if lo >= hi || want <= have {
            return;
        }
        let plane = self.pool.unique(&mut self.sl.table[b]).plane_mut(side);
        let (from, to) = (&tiers[have], &tiers[want]);
        let mut codes = vec![0u8; nh * to.head_bytes()];
        let rows = &mut rows[..(hi - lo) * d];
        for h in 0..nh {
            from.decode(&plane.codes[h * from.head_bytes()..(h + 1) * from.head_bytes()], lo - b * bt, hi - b * bt, rows);
            if let Some(r) = from.rotation() {
                rows.chunks_exact_mut(d).for_each(|row| r.inverse(row));
            }
            to.encode(rows, lo - b * bt, &mut codes[h * to.head_bytes()..(h + 1) * to.head_bytes()]);
        }
        plane.codes = codes;
        plane.tier = want as u8;
    }

    /// Drop positions from `pos` on.
    fn truncate(&mut self, pos: usize) {
        let bt = self.lay.block;
        let keep = pos.div_ceil(bt);
        for &b in &self.sl.table[keep..] {
            self.pool.release(b);
        }
        self.sl.table.truncate(keep);
        self.sl.len = pos;
        for side in Side::BOTH {
            let pc = self.lc.side(side);
            let p = &mut self.sl.progress[side as usize];
            // Blocks from the cut one on are re-checked for tiers.
            for w in p.tiered.iter_mut() {
                *w = (*w).min(pos / bt);
            }
            let Some(c) = &pc.codec else { continue };
            let coded = p.coded;
            let mut new = coded.min(pos);
            let b = pos / bt;
            if coded > pos && pos % bt != 0 && (!c.per_token() || self.pool.get(self.sl.table[b]).plane(side).tier != 0) {
                // A block codec cannot drop part of a block, nor can a block
                // re-coded to a later tier take new tokens: restore its kept
                // tokens to raw rows from their codes, to be coded again.
                new = b * bt;
                self.uncode_block(side, b);
            }
            let p = &mut self.sl.progress[side as usize];
            p.coded = new;
            p.base = new;
            p.settled = p.settled.min(new / bt);
        }
    }

    fn uncode_block(&mut self, side: Side, b: usize) {
        let (d, kvd, bt, raw_len) = (self.lay.shape.head_dim, self.lay.shape.kv_dim(), self.lay.block, self.lay.raw_len());
        let pc = self.lc.side(side);
        let plane = self.pool.unique(&mut self.sl.table[b]).plane_mut(side);
        plane.raw.resize(raw_len, f16::ZERO);
        let c = pc.at(plane.tier);
        let hb = c.head_bytes();
        let mut rows = vec![0f32; bt * d];
        for h in 0..kvd / d {
            c.decode(&plane.codes[h * hb..(h + 1) * hb], 0, bt, &mut rows);
            for (t, row) in rows.chunks_exact_mut(d).enumerate() {
                if let Some(r) = c.rotation() {
                    r.inverse(row);
                }
                plane.raw[t * kvd + h * d..t * kvd + (h + 1) * d].convert_from_f32_slice(row);
            }
        }
    }

    /// Code tokens of one plane up to `target`.
    fn code(&mut self, side: Side, target: usize) {
        let Some(c) = &self.lc.side(side).codec else { return };
        let (d, kvd, bt, nh) = (self.lay.shape.head_dim, self.lay.shape.kv_dim(), self.lay.block, self.lay.shape.n_kv_heads);
        let hb = c.head_bytes();
        let mut t = self.sl.progress[side as usize].coded.max(self.lay.sink);
        let mut rows = vec![0f32; bt * d];
        while t < target {
            let b = t / bt;
            let end = target.min((b + 1) * bt);
            let plane = self.pool.unique(&mut self.sl.table[b]).plane_mut(side);
            if plane.codes.is_empty() || plane.tier != 0 {
                plane.codes = vec![0; nh * hb];
                plane.tier = 0;
            }
            let (s0, s1) = (t - b * bt, end - b * bt);
            for h in 0..nh {
                for (s, row) in (s0..s1).zip(rows.chunks_exact_mut(d)) {
                    f16_to_f32(&plane.raw[s * kvd + h * d..s * kvd + (h + 1) * d], row);
                }
                c.encode(&rows[..(s1 - s0) * d], s0, &mut plane.codes[h * hb..(h + 1) * hb]);
            }
            t = end;
        }
        let p = &mut self.sl.progress[side as usize];
        p.coded = p.coded.max(target);
    }
}
