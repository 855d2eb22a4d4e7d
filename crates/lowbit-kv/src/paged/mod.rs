//! The paged, compressed KV cache, keyed by sequence.
//!
//! Each layer of a sequence is a table of blocks of `block` tokens taken
//! from a shared pool ([`KvLayout`] says where every byte sits). A block
//! holds, per plane (keys, values), the raw f16 rows of tokens not yet
//! coded and the codes of each KV head. Tokens stay raw while they are
//! among the `window` most recent; older ones are coded — one at a time
//! for per-token codecs, a whole block at once for block codecs (KIVI
//! keys, `+center`) — and a block's raw rows are freed once every token is
//! coded (at the next store, so the current batch's queries can still see
//! the raw rows they are entitled to). The first `sink` tokens of a
//! sequence sit apart in f16: their slots in the first blocks stay empty
//! and block codecs compute their statistics without them. Blocks are
//! reference-counted: a fork shares them, and the first write to a shared
//! block copies it.
//!
//! Any number of sequences live at once; every call names its [`SeqId`].
//! [`SeqCache`] is one sequence of a cache behind the model-facing
//! [`KvCache`] trait.
//!
//! Files: `pool` (blocks, reference counts), `table` (sequences and their
//! block tables), `encode` (writing and coding tokens), `attention`.

mod attention;
mod encode;
mod pool;
mod table;

use std::sync::Arc;

use half::f16;

pub use table::SeqId;

use self::attention::SeqView;
use self::encode::SeqEdit;
use self::pool::{Plane, Pool};
use self::table::{SeqLayer, Seqs};
use crate::cache::{KvCache, KvShape};
use crate::codec::{self, PlaneCodec};
use crate::error::{KvError, Result};
use crate::layout::{KvLayout, PlaneLayout, Side};
use crate::policy::{CodecSpec, Policy};

pub use crate::layout::DEFAULT_BLOCK;

/// One plane's codecs in one layer: the codec tokens are coded with when
/// they leave the window (`None`: f16), and every tier's codec (the first
/// is `codec`; one entry without tiers).
pub(crate) struct PlaneCodecs {
    pub codec: Option<Arc<dyn PlaneCodec>>,
    pub tiers: Vec<Arc<dyn PlaneCodec>>,
    pub layout: Option<PlaneLayout>,
}

impl PlaneCodecs {
    /// The codec of a block coded at `tier`.
    pub fn at(&self, tier: u8) -> &Arc<dyn PlaneCodec> {
        let first = self.codec.as_ref().unwrap_or(&self.tiers[0]);
        self.tiers.get(tier as usize).unwrap_or(first)
    }
}

pub(crate) struct LayerCodecs {
    planes: [PlaneCodecs; 2],
}

