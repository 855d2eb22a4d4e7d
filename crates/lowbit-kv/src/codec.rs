//! How one plane (keys or values) of one KV head is coded inside a block of
//! `block` tokens. Per-token codecs wrap a row of lowbit-quant's format
//! table; KIVI keys are coded per channel across the block's tokens.
//! Decoding stops in the codec's rotated domain when it has a rotation, so
//! attention rotates the query once and undoes the rotation once per head.

use std::sync::Arc;

use lowbit_quant::bitpack::{pack, packed_len};
use lowbit_quant::rot::rht::Rht;
use lowbit_quant::{act_format, Activation, Codec, Format};

use crate::error::{KvError, Result};
use crate::layout::PlaneLayout;
use crate::policy::CodecSpec;

/// Seed of the RHT that `+rht` puts in front of a non-rotating codec.
const RHT_SEED: u64 = 0x6B76;

pub trait PlaneCodec: Send + Sync {
    /// Where the codec's bytes sit in one KV head's region of a block.
    fn layout(&self) -> PlaneLayout;
    /// Bytes one KV head uses in one block.
    fn head_bytes(&self) -> usize {
        self.layout().region_bytes
    }
    /// True when tokens are coded one at a time; false when the whole block
    /// is coded at once (it must be full).
    fn per_token(&self) -> bool {
        self.layout().per_token
    }
    /// Code tokens t0.. of one head's region; `x` holds their rows (d each).
    /// A block codec is called once per block with every row from t0 (0,
    /// or the first token after the sink) to the block's end, and computes
    /// its statistics over those rows.
    fn encode(&self, x: &[f32], t0: usize, region: &mut [u8]);
    /// Decode tokens t0..t1 of one head's region into `out` ((t1−t0)·d), in
    /// the rotated domain when [`PlaneCodec::rotation`] is `Some`.
    fn decode(&self, region: &[u8], t0: usize, t1: usize, out: &mut [f32]);
    fn rotation(&self) -> Option<&Rht>;
    /// The 8-bit query format of [`PlaneCodec::dot_q8`], for codecs that
    /// score keys with integer dot products instead of decoding them.
    fn activation(&self) -> Option<Activation> {
        None
    }
    /// Score of token `t` against a query quantized to
    /// [`PlaneCodec::activation`]'s format.
    fn dot_q8(&self, _region: &[u8], _t: usize, _act: &[u8]) -> f32 {
        unreachable!("dot_q8 is only called when activation() is Some")
    }
}

/// A query quantized for [`PlaneCodec::dot_q8`] (whole blocks: the key
/// codec fits the head size). A non-finite query is coded as is, so it
/// shows up as non-finite attention, as on the other paths, not as a panic.
pub fn quantize_query(a: Activation, q: &[f32]) -> Vec<u8> {
    let f = act_format(a);
    let mut out = vec![0u8; q.len() / f.block_elems() * f.block_bytes()];
    f.codec().encode(q, None, &mut out);
    out
}

/// Build the codec of one plane; `None` for f16 (kept raw).
pub fn build(spec: &CodecSpec, is_key: bool, head_dim: usize, block: usize) -> Result<Option<Arc<dyn PlaneCodec>>> {
    let shape = |reason: String| KvError::Shape { codec: spec.to_string(), head_dim, reason };
    Ok(match spec {
        CodecSpec::F16 => None,
        CodecSpec::Kivi { bits, group, rht } if is_key => {
            if *group != block {
                return Err(shape(format!("KIVI keys need blocks of g{group} tokens but this cache uses blocks of {block}")));
            }
            Some(Arc::new(KiviKeys { bits: *bits, block, dim: head_dim, rht: rht.then(|| Rht::new(head_dim, RHT_SEED)) }))
        }
        CodecSpec::Kivi { bits, group, rht } => {
            let g = (*group).min(head_dim);
            let f = Format::parse(&format!("uniform{bits}:g{g}:asym"))?;
            Some(Arc::new(TokenCodec::new(f, *rht, head_dim, block).map_err(shape)?))
        }
        CodecSpec::Quant { spec, rht, center } => {
            let mut s = spec.clone();
            s.params.dim = head_dim;
            // Rotation codecs code each token with the stretch search
            // (`:fit`, same bytes, lower error; the other rows ignore it).
            s.params.fit = true;
            let inner = TokenCodec::new(s.build()?, *rht, head_dim, block).map_err(shape)?;
            if *center {
                Some(Arc::new(Centered::new(inner, head_dim).map_err(shape)?))
            } else {
                Some(Arc::new(inner))
            }
        }
    })
}

/// A row of the format table applied to each token's head vector.
pub struct TokenCodec {
    format: Format,
    dim: usize,
    block: usize,
    token_bytes: usize,
    /// The `+rht` rotation (rotating codecs bring their own).
    rht: Option<Rht>,
}

