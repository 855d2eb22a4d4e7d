//! The on-disk index format (version 2; version 1 files, which cannot hold
//! a `pca` code, are read too), little-endian:
//!
//! ```text
//! "LOWBITIX" | version u32 | spec (u16 length, UTF-8) | metric u8 | dim u32 | seed u64
//! | nlist u32 | centroids f32[nlist·dim]
//! | `pca` code (when trained): per axis bits u8, byte u16, shift u8 | axes f32[dim·dim]
//!   | per axis its levels f32[2^bits]
//! | per list: n u64 | ids i64[n] | codes u8[n·code_bytes] | scalars f16[n·scalars] | raw f32[n·dim] (when kept)
//!   | re-rank codes i8[n·dim] and scales f32[n] (`rerank=R:sq8`)
//! | CRC-32 of every byte before it (u32)
//! ```
//!
//! Saving writes a temporary file and renames it over the target, so an
//! existing index is never left half-written. Loading maps the file,
//! checks magic, version, length and checksum before reading anything, and
//! rejects trailing or missing bytes.

use std::path::Path;

use memmap2::Mmap;

use crate::error::{malformed, IndexError, Result};
use crate::code::Code;
use crate::index::{pca_code_bytes, scalars, Index, List};
use crate::pca::{PcaCoder, Slot};
use crate::spec::{CodeSpec, IndexSpec, Metric};
use crate::vecio::write_atomic;

const MAGIC: &[u8; 8] = b"LOWBITIX";
const VERSION: u32 = 2;

fn put<const N: usize>(out: &mut Vec<u8>, b: [u8; N]) {
    out.extend_from_slice(&b);
}

/// The serialized index.
pub fn to_bytes(ix: &Index) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + ix.len() * (ix.bytes_per_vector() + 8) + ix.centroids.len() * 4);
    out.extend_from_slice(MAGIC);
    put(&mut out, VERSION.to_le_bytes());
    let spec = ix.spec.to_string();
    put(&mut out, (spec.len() as u16).to_le_bytes());
    out.extend_from_slice(spec.as_bytes());
    out.push(match ix.metric {
        Metric::L2 => 0,
        Metric::Ip => 1,
    });
    put(&mut out, (ix.dim as u32).to_le_bytes());
    put(&mut out, ix.seed.to_le_bytes());
    put(&mut out, (ix.nlist() as u32).to_le_bytes());
    ix.centroids.iter().for_each(|v| put(&mut out, v.to_le_bytes()));
    if let Some(Code::Pca(pc)) = &ix.coder {
        for s in &pc.slots {
            out.push(s.bits);
            put(&mut out, s.byte.to_le_bytes());
            out.push(s.shift);
        }
        pc.basis.iter().for_each(|v| put(&mut out, v.to_le_bytes()));
        pc.levels.iter().flatten().for_each(|v| put(&mut out, v.to_le_bytes()));
    }
    let raw = ix.stores_raw();
    for l in &ix.lists {
        put(&mut out, (l.ids.len() as u64).to_le_bytes());
        l.ids.iter().for_each(|v| put(&mut out, v.to_le_bytes()));
        out.extend_from_slice(&l.codes);
        l.scal.iter().for_each(|v| put(&mut out, v.to_le_bytes()));
        if raw {
            l.raw.iter().for_each(|v| put(&mut out, v.to_le_bytes()));
        }
        if ix.stores_sq8() {
            out.extend(l.fine.iter().map(|&v| v as u8));
            l.fine_scale.iter().for_each(|v| put(&mut out, v.to_le_bytes()));
        }
    }
    let crc = crc32fast::hash(&out);
    put(&mut out, crc.to_le_bytes());
    out
}

/// Save atomically (temporary file, then rename).
pub fn save(ix: &Index, path: &Path) -> Result<()> {
    write_atomic(path, &to_bytes(ix))
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or_else(|| malformed(self.path, format!("truncated while reading {what}")))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N, what)?.try_into().unwrap())
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    /// `n` elements of `N` bytes, bounds-checked before allocating.
    fn many<const N: usize, T>(&mut self, n: usize, what: &str, conv: impl Fn([u8; N]) -> T) -> Result<Vec<T>> {
        let bytes = self.take(n.checked_mul(N).ok_or_else(|| malformed(self.path, format!("{what}: count overflows")))?, what)?;
        Ok(bytes.chunks_exact(N).map(|c| conv(c.try_into().unwrap())).collect())
    }
}