impl LayerCodecs {
    pub fn side(&self, s: Side) -> &PlaneCodecs {
        &self.planes[s as usize]
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
    layout: KvLayout,
    policy: Policy,
    layers: Vec<LayerCodecs>,
    pool: Pool,
    seqs: Seqs,
}

impl PagedCache {
    /// An empty cache for `policy`; add sequences with [`PagedCache::new_seq`].
    pub fn new(shape: KvShape, policy: &Policy) -> Result<PagedCache> {
        let layout = KvLayout::new(shape, policy)?;
        let block = layout.block;
        let mut layers = Vec::with_capacity(shape.n_layers);
        for l in 0..shape.n_layers {
            let (k, v) = policy.layer(l);
            let plane = |c: &CodecSpec, is_key: bool| -> Result<PlaneCodecs> {
                let specs: Vec<CodecSpec> = if policy.tiers.is_empty() || c.is_f16() {
                    vec![c.clone()]
                } else {
                    policy.tiers.iter().map(|&(b, _)| c.with_bits(b)).collect::<std::result::Result<_, _>>().map_err(|reason| KvError::BadPolicy {
                        spec: policy.to_string(),
                        reason,
                        expected: "tiers on a kivi, turbo, polar or uniform plane",
                    })?
                };
                let tiers: Vec<Arc<dyn PlaneCodec>> =
                    specs.iter().map(|s| codec::build(s, is_key, shape.head_dim, block)).collect::<Result<Vec<_>>>()?.into_iter().flatten().collect();
                let codec = tiers.first().cloned();
                let layout = codec.as_ref().map(|c| c.layout());
                Ok(PlaneCodecs { codec, tiers, layout })
            };
            layers.push(LayerCodecs { planes: [plane(k, true)?, plane(v, false)?] });
        }
        Ok(PagedCache { layout, policy: policy.clone(), layers, pool: Pool::default(), seqs: Seqs::default() })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn layout(&self) -> &KvLayout {
        &self.layout
    }

    pub fn block_tokens(&self) -> usize {
        self.layout.block
    }

    /// The codec of one plane of `layer` (`None`: f16), as the GPU
    /// backend's reference encoder.
    pub fn plane_codec(&self, layer: usize, side: Side) -> Option<&Arc<dyn PlaneCodec>> {
        self.layers[layer].side(side).codec.as_ref()
    }

    /// A new, empty sequence.
    pub fn new_seq(&mut self) -> SeqId {
        self.seqs.add(vec![SeqLayer::default(); self.layout.shape.n_layers])
    }

    /// A new sequence sharing every block of `seq` (copy-on-write).
    pub fn fork(&mut self, seq: SeqId) -> Result<SeqId> {
        let s = self.seqs.get(seq)?.to_vec();
        for l in &s {
            l.table.iter().for_each(|&b| self.pool.retain(b));
        }
        Ok(self.seqs.add(s))
    }

    /// Drop a sequence, returning the blocks no other sequence holds.
    pub fn free(&mut self, seq: SeqId) -> Result<()> {
        for l in self.seqs.remove(seq)? {
            l.table.iter().for_each(|&b| self.pool.release(b));
        }
        Ok(())
    }

    fn check_rows(&self, what: &str, data: &[f32], width: usize) -> Result<usize> {
        if data.len() % width != 0 {
            return Err(KvError::BadInput(format!("{what} has {} floats, not a multiple of {width}", data.len())));
        }
        Ok(data.len() / width)
    }

    fn check_layer(&self, layer: usize) -> Result<()> {
        let n = self.layout.shape.n_layers;
        if layer >= n {
            return Err(KvError::BadInput(format!("layer {layer} out of range (the cache has {n})")));
        }
        Ok(())
    }

    /// Append the keys and values of `n` positions to `layer` of `seq`
    /// (`k` and `v` hold n·kv_dim floats).
    pub fn append(&mut self, seq: SeqId, layer: usize, k: &[f32], v: &[f32]) -> Result<()> {
        let len = self.len(seq, layer)?;
        self.store(seq, layer, len, k, v)
    }

    /// Store `n` positions from `pos0`: positions at or past the current
    /// length are appended; an earlier `pos0` first drops every position
    /// from `pos0` on.
    pub fn store(&mut self, seq: SeqId, layer: usize, pos0: usize, k: &[f32], v: &[f32]) -> Result<()> {
        self.check_layer(layer)?;
        let n = self.check_rows("keys", k, self.layout.shape.kv_dim())?;
        if v.len() != k.len() {
            return Err(KvError::BadInput(format!("{} value floats for {} key floats", v.len(), k.len())));
        }
        let len = self.len(seq, layer)?;
        if pos0 > len {
            return Err(KvError::BadInput(format!("store at position {pos0} leaves a gap after {len} positions")));
        }
        if pos0 + n > self.layout.shape.max_seq {
            return Err(KvError::BadInput(format!("{} positions exceed the cache's capacity of {}", pos0 + n, self.layout.shape.max_seq)));
        }
        let sl = self.seqs.layer_mut(seq, layer)?;
        SeqEdit { lay: &self.layout, lc: &self.layers[layer], pool: &mut self.pool, sl }.store(pos0, k, v);
        Ok(())
    }

    fn view(&self, seq: SeqId, layer: usize) -> Result<SeqView<'_>> {
        self.check_layer(layer)?;
        Ok(SeqView { lay: &self.layout, lc: &self.layers[layer], pool: &self.pool, sl: &self.seqs.get(seq)?[layer] })
    }