impl TokenCodec {
    fn new(format: Format, rht: bool, dim: usize, block: usize) -> std::result::Result<TokenCodec, String> {
        let token_bytes = format.encoded_len(dim).map_err(|_| format!("{} codes blocks of {} elements", format.name(), format.block_elems()))?;
        Ok(TokenCodec { rht: rht.then(|| Rht::new(dim, RHT_SEED)), format, dim, block, token_bytes })
    }

    fn codec(&self) -> &dyn Codec {
        self.format.codec()
    }
}

impl PlaneCodec for TokenCodec {
    fn layout(&self) -> PlaneLayout {
        PlaneLayout { region_bytes: self.block * self.token_bytes, header_bytes: 0, row_bytes: self.token_bytes, per_token: true }
    }
    fn encode(&self, x: &[f32], t0: usize, region: &mut [u8]) {
        let tb = self.token_bytes;
        let mut buf = vec![0f32; self.dim];
        for (i, row) in x.chunks_exact(self.dim).enumerate() {
            let out = &mut region[(t0 + i) * tb..(t0 + i + 1) * tb];
            match &self.rht {
                Some(r) => {
                    buf.copy_from_slice(row);
                    r.forward(&mut buf);
                    self.codec().encode(&buf, None, out);
                }
                None => self.codec().encode(row, None, out),
            }
        }
    }
    fn decode(&self, region: &[u8], t0: usize, t1: usize, out: &mut [f32]) {
        let codes = &region[t0 * self.token_bytes..t1 * self.token_bytes];
        if self.codec().rotation().is_some() {
            self.codec().decode_rotated(codes, out);
        } else {
            self.codec().decode(codes, out);
        }
    }
    fn rotation(&self) -> Option<&Rht> {
        self.rht.as_ref().or_else(|| self.codec().rotation())
    }
    fn activation(&self) -> Option<Activation> {
        // Integer scoring needs codes in the query's own domain.
        if self.rotation().is_some() {
            None
        } else {
            self.codec().activation()
        }
    }
    fn dot_q8(&self, region: &[u8], t: usize, act: &[u8]) -> f32 {
        self.codec().dot_q8(&region[t * self.token_bytes..(t + 1) * self.token_bytes], act)
    }
}

/// A per-token codec applied to each token's difference from the block's
/// channel mean; the mean is stored once per block and head (q8_0, or f16
/// when the head size is not a multiple of 32). Region: mean | inner codes.
pub struct Centered {
    inner: TokenCodec,
    mean: Format,
    mean_bytes: usize,
    dim: usize,
}

impl Centered {
    fn new(inner: TokenCodec, dim: usize) -> std::result::Result<Centered, String> {
        let mean = Format::parse(if dim % 32 == 0 { "q8_0" } else { "f16" }).map_err(|e| e.to_string())?;
        let mean_bytes = mean.encoded_len(dim).map_err(|e| e.to_string())?;
        Ok(Centered { inner, mean, mean_bytes, dim })
    }

    fn mean_of(&self, region: &[u8]) -> Vec<f32> {
        let mut m = vec![0f32; self.dim];
        self.mean.codec().decode(&region[..self.mean_bytes], &mut m);
        m
    }
}

impl PlaneCodec for Centered {
    fn layout(&self) -> PlaneLayout {
        let inner = self.inner.layout();
        PlaneLayout { region_bytes: self.mean_bytes + inner.region_bytes, header_bytes: self.mean_bytes, row_bytes: inner.row_bytes, per_token: false }
    }
    fn encode(&self, x: &[f32], t0: usize, region: &mut [u8]) {
        let d = self.dim;
        let n = (x.len() / d) as f32;
        let mut m = vec![0f32; d];
        for row in x.chunks_exact(d) {
            lowbit_quant::simd::axpy(1.0 / n, row, &mut m);
        }
        let (head, body) = region.split_at_mut(self.mean_bytes);
        self.mean.codec().encode(&m, None, head);
        // Code the differences from the mean as stored, so decode agrees.
        self.mean.codec().decode(head, &mut m);
        let diff: Vec<f32> = x.chunks_exact(d).flat_map(|row| row.iter().zip(&m).map(|(a, b)| a - b)).collect();
        self.inner.encode(&diff, t0, body);
    }
    fn decode(&self, region: &[u8], t0: usize, t1: usize, out: &mut [f32]) {
        self.inner.decode(&region[self.mean_bytes..], t0, t1, out);
        let mut m = self.mean_of(region);
        if let Some(r) = self.inner.rotation() {
            r.forward(&mut m);
        }
        for row in out.chunks_exact_mut(self.dim) {
            lowbit_quant::simd::axpy(1.0, &m, row);
        }
    }
    fn rotation(&self) -> Option<&Rht> {
        self.inner.rotation()
    }
}

/// KIVI keys: for each channel, an asymmetric `bits`-bit grid over the
/// block's tokens (f16 scale and minimum per channel). Region layout:
/// d × (scale f16, min f16), then each token's d codes packed.
pub struct KiviKeys {
    bits: u32,
    block: usize,
    dim: usize,
    rht: Option<Rht>,
}