/// A trained `pca` code, every slot checked to lie inside the code bytes
/// without overlapping another.
fn read_pca(c: &mut Cursor, dim: usize, code_bytes: usize, scalars: usize) -> Result<PcaCoder> {
    let path = c.path;
    let raw = c.take(dim.checked_mul(4).ok_or_else(|| malformed(path, "pca slots: count overflows"))?, "pca slots")?;
    let mut used = vec![0u16; code_bytes];
    let mut slots = Vec::with_capacity(dim);
    for (a, b) in raw.chunks_exact(4).enumerate() {
        let s = Slot { bits: b[0], byte: u16::from_le_bytes([b[1], b[2]]), shift: b[3] };
        let mask = ((1u16 << s.bits.min(8)) - 1).checked_shl(s.shift as u32).unwrap_or(u16::MAX);
        if s.bits > 8 || s.shift as u32 + s.bits as u32 > 8 || (s.bits > 0 && s.byte as usize >= code_bytes) || (s.bits > 0 && used[s.byte as usize] & mask != 0) {
            return Err(malformed(path, format!("pca axis {a}: bad code slot ({} bits at byte {}, bit {})", s.bits, s.byte, s.shift)));
        }
        if s.bits > 0 {
            used[s.byte as usize] |= mask;
        }
        slots.push(s);
    }
    let basis = c.many(dim * dim, "pca axes", f32::from_le_bytes)?;
    let mut levels = Vec::with_capacity(dim);
    for s in &slots {
        levels.push(c.many(1 << s.bits, "pca levels", f32::from_le_bytes)?);
    }
    if basis.iter().chain(levels.iter().flatten()).any(|v| !v.is_finite()) {
        return Err(malformed(path, "pca code holds a non-finite value"));
    }
    Ok(PcaCoder::from_parts(dim, code_bytes, scalars, basis, slots, levels))
}

/// Load an index, verifying its checksum first.
pub fn load(path: &Path) -> Result<Index> {
    let io = |source| IndexError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only and dropped before this function returns;
    // a concurrent writer of the same path replaces it by rename, not in place.
    let map = unsafe { Mmap::map(&file) }.map_err(io)?;
    from_bytes(&map, path)
}

pub fn from_bytes(b: &[u8], path: &Path) -> Result<Index> {
    if b.len() < MAGIC.len() + 8 || &b[..8] != MAGIC {
        return Err(malformed(path, "not a lowbit index (magic LOWBITIX missing)"));
    }
    let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
    if !(1..=VERSION).contains(&version) {
        return Err(malformed(path, format!("index format version {version}; this build reads versions 1 to {VERSION}")));
    }
    let (body, tail) = b.split_at(b.len() - 4);
    let stored = u32::from_le_bytes(tail.try_into().unwrap());
    if crc32fast::hash(body) != stored {
        return Err(malformed(path, "checksum mismatch: the file is corrupted or truncated"));
    }
    let mut c = Cursor { b: body, at: 12, path };
    let slen = u16::from_le_bytes(c.arr("spec length")?) as usize;
    let spec_text = std::str::from_utf8(c.take(slen, "spec")?).map_err(|_| malformed(path, "spec is not UTF-8"))?;
    let spec = IndexSpec::parse(spec_text)?;
    let metric = match c.arr::<1>("metric")?[0] {
        0 => Metric::L2,
        1 => Metric::Ip,
        m => return Err(malformed(path, format!("unknown metric code {m}"))),
    };
    let dim = c.u32("dimension")? as usize;
    let seed = c.u64("seed")?;
    let nlist = c.u32("list count")? as usize;
    let mut ix = Index::new(spec, metric, dim, seed)?;
    if nlist > 0 {
        if spec.nlist.unwrap_or(1) != nlist {
            return Err(malformed(path, format!("spec `{spec}` but {nlist} lists stored")));
        }
        let cent = c.many(nlist.saturating_mul(dim), "centroids", f32::from_le_bytes)?;
        if let Some(CodeSpec::Pca(bits)) = spec.code {
            let code_bytes = pca_code_bytes(bits, dim, metric)?;
            ix.coder = Some(Code::Pca(read_pca(&mut c, dim, code_bytes, scalars(metric))?));
        }
        ix.set_centroids(cent);
    }
    let (rb, sc) = ix.coder.as_ref().map_or((0, 0), |k| (k.code_bytes(), k.scalars()));
    let raw = ix.stores_raw();
    let mut lists = Vec::with_capacity(nlist);
    for _ in 0..nlist {
        let n = usize::try_from(c.u64("list length")?).map_err(|_| malformed(path, "list length overflows"))?;
        if n > body.len() {
            return Err(malformed(path, format!("list length {n} exceeds the file")));
        }
        let ids = c.many(n, "ids", i64::from_le_bytes)?;
        let codes = c.take(n * rb, "codes")?.to_vec();
        let scal = c.many(n * sc, "scalars", u16::from_le_bytes)?;
        let (raw, raw_sq) = if raw {
            let r = c.many(n * dim, "raw vectors", f32::from_le_bytes)?;
            let sq = crate::kmeans::sq_norms(&r, dim);
            (r, sq)
        } else {
            (Vec::new(), Vec::new())
        };
        let (fine, fine_scale) = if ix.stores_sq8() {
            (c.take(n * dim, "re-rank codes")?.iter().map(|&b| b as i8).collect(), c.many(n, "re-rank scales", f32::from_le_bytes)?)
        } else {
            (Vec::new(), Vec::new())
        };
        lists.push(List { ids, codes, scal, raw, raw_sq, fine, fine_scale, cross: Vec::new() });
    }
    if c.at != body.len() {
        return Err(malformed(path, format!("{} unexpected bytes after the last list", body.len() - c.at)));
    }
    ix.lists = lists;
    ix.refresh_cross();
    Ok(ix)
}