    fn check_query(&self, q: &[f32], out: &[f32], n: usize, pos_end: usize, len: usize) -> Result<()> {
        let w = self.layout.shape.n_heads * self.layout.shape.head_dim;
        if q.len() != n * w || out.len() != n * w {
            return Err(KvError::BadInput(format!("{n} queries need {} floats in and out, got {} and {}", n * w, q.len(), out.len())));
        }
        if n == 0 || pos_end > len {
            return Err(KvError::BadInput(format!("queries up to position {} but {len} positions are stored", pos_end as isize - 1)));
        }
        Ok(())
    }

    /// Causal attention of one query (all heads) at the newest position of
    /// `layer` of `seq`; writes n_heads·head_dim floats.
    pub fn attend(&self, seq: SeqId, layer: usize, q: &[f32], out: &mut [f32]) -> Result<()> {
        let len = self.len(seq, layer)?;
        self.attend_at(seq, layer, len.saturating_sub(1), q, out)
    }

    /// Causal attention of one query at position `pos` over 0..=pos.
    pub fn attend_at(&self, seq: SeqId, layer: usize, pos: usize, q: &[f32], out: &mut [f32]) -> Result<()> {
        let view = self.view(seq, layer)?;
        self.check_query(q, out, 1, pos + 1, view.sl.len)?;
        view.attend(pos, q, out);
        Ok(())
    }

    /// Attention of `n` consecutive queries at positions pos0..pos0+n
    /// (prefill); query i sees the cache as it was right after position
    /// pos0+i was stored.
    pub fn attend_batch(&self, seq: SeqId, layer: usize, pos0: usize, n: usize, q: &[f32], out: &mut [f32]) -> Result<()> {
        let view = self.view(seq, layer)?;
        self.check_query(q, out, n, pos0 + n, view.sl.len)?;
        view.attend_batch(pos0, n, q, out);
        Ok(())
    }

    /// Positions stored in `layer` of `seq`.
    pub fn len(&self, seq: SeqId, layer: usize) -> Result<usize> {
        self.check_layer(layer)?;
        Ok(self.seqs.get(seq)?[layer].len)
    }

    /// Blocks held by at least one sequence.
    pub fn blocks_in_use(&self) -> usize {
        self.pool.in_use()
    }

    /// Every byte the cache holds: live blocks (raw rows and codes), one
    /// reference count per pool slot, the block tables and sinks of live
    /// sequences.
    pub fn bytes(&self) -> usize {
        let seqs: usize = self
            .seqs
            .all()
            .flat_map(|(_, s)| s.iter())
            .map(|l| l.table.len() * 4 + l.sink.iter().map(Vec::len).sum::<usize>() * 2)
            .sum();
        self.pool.bytes() + seqs
    }

    /// Free the raw rows of fully coded blocks of every layer of every
    /// sequence (what the next store does for its layer), so
    /// [`PagedCache::bytes`] shows the steady state.
    pub fn settle_all(&mut self) {
        let ids: Vec<SeqId> = self.seqs.all().map(|(id, _)| *id).collect();
        for id in ids {
            for l in 0..self.layout.shape.n_layers {
                if let Ok(sl) = self.seqs.layer_mut(id, l) {
                    SeqEdit { lay: &self.layout, lc: &self.layers[l], pool: &mut self.pool, sl }.settle();
                }
            }
        }
    }

    /// The stored form of token `t` of `layer` of `seq`.
    pub fn stored(&self, seq: SeqId, layer: usize, t: usize) -> Result<(Stored, Stored)> {
        let view = self.view(seq, layer)?;
        let sl = view.sl;
        if t >= sl.len {
            return Err(KvError::BadInput(format!("token {t} of {} stored", sl.len)));
        }
        let (kvd, bt) = (self.layout.shape.kv_dim(), self.layout.block);
        let raw = |v: &[f16], slot: usize| Stored::Raw(v[slot * kvd..(slot + 1) * kvd].iter().map(|x| x.to_bits()).collect());
        if t < self.layout.sink {
            return Ok((raw(&sl.sink[0], t), raw(&sl.sink[1], t)));
        }
        let blk = self.pool.get(sl.table[t / bt]);
        let slot = t % bt;
        let form = |side: Side| {
            let (plane, pc): (&Plane, &PlaneCodecs) = (blk.plane(side), view.lc.side(side));
            match (&pc.codec, &pc.layout) {
                (Some(c), Some(l)) if t < sl.progress[side as usize].coded => {
                    let hb = c.head_bytes();
                    if l.per_token {
                        Stored::Coded((0..self.layout.shape.n_kv_heads).flat_map(|h| plane.codes[h * hb..][l.row(slot)].to_vec()).collect())
                    } else {
                        Stored::Coded(plane.codes.clone())
                    }
                }
                _ => raw(&plane.raw, slot),
            }
        };
        Ok((form(Side::Key), form(Side::Value)))
    }

