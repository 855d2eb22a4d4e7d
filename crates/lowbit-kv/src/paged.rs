//! The paged, compressed KV cache.
//!
//! Each layer of a sequence is a table of blocks of `block` tokens taken
//! from a shared pool. A block holds, per plane (keys, values), the raw f16
//! rows of tokens not yet coded and the codes of each KV head. Tokens stay
//! raw while they are among the `window` most recent; older ones are coded
//! — one at a time for per-token codecs, a whole block at once for KIVI
//! keys — and a block's raw rows are freed once every token is coded (at
//! the next store, so the current batch's queries can still see the raw
//! rows they are entitled to). The first `sink` tokens of a sequence sit
//! apart in f16: their slots in the first blocks stay empty and block
//! codecs compute their statistics without them. Blocks are reference-counted: a fork shares
//! them, and the first write to a shared block copies it.

use std::sync::Arc;

use half::f16;
use half::slice::HalfFloatSliceExt;
use lowbit_quant::simd::f16_to_f32;
use rayon::prelude::*;

use crate::attend::HeadAcc;
use crate::cache::{KvCache, KvShape};
use crate::codec::{self, PlaneCodec};
use crate::error::{KvError, Result};
use crate::policy::{CodecSpec, Policy};

/// Block size when no codec asks for another.
pub const DEFAULT_BLOCK: usize = 32;
/// Queries per prefill task.
const QUERY_CHUNK: usize = 16;

type Codec = Option<Arc<dyn PlaneCodec>>;

#[derive(Clone, Default)]
struct Plane {
    raw: Vec<f16>,
    codes: Vec<u8>,
    /// Index into the layer's tier codecs the codes are in.
    tier: u8,
}

impl Plane {
    fn bytes(&self) -> usize {
        self.raw.len() * 2 + self.codes.len()
    }
}

#[derive(Clone, Default)]
struct Block {
    k: Plane,
    v: Plane,
}

/// Blocks, their reference counts and the free list.
#[derive(Default)]
struct Pool {
    blocks: Vec<Block>,
    refs: Vec<u32>,
    free: Vec<u32>,
}

impl Pool {
    fn alloc(&mut self, b: Block) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.blocks[id as usize] = b;
                self.refs[id as usize] = 1;
                id
            }
            None => {
                self.blocks.push(b);
                self.refs.push(1);
                (self.blocks.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, id: u32) {
        let r = &mut self.refs[id as usize];
        *r -= 1;
        if *r == 0 {
            self.blocks[id as usize] = Block::default();
            self.free.push(id);
        }
    }
}

/// One plane's coding state in one layer of one sequence.
#[derive(Clone, Copy, Default)]
struct Progress {
    /// Tokens 0..coded are coded.
    coded: usize,
    /// `coded` when the current store batch began: those tokens' raw rows
    /// may be gone, so every query must use their codes.
    base: usize,
    /// Blocks below this index had their raw rows freed.
    settled: usize,
}

#[derive(Clone, Default)]
struct SeqLayer {
    /// f16 rows of the sink tokens (keys, values).
    sink_k: Vec<f16>,
    sink_v: Vec<f16>,
    table: Vec<u32>,
    /// Positions stored (sink included).
    len: usize,
    k: Progress,
    v: Progress,
    /// Per tier age: how many leading blocks have crossed it (keys, values).
    k_tiered: Vec<usize>,
    v_tiered: Vec<usize>,
}

struct LayerCodecs {
    /// The codec tokens are coded with when they leave the window.
    k: Codec,
    v: Codec,
    /// Every tier's codec (the first is `k` / `v`); one entry without tiers.
    k_tiers: Vec<Arc<dyn PlaneCodec>>,
    v_tiers: Vec<Arc<dyn PlaneCodec>>,
}

impl LayerCodecs {
    fn tiers(&self, is_k: bool) -> &[Arc<dyn PlaneCodec>] {
        if is_k {
            &self.k_tiers
        } else {
            &self.v_tiers
        }
    }
}

