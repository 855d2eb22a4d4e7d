//! lowbit-kv: the KV cache every lowbit model runs on.
//!
//! A [`Policy`] (a spec string such as `k=turbo4,v=turbo3,window=64`) picks
//! the codec of keys and values, per layer if wanted, and how many recent
//! tokens stay in f16. [`KvLayout`] says where every byte of a block sits,
//! for this crate and the CUDA backend. [`PagedCache`] holds any number of
//! sequences ([`SeqId`]), each a table of reference-counted token blocks
//! from a pool (fork = share, first write = copy), and computes attention
//! on the compressed blocks: rotated codecs
//! score a once-rotated query against rotated-domain codes and accumulate
//! values in the rotated domain, undoing the rotation once per head.
//! [`DenseCache`] is the plain f32 reference.
//!
//! This crate knows codecs (lowbit-quant) and attention shapes; it knows
//! nothing about models or files.

pub mod attend;
pub mod cache;
pub mod codec;
pub mod dense;
pub mod error;
pub mod layout;
pub mod paged;
pub mod policy;

pub use cache::{KvCache, KvShape};
pub use dense::DenseCache;
pub use error::{KvError, Result};
pub use layout::{KvLayout, PlaneLayout, Side};
pub use paged::{PagedCache, SeqCache, SeqId};
pub use policy::{CodecSpec, Policy};

/// The cache a policy asks for: the f32 reference or a paged cache.
pub fn new_cache(shape: KvShape, policy: &Policy) -> Result<Box<dyn KvCache>> {
    if policy.f32_reference {
        Ok(Box::new(DenseCache::new(shape)))
    } else {
        Ok(Box::new(SeqCache::new(shape, policy)?))
    }
}
