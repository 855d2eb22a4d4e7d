//! Where a KV cache's bytes sit, for the CPU cache and the CUDA backend
//! alike. A sequence's tokens live in blocks of `block` tokens. A block's
//! coded bytes are plane K then plane V; each plane is one region per KV
//! head; a region is the codec's header (KIVI keys: d × (f16 scale, f16
//! min); `+center`: the block's mean) followed by one row per token.
//! Tokens among the `window` newest stay f16, as do the first `sink`.

use crate::cache::KvShape;
use crate::codec::PlaneCodec;
use crate::error::{KvError, Result};
use crate::policy::{CodecSpec, Policy};

/// Block size when no codec asks for another.
pub const DEFAULT_BLOCK: usize = 32;

/// Keys or values: the two planes of a block. Used as an index, so code
/// that treats both alike is written once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Key = 0,
    Value = 1,
}

impl Side {
    pub const BOTH: [Side; 2] = [Side::Key, Side::Value];
}

/// One plane's region of one KV head in one block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneLayout {
    /// Bytes of the whole region.
    pub region_bytes: usize,
    /// Bytes before the first token row.
    pub header_bytes: usize,
    /// Bytes of one token row.
    pub row_bytes: usize,
    /// Rows are coded one token at a time; otherwise the whole block is
    /// coded at once, when it is full.
    pub per_token: bool,
}

impl PlaneLayout {
    /// f16 rows of `head_dim` channels.
    pub fn f16(head_dim: usize, block: usize) -> PlaneLayout {
        PlaneLayout { region_bytes: block * head_dim * 2, header_bytes: 0, row_bytes: head_dim * 2, per_token: true }
    }

    /// Byte range of token `t`'s row inside the region.
    pub fn row(&self, t: usize) -> std::ops::Range<usize> {
        let at = self.header_bytes + t * self.row_bytes;
        at..at + self.row_bytes
    }
}

/// The geometry every part of a cache agrees on.
#[derive(Clone, Debug, PartialEq)]
pub struct KvLayout {
    pub shape: KvShape,
    /// Tokens per block: the KIVI key group when keys use KIVI, else
    /// [`DEFAULT_BLOCK`].
    pub block: usize,
    pub window: usize,
    pub sink: usize,
    /// Ages (tokens) at which a fully coded block moves to the next tier.
    pub tier_ages: Vec<usize>,
}

impl KvLayout {
    pub fn new(shape: KvShape, policy: &Policy) -> Result<KvLayout> {
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
        Ok(KvLayout {
            shape,
            block: block.unwrap_or(DEFAULT_BLOCK),
            window: policy.window,
            sink: policy.sink,
            tier_ages: policy.tiers.iter().filter_map(|t| t.1).collect(),
        })
    }

    /// f16 elements of a block's raw rows (every KV head, token-major).
    pub fn raw_len(&self) -> usize {
        self.block * self.shape.kv_dim()
    }

    /// Where a plane coded by `codec` (`None`: f16) sits in a block.
    pub fn plane(&self, codec: Option<&dyn PlaneCodec>) -> PlaneLayout {
        codec.map_or(PlaneLayout::f16(self.shape.head_dim, self.block), |c| c.layout())
    }

    /// Byte offset of KV head `h`'s region of `side` in a block whose
    /// planes are laid out as `k` then `v`.
    pub fn region_offset(&self, k: &PlaneLayout, v: &PlaneLayout, side: Side, h: usize) -> usize {
        let n = self.shape.n_kv_heads;
        match side {
            Side::Key => h * k.region_bytes,
            Side::Value => n * k.region_bytes + h * v.region_bytes,
        }
    }

    /// Tokens of a plane coded once `len` tokens are stored.
    pub fn coded_target(&self, plane: Option<&PlaneLayout>, len: usize) -> usize {
        match plane {
            None => 0,
            Some(p) => {
                let old = len.saturating_sub(self.window);
                if p.per_token {
                    old
                } else {
                    old / self.block * self.block
                }
            }
        }
    }

    /// The tier of a fully coded block ending at `end` once `len` tokens
    /// are stored: how many tier ages its newest token has reached.
    pub fn tier_at(&self, len: usize, end: usize) -> usize {
        let age = len - end;
        self.tier_ages.iter().filter(|&&a| age >= a).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::build;

    const SHAPE: KvShape = KvShape { n_layers: 2, n_heads: 8, n_kv_heads: 2, head_dim: 128, max_seq: 256 };

    #[test]
    fn layout_math() {
        let p = Policy::parse("k=kivi2:g32,v=turbo4,window=16").unwrap();
        let lay = KvLayout::new(SHAPE, &p).unwrap();
        assert_eq!((lay.block, lay.raw_len()), (32, 32 * 256));
        let k = build(p.layer(0).0, true, 128, 32).unwrap().unwrap();
        let v = build(p.layer(0).1, false, 128, 32).unwrap().unwrap();
        let (kl, vl) = (lay.plane(Some(&*k)), lay.plane(Some(&*v)));
        // KIVI keys: 128 channels × (scale, min) f16, then 32 rows of 128 2-bit codes.
        assert_eq!(kl, PlaneLayout { region_bytes: 512 + 32 * 32, header_bytes: 512, row_bytes: 32, per_token: false });
        // turbo4 at d128: f16 norm + 64 bytes of codes per token.
        assert_eq!(vl, PlaneLayout { region_bytes: 32 * 66, header_bytes: 0, row_bytes: 66, per_token: true });
        assert_eq!(vl.row(3), 198..264);
        assert_eq!(lay.region_offset(&kl, &vl, Side::Value, 1), 2 * 1536 + 2112);
        // Keys code whole blocks once they leave the window; values each token.
        assert_eq!(lay.coded_target(Some(&kl), 100), 64);
        assert_eq!(lay.coded_target(Some(&vl), 100), 84);
        assert_eq!(lay.coded_target(None, 100), 0);
        let tiered = KvLayout::new(SHAPE, &Policy::parse("turbo4,tiers=4@64,2").unwrap()).unwrap();
        assert_eq!((tiered.tier_at(200, 100), tiered.tier_at(200, 160)), (1, 0));
        assert!(KvLayout::new(SHAPE, &Policy::parse("k[0]=kivi2:g32,k[1]=kivi2:g64").unwrap()).is_err());
    }
}