    /// Bytes one sequence of `tokens` positions holds in `layer` once
    /// settled, by part.
    pub fn layer_bytes_for(&self, layer: usize, tokens: usize) -> LayerBytes {
        let lay = &self.layout;
        let (bt, nh, raw, sink) = (lay.block, lay.shape.n_kv_heads, lay.raw_len() * 2, lay.sink);
        let sink_bytes = tokens.min(sink) * lay.shape.kv_dim() * 2;
        let nb = tokens.div_ceil(bt);
        let plane = |pc: &PlaneCodecs| {
            let coded = lay.coded_target(pc.layout.as_ref(), tokens);
            let (mut codes, mut window) = (0, 0);
            for b in 0..nb {
                // Tokens of this block held in it (not in the sink).
                let (lo, hi) = ((b * bt).max(sink), ((b + 1) * bt).min(tokens));
                if lo >= hi {
                    continue;
                }
                if pc.codec.is_some() && coded > lo {
                    let tier = if coded >= hi { lay.tier_at(tokens, hi) } else { 0 };
                    codes += nh * pc.tiers[tier].head_bytes();
                }
                if pc.codec.is_none() || coded < hi {
                    window += raw;
                }
            }
            (codes, window)
        };
        let lc = &self.layers[layer];
        let ((kc, kw), (vc, vw)) = (plane(lc.side(Side::Key)), plane(lc.side(Side::Value)));
        LayerBytes { k_codes: kc, k_raw: kw + sink_bytes, v_codes: vc, v_raw: vw + sink_bytes, tables: nb * 8 }
    }

    /// Bytes one sequence of `tokens` positions holds across all layers.
    pub fn bytes_for(&self, tokens: usize) -> usize {
        (0..self.layout.shape.n_layers).map(|l| self.layer_bytes_for(l, tokens).total()).sum()
    }
}

/// One sequence of a [`PagedCache`] as the model's [`KvCache`]. The trait
/// has no error channel: a call the cache refuses (a gap, a wrong length)
/// is a bug in the caller and panics with the cache's message.
pub struct SeqCache {
    pub cache: PagedCache,
    pub seq: SeqId,
}

impl SeqCache {
    /// A cache for `policy` holding one empty sequence.
    pub fn new(shape: KvShape, policy: &Policy) -> Result<SeqCache> {
        let mut cache = PagedCache::new(shape, policy)?;
        let seq = cache.new_seq();
        Ok(SeqCache { cache, seq })
    }
}

fn or_panic(r: Result<()>) {
    if let Err(e) = r {
        panic!("KV cache: {e}");
    }
}

impl KvCache for SeqCache {
    fn store(&mut self, layer: usize, pos0: usize, k: &[f32], v: &[f32]) {
        or_panic(self.cache.store(self.seq, layer, pos0, k, v));
    }
    fn attend(&self, layer: usize, pos: usize, q: &[f32], out: &mut [f32]) {
        or_panic(self.cache.attend_at(self.seq, layer, pos, q, out));
    }
    fn attend_batch(&self, layer: usize, pos0: usize, n: usize, q: &[f32], out: &mut [f32]) {
        or_panic(self.cache.attend_batch(self.seq, layer, pos0, n, q, out));
    }
    fn bytes_for(&self, tokens: usize) -> usize {
        self.cache.bytes_for(tokens)
    }
    fn capacity(&self) -> usize {
        self.cache.layout.shape.max_seq
    }
}