impl KiviKeys {
    fn row_bytes(&self) -> usize {
        packed_len(self.dim, self.bits)
    }
}

impl PlaneCodec for KiviKeys {
    fn layout(&self) -> PlaneLayout {
        PlaneLayout { region_bytes: 4 * self.dim + self.block * self.row_bytes(), header_bytes: 4 * self.dim, row_bytes: self.row_bytes(), per_token: false }
    }
    fn encode(&self, x: &[f32], t0: usize, region: &mut [u8]) {
        let d = self.dim;
        let rotated;
        let x = match &self.rht {
            Some(r) => {
                let mut y = x.to_vec();
                y.chunks_exact_mut(d).for_each(|row| r.forward(row));
                rotated = y;
                &rotated[..]
            }
            None => x,
        };
        let qmax = ((1u32 << self.bits) - 1) as f32;
        let (head, body) = region.split_at_mut(4 * d);
        let mut scale = vec![0f32; d];
        let mut min = vec![0f32; d];
        for c in 0..d {
            let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
            for row in x.chunks_exact(d) {
                lo = lo.min(row[c]);
                hi = hi.max(row[c]);
            }
            // Code against the stored (f16) constants so decode agrees.
            let s = half::f16::from_f32((hi - lo) / qmax);
            let m = half::f16::from_f32(lo);
            head[4 * c..4 * c + 2].copy_from_slice(&s.to_le_bytes());
            head[4 * c + 2..4 * c + 4].copy_from_slice(&m.to_le_bytes());
            scale[c] = s.to_f32();
            min[c] = m.to_f32();
        }
        let mut codes = vec![0u8; d];
        for (row, out) in x.chunks_exact(d).zip(body.chunks_exact_mut(self.row_bytes()).skip(t0)) {
            for (c, code) in codes.iter_mut().enumerate() {
                let q = if scale[c] > 0.0 { ((row[c] - min[c]) / scale[c]).round() } else { 0.0 };
                *code = q.clamp(0.0, qmax) as u8;
            }
            pack(&codes, self.bits, out);
        }
    }
    fn decode(&self, region: &[u8], t0: usize, t1: usize, out: &mut [f32]) {
        let d = self.dim;
        let rb = self.row_bytes();
        let (head, body) = region.split_at(4 * d);
        let f16_at = |i: usize| half::f16::from_le_bytes([head[i], head[i + 1]]).to_f32();
        let scale: Vec<f32> = (0..d).map(|c| f16_at(4 * c)).collect();
        let min: Vec<f32> = (0..d).map(|c| f16_at(4 * c + 2)).collect();
        lowbit_quant::simd::affine_rows(&body[t0 * rb..t1 * rb], rb, self.bits, &scale, &min, out);
    }
    fn rotation(&self) -> Option<&Rht> {
        self.rht.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(spec: &str, is_key: bool) -> f32 {
        let (d, b) = (64, 32);
        let c = build(&CodecSpec::parse(spec).unwrap(), is_key, d, b).unwrap().unwrap();
        let x: Vec<f32> = (0..b * d).map(|i| ((i * 7919 % 101) as f32 / 50.0 - 1.0) * (1.0 + (i % d) as f32 / 16.0)).collect();
        let mut region = vec![0u8; c.head_bytes()];
        if c.per_token() {
            for t in 0..b {
                c.encode(&x[t * d..(t + 1) * d], t, &mut region);
            }
        } else {
            c.encode(&x, 0, &mut region);
        }
        let mut y = vec![0f32; b * d];
        c.decode(&region, 0, b, &mut y);
        if let Some(r) = c.rotation() {
            y.chunks_exact_mut(d).for_each(|row| r.inverse(row));
        }
        let err: f32 = x.iter().zip(&y).map(|(a, b)| (a - b).powi(2)).sum();
        err / x.iter().map(|a| a * a).sum::<f32>()
    }

    #[test]
    fn every_codec_roundtrips_with_small_error() {
        for (spec, key, max) in [
            ("q8_0", true, 1e-4),
            ("q4_0", true, 0.02),
            ("q4_1+rht", true, 0.02),
            ("kivi4", true, 0.01),
            ("kivi2+rht", true, 0.2),
            ("kivi2", false, 0.2),
            ("turbo4", true, 0.02),
            ("turbo3p", true, 0.2),
            ("polar4", false, 0.05),
            ("turbo3+center", true, 0.05),
            ("q4_0+rht+center", true, 0.02),
        ] {
            let e = roundtrip(spec, key);
            assert!(e < max, "{spec}: NMSE {e}");
        }
    }

    #[test]
    fn shape_errors_are_reported() {
        let e = build(&CodecSpec::parse("q8_0").unwrap(), true, 48, 32).err().unwrap().to_string();
        assert!(e.contains("head_dim 48"), "{e}");
        let e = build(&CodecSpec::parse("kivi2:g64").unwrap(), true, 64, 32).err().unwrap().to_string();
        assert!(e.contains("blocks of g64"), "{e}");
    }
}