/// Bytes of one layer of one sequence, by part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerBytes {
    /// Codes with their scales, minimums and norms.
    pub k_codes: usize,
    /// Raw f16 rows: the window and blocks not yet fully coded.
    pub k_raw: usize,
    pub v_codes: usize,
    pub v_raw: usize,
    /// Block-table entry and reference count per block.
    pub tables: usize,
}

impl LayerBytes {
    pub fn total(&self) -> usize {
        self.k_codes + self.k_raw + self.v_codes + self.v_raw + self.tables
    }
}

/// The stored form of one token's plane, for tests and inspection.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    /// f16 bits of the token's row (all KV heads).
    Raw(Vec<u16>),
    /// Codes: the token's own bytes for a per-token codec, the whole
    /// block's region for a block codec (all KV heads).
    Coded(Vec<u8>),
}

pub struct PagedCache {
    shape: KvShape,
    policy: Policy,
    block: usize,
    window: usize,
    sink: usize,
    layers: Vec<LayerCodecs>,
    pool: Pool,
    seqs: Vec<Option<Vec<SeqLayer>>>,
    active: usize,
}

impl PagedCache {
    /// A cache for `policy` with one empty sequence (id 0), selected.
    pub fn new(shape: KvShape, policy: &Policy) -> Result<PagedCache> {
        let mut block = None;
        for l in 0..shape.n_layers {
            if let CodecSpec::Kivi { group, .. } = policy.layer(l).0 {
                if block.is_some_and(|b| b != *group) {
                    return Err(KvError::BadPolicy {
                        spec: policy.to_string(),
                        reason: "KIVI keys of different layers need one group size (the block size)".into(),
                        expected: "one kivi group size for keys",
                    });
                }
                block = Some(*group);
            }
        }
        let block = block.unwrap_or(DEFAULT_BLOCK);
        let mut layers = Vec::with_capacity(shape.n_layers);
        for l in 0..shape.n_layers {
            let (k, v) = policy.layer(l);
            let tiers = |c: &CodecSpec, is_k: bool| -> Result<Vec<Arc<dyn PlaneCodec>>> {
                let specs: Vec<CodecSpec> = if policy.tiers.is_empty() || c.is_f16() {
                    vec![c.clone()]
                } else {
                    policy.tiers.iter().map(|&(b, _)| c.with_bits(b)).collect::<std::result::Result<_, _>>().map_err(|reason| {
                        KvError::BadPolicy { spec: policy.to_string(), reason, expected: "tiers on a kivi, turbo, polar or uniform plane" }
                    })?
                };
                Ok(specs.iter().map(|s| codec::build(s, is_k, shape.head_dim, block)).collect::<Result<Vec<_>>>()?.into_iter().flatten().collect())
            };
            let (k_tiers, v_tiers) = (tiers(k, true)?, tiers(v, false)?);
            layers.push(LayerCodecs { k: k_tiers.first().cloned(), v: v_tiers.first().cloned(), k_tiers, v_tiers });
        }
        Ok(PagedCache {
            shape,
            policy: policy.clone(),
            block,
            window: policy.window,
            sink: policy.sink,
            layers,
            pool: Pool::default(),
            seqs: vec![Some(vec![SeqLayer::default(); shape.n_layers])],
            active: 0,
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn block_tokens(&self) -> usize {
        self.block
    }

    fn seq(&self, id: usize) -> Result<&Vec<SeqLayer>> {
        self.seqs.get(id).and_then(Option::as_ref).ok_or(KvError::NoSequence(id))
    }

    /// A new sequence sharing every block of `id` (copy-on-write).
    pub fn fork(&mut self, id: usize) -> Result<usize> {
        let s = self.seq(id)?.clone();
        for l in &s {
            for &b in &l.table {
                self.pool.refs[b as usize] += 1;
            }
        }
        self.seqs.push(Some(s));
        Ok(self.seqs.len() - 1)
    }

    /// Drop a sequence, returning the blocks no other sequence holds.
    pub fn free(&mut self, id: usize) -> Result<()> {
        self.seq(id)?;
        for l in self.seqs[id].take().unwrap_or_default() {
            l.table.iter().for_each(|&b| self.pool.release(b));
        }
        Ok(())
    }

    /// Make `id` the sequence [`KvCache`] calls act on.
    pub fn select(&mut self, id: usize) -> Result<()> {
        self.seq(id)?;
        self.active = id;
        Ok(())
    }

    /// Positions stored in `layer` of the active sequence.
    pub fn len(&self, layer: usize) -> usize {
        self.seqs[self.active].as_ref().map_or(0, |s| s[layer].len)
    }

    pub fn is_empty(&self) -> bool {
        (0..self.shape.n_layers).all(|l| self.len(l) == 0)
    }

    /// Blocks held by at least one sequence.
    pub fn blocks_in_use(&self) -> usize {
        self.pool.refs.iter().filter(|&&r| r > 0).count()
    }

    /// Every byte the cache holds: live blocks (raw rows and codes), one
    /// reference count per pool slot, the block tables of live sequences.
    pub fn bytes(&self) -> usize {
        let blocks: usize = self.pool.blocks.iter().map(|b| b.k.bytes() + b.v.bytes()).sum();
        let seqs: usize =
            self.seqs.iter().flatten().flat_map(|s| s.iter()).map(|l| l.table.len() * 4 + (l.sink_k.len() + l.sink_v.len()) * 2).sum();
        blocks + self.pool.refs.len() * 4 + seqs
    }

    /// Free the raw rows of fully coded blocks of every layer (what the next
    /// store does for its layer), so [`PagedCache::bytes`] shows the steady
    /// state.
    pub fn settle_all(&mut self) {
        for l in 0..self.shape.n_layers {
            self.settle(l);
        }
    }

    /// The stored form of token `t` of `layer` in the active sequence.
    pub fn stored(&self, layer: usize, t: usize) -> (Stored, Stored) {
        let sl = &self.seqs[self.active].as_ref().expect("active sequence")[layer];
        let kvd = self.shape.kv_dim();
        if t < self.sink {
            let raw = |v: &[f16]| Stored::Raw(v[t * kvd..(t + 1) * kvd].iter().map(|x| x.to_bits()).collect());
            return (raw(&sl.sink_k), raw(&sl.sink_v));
        }
        let blk = &self.pool.blocks[sl.table[t / self.block] as usize];
        let lc = &self.layers[layer];
        let slot = t % self.block;
        let form = |plane: &Plane, codec: &Codec, p: &Progress| match codec {
            Some(c) if t < p.coded => {
                let hb = c.head_bytes();
                if c.per_token() {
                    let tb = hb / self.block;
                    Stored::Coded((0..self.shape.n_kv_heads).flat_map(|h| plane.codes[h * hb + slot * tb..h * hb + (slot + 1) * tb].to_vec()).collect())
                } else {
                    Stored::Coded(plane.codes.clone())
                }
            }
            _ => Stored::Raw(plane.raw[slot * kvd..(slot + 1) * kvd].iter().map(|x| x.to_bits()).collect()),
        };
        (form(&blk.k, &lc.k, &sl.k), form(&blk.v, &lc.v, &sl.v))
    }

    /// Bytes one sequence of `tokens` positions holds in `layer` once
    /// settled, by part.
    pub fn layer_bytes_for(&self, layer: usize, tokens: usize) -> LayerBytes {
        let (bt, nh, raw) = (self.block, self.shape.n_kv_heads, self.raw_len() * 2);
        let sink = tokens.min(self.sink) * self.shape.kv_dim() * 2;
        let nb = tokens.div_ceil(bt);
        let lc = &self.layers[layer];
        let plane = |codec: &Codec, is_k: bool| {
            let coded = self.target(codec, tokens);
            let (mut codes, mut window) = (0, 0);
            for b in 0..nb {
                // Tokens of this block held in it (not in the sink).
                let (lo, hi) = ((b * bt).max(self.sink), ((b + 1) * bt).min(tokens));
                if lo >= hi {
                    continue;
                }
                if codec.is_some() && coded > lo {
                    let tier = if coded >= hi { self.tier_at(tokens, hi) } else { 0 };
                    codes += nh * lc.tiers(is_k)[tier].head_bytes();
                }
                if codec.is_none() || coded < hi {
                    window += raw;
                }
            }
            (codes, window)
        };
        let ((kc, kw), (vc, vw)) = (plane(&lc.k, true), plane(&lc.v, false));
        LayerBytes { k_codes: kc, k_raw: kw + sink, v_codes: vc, v_raw: vw + sink, tables: nb * 8 }
    }

    /// The tier of a fully coded block ending at `end` once `len` tokens
    /// are stored: how many tier ages its newest token has reached.
    fn tier_at(&self, len: usize, end: usize) -> usize {
        let age = len - end;
        self.policy.tiers.iter().filter(|(_, a)| a.is_some_and(|a| age >= a)).count()
    }

    /// Re-code the fully coded blocks of `layer` whose age moved them to a
    /// later tier (decode, undo the rotation, encode at the new width).
    /// One watermark per tier age keeps this O(1) amortized per block.
    fn retier(&mut self, layer: usize) {
        let ages: Vec<usize> = self.policy.tiers.iter().filter_map(|t| t.1).collect();
        if ages.is_empty() {
            return;
        }
        let (d, bt) = (self.shape.head_dim, self.block);
        let mut rows = vec![0f32; bt * d];
        for is_k in [true, false] {
            let tiers = self.layers[layer].tiers(is_k).to_vec();
            if tiers.len() < 2 {
                continue;
            }
            for (j, &age) in ages.iter().enumerate() {
                loop {
                    let sl = &mut self.seqs[self.active].as_mut().expect("active sequence")[layer];
                    let (coded, marks) = if is_k { (sl.k.coded, &mut sl.k_tiered) } else { (sl.v.coded, &mut sl.v_tiered) };
                    marks.resize(ages.len(), 0);
                    let b = marks[j];
                    let hi = (b + 1) * bt;
                    if hi > coded || sl.len - hi < age {
                        break;
                    }
                    marks[j] += 1;
                    self.recode(layer, b, is_k, &tiers, &mut rows);
                }
            }
        }
    }

    /// Bring block `b` of a plane to the tier its age asks for.
    fn recode(&mut self, layer: usize, b: usize, is_k: bool, tiers: &[Arc<dyn PlaneCodec>], rows: &mut [f32]) {
        let (d, bt, nh) = (self.shape.head_dim, self.block, self.shape.n_kv_heads);
        let sl = &self.seqs[self.active].as_ref().expect("active sequence")[layer];
        let (lo, hi) = ((b * bt).max(self.sink), (b + 1) * bt);
        let want = self.tier_at(sl.len, hi);
        let plane = &self.pool.blocks[sl.table[b] as usize];
        let have = if is_k { plane.k.tier } else { plane.v.tier } as usize;
        if lo >= hi || want <= have {
            return;
        }
        let blk = self.unique(layer, b);
        let plane = if is_k { &mut blk.k } else { &mut blk.v };
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

    /// Tokens of a plane coded once `len` tokens are stored.
    fn target(&self, codec: &Codec, len: usize) -> usize {
        match codec {
            None => 0,
            Some(c) => {
                let old = len.saturating_sub(self.window);
                if c.per_token() {
                    old
                } else {
                    old / self.block * self.block
                }
            }
        }
    }

    fn raw_len(&self) -> usize {
        self.block * self.shape.kv_dim()
    }

    /// Make block `b` of `layer` private to the active sequence.
    fn unique(&mut self, layer: usize, b: usize) -> &mut Block {
        let seq = self.seqs[self.active].as_mut().expect("active sequence");
        let id = seq[layer].table[b];
        if self.pool.refs[id as usize] > 1 {
            let copy = self.pool.blocks[id as usize].clone();
            self.pool.refs[id as usize] -= 1;
            let new = self.pool.alloc(copy);
            self.seqs[self.active].as_mut().expect("active sequence")[layer].table[b] = new;
            return &mut self.pool.blocks[new as usize];
        }
        &mut self.pool.blocks[id as usize]
    }

    fn settle(&mut self, layer: usize) {
        self.retier(layer);
        let Some(seq) = self.seqs[self.active].as_mut() else { return };
        let sl = &mut seq[layer];
        let lc = &self.layers[layer];
        for (codec, p, is_k) in [(&lc.k, &mut sl.k, true), (&lc.v, &mut sl.v, false)] {
            if codec.is_none() {
                continue;
            }
            // Free every block whose stored tokens are all coded; the
            // watermark only passes full blocks, so a partial one is
            // checked again after it grows.
            for b in p.settled..sl.table.len() {
                if p.coded < ((b + 1) * self.block).min(sl.len) {
                    break;
                }
                let blk = &mut self.pool.blocks[sl.table[b] as usize];
                let plane = if is_k { &mut blk.k } else { &mut blk.v };
                plane.raw = Vec::new();
            }
            p.settled = p.settled.max(p.coded / self.block);
            p.base = p.coded;
        }
    }

    /// Drop positions from `pos` on in `layer`.
    fn truncate(&mut self, layer: usize, pos: usize) {
        let keep = pos.div_ceil(self.block);
        let seq = self.seqs[self.active].as_mut().expect("active sequence");
        let sl = &mut seq[layer];
        for &b in &sl.table[keep..] {
            self.pool.release(b);
        }
        sl.table.truncate(keep);
        sl.len = pos;
        // Blocks from the cut one on are re-checked for tiers.
        for w in sl.k_tiered.iter_mut().chain(sl.v_tiered.iter_mut()) {
            *w = (*w).min(pos / self.block);
        }
        let (kc, vc) = (sl.k.coded, sl.v.coded);
        for (is_k, coded) in [(true, kc), (false, vc)] {
            let codec = if is_k { self.layers[layer].k.clone() } else { self.layers[layer].v.clone() };
            let Some(c) = codec else { continue };
            let mut new = coded.min(pos);
            let b = pos / self.block;
            let tier = |s: &Self| {
                let id = s.seqs[s.active].as_ref().expect("active sequence")[layer].table[b] as usize;
                if is_k { s.pool.blocks[id].k.tier } else { s.pool.blocks[id].v.tier }
            };
            if coded > pos && pos % self.block != 0 && (!c.per_token() || tier(self) != 0) {
                // A block codec cannot drop part of a block, nor can a block
                // re-coded to a later tier take new tokens: restore its kept
                // tokens to raw rows from their codes, to be coded again.
                new = b * self.block;
                self.uncode_block(layer, b, is_k, &c);
            }
            let sl = &mut self.seqs[self.active].as_mut().expect("active sequence")[layer];
            let p = if is_k { &mut sl.k } else { &mut sl.v };
            p.coded = new;
            p.base = new;
            p.settled = p.settled.min(new / self.block);
        }
    }

    fn uncode_block(&mut self, layer: usize, b: usize, is_k: bool, c: &Arc<dyn PlaneCodec>) {
        let (d, kvd, bt, raw_len) = (self.shape.head_dim, self.shape.kv_dim(), self.block, self.raw_len());
        let tiers = self.layers[layer].tiers(is_k).to_vec();
        let blk = self.unique(layer, b);
        let plane = if is_k { &mut blk.k } else { &mut blk.v };
        plane.raw.resize(raw_len, f16::ZERO);
        let c = tiers.get(plane.tier as usize).unwrap_or(c);
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

    /// Code tokens of one plane of `layer` up to `target`.
    fn code(&mut self, layer: usize, is_k: bool, target: usize) {
        let codec = if is_k { self.layers[layer].k.clone() } else { self.layers[layer].v.clone() };
        let Some(c) = codec else { return };
        let (d, kvd, bt, nh) = (self.shape.head_dim, self.shape.kv_dim(), self.block, self.shape.n_kv_heads);
        let hb = c.head_bytes();
        let sl = &self.seqs[self.active].as_ref().expect("active sequence")[layer];
        let mut t = if is_k { sl.k.coded } else { sl.v.coded }.max(self.sink);
        let mut rows = vec![0f32; bt * d];
        while t < target {
            let b = t / bt;
            let end = target.min((b + 1) * bt);
            let blk = self.unique(layer, b);
            let plane = if is_k { &mut blk.k } else { &mut blk.v };
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
        let sl = &mut self.seqs[self.active].as_mut().expect("active sequence")[layer];
        let p = if is_k { &mut sl.k } else { &mut sl.v };
        p.coded = p.coded.max(target);
    }

    /// Per-query view of which tokens a plane serves coded: tokens below
    /// the cut-off of query position `p`.
    fn cutoff(&self, codec: &Codec, prog: &Progress, p: usize) -> usize {
        match codec {
            None => 0,
            Some(_) => self.target(codec, p + 1).max(prog.base).min(prog.coded),
        }
    }

    /// Attention of the queries at `positions` (rows `first..` of `q`)
    /// for KV head `h` over blocks `blocks`; returns one accumulator per
    /// query and query head of the group.
    fn head_task(&self, layer: usize, h: usize, positions: &[usize], q: &Prepared, first: usize, blocks: std::ops::Range<usize>) -> Vec<HeadAcc> {
        let s = &self.shape;
        let (d, kvd, g, bt) = (s.head_dim, s.kv_dim(), s.group(), self.block);
        let sl = &self.seqs[self.active].as_ref().expect("active sequence")[layer];
        let lc = &self.layers[layer];
        let mut accs = vec![HeadAcc::new(d); positions.len() * g];
        let (mut kc, mut kr, mut vc, mut vr) = (vec![0f32; bt * d], vec![0f32; bt * d], vec![0f32; bt * d], vec![0f32; bt * d]);
        let mut scores = vec![0f32; bt.max(self.sink)];
        if blocks.start == 0 && self.sink > 0 {
            let n = sl.sink_k.len() / kvd;
            let (mut sk, mut sv) = (vec![0f32; n * d], vec![0f32; n * d]);
            for t in 0..n {
                f16_to_f32(&sl.sink_k[t * kvd + h * d..t * kvd + (h + 1) * d], &mut sk[t * d..(t + 1) * d]);
                f16_to_f32(&sl.sink_v[t * kvd + h * d..t * kvd + (h + 1) * d], &mut sv[t * d..(t + 1) * d]);
            }
            for (i, &p) in positions.iter().enumerate() {
                let e = (p + 1).min(n);
                for j in 0..g {
                    accs[i * g + j].absorb(q.get(first + i, h * g + j, false), &sk[..e * d], &sv[..e * d], false, &mut scores);
                }
            }
        }

        let cuts: Vec<(usize, usize)> = positions.iter().map(|&p| (self.cutoff(&lc.k, &sl.k, p), self.cutoff(&lc.v, &sl.v, p))).collect();
        let p_max = *positions.iter().max().expect("a query");
        let (ck_min, cv_min) = (cuts.iter().map(|c| c.0).min().unwrap_or(0), cuts.iter().map(|c| c.1).min().unwrap_or(0));
        let (ck_max, cv_max) = (cuts.iter().map(|c| c.0).max().unwrap_or(0), cuts.iter().map(|c| c.1).max().unwrap_or(0));
        let k_rot = lc.k.as_ref().is_some_and(|c| c.rotation().is_some());
        // Codecs with an integer dot product score coded keys straight from
        // their codes against the query quantized once to 8 bits.
        let k_int = lc.k.as_ref().and_then(|c| c.activation());
        let q8: Vec<Vec<u8>> = match k_int {
            Some(a) => (0..positions.len() * g).map(|ij| codec::quantize_query(a, q.get(first + ij / g, h * g + ij % g, false))).collect(),
            None => Vec::new(),
        };
        let v_rot = lc.v.as_ref().is_some_and(|c| c.rotation().is_some());
        // An f16 cache (no codec on either plane) is read in place by a single
        // query (decode); a batch converts each block once for all queries.
        let direct = lc.k.is_none() && lc.v.is_none() && positions.len() == 1;
        for b in blocks {
            let b0 = b * bt;
            // Sink tokens are not in the blocks; `lo` is the first that is.
            let lo = b0.max(self.sink);
            let e_max = (b0 + bt).min(p_max + 1);
            if lo >= e_max {
                continue;
            }
            let blk = &self.pool.blocks[sl.table[b] as usize];
            for (is_k, plane, codec, cmin, cmax, coded, raw) in
                [(true, &blk.k, &lc.k, ck_min, ck_max, &mut kc, &mut kr), (false, &blk.v, &lc.v, cv_min, cv_max, &mut vc, &mut vr)]
            {
                // Keys scored by integer dots are never decoded.
                if let Some(c) = codec.as_ref().filter(|c| !is_k || c.activation().is_none()) {
                    let c = lc.tiers(is_k).get(plane.tier as usize).unwrap_or(c);
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
                            accs[i * g + j].absorb_f16(q.get(first + i, h * g + j, false), &blk.k.raw[at..], &blk.v.raw[at..], kvd, s1 - s0, &mut scores);
                        }
                        continue;
                    }
                    let rows = (s0 - b0) * d..(s1 - b0) * d;
                    let keys = if kcoded { &kc[rows.clone()] } else { &kr[rows.clone()] };
                    let vals = if vcoded { &vc[rows.clone()] } else { &vr[rows] };
                    for j in 0..g {
                        let acc = &mut accs[i * g + j];
                        match (kcoded, k_int, &lc.k) {
                            (true, Some(_), Some(c)) => {
                                let region = &blk.k.codes[h * c.head_bytes()..(h + 1) * c.head_bytes()];
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

    fn prepare(&self, layer: usize, q: &[f32]) -> Prepared {
        let d = self.shape.head_dim;
        let scale = 1.0 / (d as f32).sqrt();
        let plain: Vec<f32> = q.iter().map(|x| x * scale).collect();
        let rotated = self.layers[layer].k.as_ref().and_then(|c| c.rotation()).map(|r| {
            let mut y = plain.clone();
            y.chunks_exact_mut(d).for_each(|row| r.forward(row));
            y
        });
        Prepared { d, heads: self.shape.n_heads, plain, rotated }
    }

    fn finish(&self, layer: usize, accs: Vec<HeadAcc>, out: &mut [f32]) {
        let rot = self.layers[layer].v.as_ref().and_then(|c| c.rotation());
        for (acc, o) in accs.into_iter().zip(out.chunks_exact_mut(self.shape.head_dim)) {
            acc.finish(rot, o);
        }
    }
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
        let src = if rotated { self.rotated.as_ref().expect("rotated query") } else { &self.plain };
        &src[at..at + self.d]
    }
}

impl KvCache for PagedCache {
    fn store(&mut self, layer: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let kvd = self.shape.kv_dim();
        let n = k.len() / kvd;
        self.settle(layer);
        let total = self.len(layer);
        assert!(pos0 <= total, "store at {pos0} leaves a gap after {total} positions");
        // The sink's share.
        let s = self.sink;
        let in_sink = s.saturating_sub(pos0).min(n);
        {
            let sl = &mut self.seqs[self.active].as_mut().expect("active sequence")[layer];
            for (dst, src) in [(&mut sl.sink_k, k), (&mut sl.sink_v, v)] {
                dst.truncate(pos0.min(s) * kvd);
                dst.extend(src[..in_sink * kvd].iter().map(|&x| f16::from_f32(x)));
            }
        }
        if pos0 < total {
            self.truncate(layer, pos0);
        }
        let (bt, raw_len) = (self.block, self.raw_len());
        for i in 0..n {
            let t = pos0 + i;
            let b = t / bt;
            while self.seqs[self.active].as_ref().expect("active sequence")[layer].table.len() <= b {
                let id = self.pool.alloc(Block::default());
                self.seqs[self.active].as_mut().expect("active sequence")[layer].table.push(id);
            }
            if t < self.sink {
                continue;
            }
            let blk = self.unique(layer, b);
            let s = t % bt;
            for (plane, src) in [(&mut blk.k, &k[i * kvd..(i + 1) * kvd]), (&mut blk.v, &v[i * kvd..(i + 1) * kvd])] {
                if plane.raw.is_empty() {
                    plane.raw = vec![f16::ZERO; raw_len];
                }
                plane.raw[s * kvd..(s + 1) * kvd].convert_from_f32_slice(src);
            }
        }
        let len = pos0 + n;
        self.seqs[self.active].as_mut().expect("active sequence")[layer].len = len;
        let (tk, tv) = (self.target(&self.layers[layer].k, len), self.target(&self.layers[layer].v, len));
        self.code(layer, true, tk);
        self.code(layer, false, tv);
    }

    fn attend(&self, layer: usize, pos: usize, q: &[f32], out: &mut [f32]) {
        let s = &self.shape;
        let (d, g, nkv) = (s.head_dim, s.group(), s.n_kv_heads);
        let prepared = self.prepare(layer, q);
        let nblocks = (pos + 1).div_ceil(self.block);
        // Split each head's blocks so every thread has work (flash-decoding).
        let want = (4 * rayon::current_num_threads()).div_ceil(nkv);
        let chunks = want.min(nblocks.div_ceil(8)).max(1);
        let per = nblocks.div_ceil(chunks);
        let tasks: Vec<(usize, usize)> = (0..nkv).flat_map(|h| (0..chunks).map(move |c| (h, c))).collect();
        let run = |&(h, c): &(usize, usize)| self.head_task(layer, h, &[pos], &prepared, 0, c * per..((c + 1) * per).min(nblocks));
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
        debug_assert_eq!(merged.len() * d, out.len());
        self.finish(layer, merged, out);
    }

    fn attend_batch(&self, layer: usize, pos0: usize, n: usize, q: &[f32], out: &mut [f32]) {
        let s = &self.shape;
        let (d, g, nkv, w) = (s.head_dim, s.group(), s.n_kv_heads, s.n_heads * s.head_dim);
        let prepared = self.prepare(layer, q);
        let nq = n.div_ceil(QUERY_CHUNK);
        let tasks: Vec<(usize, usize)> = (0..nq).flat_map(|c| (0..nkv).map(move |h| (c, h))).collect();
        let parts: Vec<Vec<HeadAcc>> = tasks
            .par_iter()
            .map(|&(c, h)| {
                let i0 = c * QUERY_CHUNK;
                let positions: Vec<usize> = (pos0 + i0..pos0 + (i0 + QUERY_CHUNK).min(n)).collect();
                let nblocks = (positions[positions.len() - 1] + 1).div_ceil(self.block);
                self.head_task(layer, h, &positions, &prepared, i0, 0..nblocks)
            })
            .collect();
        let rot = self.layers[layer].v.as_ref().and_then(|c| c.rotation());
        for (&(c, h), accs) in tasks.iter().zip(parts) {
            for (k, acc) in accs.into_iter().enumerate() {
                let (i, j) = (c * QUERY_CHUNK + k / g, k % g);
                let at = i * w + (h * g + j) * d;
                acc.finish(rot, &mut out[at..at + d]);
            }
        }
    }

    fn bytes_for(&self, tokens: usize) -> usize {
        (0..self.shape.n_layers).map(|l| self.layer_bytes_for(l, tokens).total()).sum()
    }

    fn capacity(&self) -> usize {
        self.shape.max_seq
    }
}
