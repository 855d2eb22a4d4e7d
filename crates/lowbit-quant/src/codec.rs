//! The codec interface every row of the format table implements, and
//! [`Format`], the checked handle users hold.
//!
//! A [`Codec`] works on whole blocks and may assume its inputs were
//! validated: lengths are multiples of the block, buffers are sized, values
//! are finite. [`Format`] does that validation once, so no kernel repeats it
//! and no kernel can panic on user input.

use std::sync::Arc;

use crate::error::{QuantError, Result};
use crate::rot::rht::Rht;
use crate::spec::Spec;

/// The quantized activation format a codec's integer dot product expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// ggml Q8_0: blocks of 32, one f16 scale.
    Q8_0,
    /// ggml Q8_1: blocks of 32, f16 scale and f16 scale·sum.
    Q8_1,
    /// ggml Q8_K: blocks of 256, f32 scale and 16 partial sums.
    Q8K,
}

/// Block-level kernels of one format. Inputs are pre-validated by [`Format`].
pub trait Codec: Send + Sync {
    /// Elements per block.
    fn block_elems(&self) -> usize;
    /// Bytes per block, every overhead (scales, mins, norms) included.
    fn block_bytes(&self) -> usize;
    /// Encode whole blocks. `importance` (same length as `x`) weights the
    /// error of each element; only called when [`Codec::supports_importance`].
    fn encode(&self, x: &[f32], importance: Option<&[f32]>, out: &mut [u8]);
    /// Decode whole blocks.
    fn decode(&self, codes: &[u8], out: &mut [f32]);
    /// The orthonormal rotation a codec applies before coding (TurboQuant,
    /// PolarQuant), so a caller can rotate a query once and work in the
    /// rotated domain through [`Codec::decode_rotated`].
    fn rotation(&self) -> Option<&Rht> {
        None
    }
    /// Decode whole blocks but stop in the rotated domain:
    /// `decode = rotation().inverse ∘ decode_rotated`. Only called when
    /// [`Codec::rotation`] is `Some`.
    fn decode_rotated(&self, _codes: &[u8], _out: &mut [f32]) {
        unreachable!("decode_rotated is only called when rotation() is Some")
    }
    /// Whether `encode` uses importance weights.
    fn supports_importance(&self) -> bool {
        false
    }
    /// Dot product of decoded codes with an f32 vector.
    fn dot_f32(&self, codes: &[u8], x: &[f32]) -> f32 {
        let n = self.block_elems();
        let mut buf = vec![0f32; n];
        let mut sum = 0f32;
        for (blk, xs) in codes.chunks_exact(self.block_bytes()).zip(x.chunks_exact(n)) {
            self.decode(blk, &mut buf);
            sum += buf.iter().zip(xs).map(|(a, b)| a * b).sum::<f32>();
        }
        sum
    }
    /// The activation format of [`Codec::dot_q8`], if the codec has one.
    fn activation(&self) -> Option<Activation> {
        None
    }
    /// Dot product against an activation vector quantized with
    /// [`Codec::activation`]'s format (same element count).
    fn dot_q8(&self, _codes: &[u8], _act: &[u8]) -> f32 {
        unreachable!("dot_q8 is only called when activation() is Some")
    }
    /// One weight row against several activations (a matrix product's
    /// inner loop): `out[i] = dot_q8(codes, acts[i])`. Kernels override it
    /// to unpack the row once for several activations.
    fn dot_q8_batch(&self, codes: &[u8], acts: &[&[u8]], out: &mut [f32]) {
        for (o, a) in out.iter_mut().zip(acts) {
            *o = self.dot_q8(codes, a);
        }
    }
    /// Four weight rows against several activations: `out[r][i] =
    /// dot_q8(rows[r], acts[i])`. Kernels override it to load each
    /// activation once for four rows.
    fn dot_q8_batch4(&self, rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
        for (r, o) in rows.into_iter().zip(out) {
            self.dot_q8_batch(r, acts, o);
        }
    }
}

/// A parsed, ready-to-use quantization format: the checked entry point to a
/// row of the format table.
#[derive(Clone)]
pub struct Format {
    spec: Spec,
    codec: Arc<dyn Codec>,
}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Format({})", self.spec)
    }
}

impl Format {
    pub(crate) fn new(spec: Spec, codec: Arc<dyn Codec>) -> Self {
        Format { spec, codec }
    }

    /// Parse a spec string such as `q4_k`, `turbo3` or `uniform4:g32:asym`.
    pub fn parse(s: &str) -> Result<Format> {
        Spec::parse(s)?.build()
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Canonical spec string.
    pub fn name(&self) -> String {
        self.spec.to_string()
    }

    pub fn block_elems(&self) -> usize {
        self.codec.block_elems()
    }

    pub fn block_bytes(&self) -> usize {
        self.codec.block_bytes()
    }

    /// Storage cost per element, all overheads counted.
    pub fn bits_per_element(&self) -> f64 {
        self.codec.block_bytes() as f64 * 8.0 / self.codec.block_elems() as f64
    }

    pub fn supports_importance(&self) -> bool {
        self.codec.supports_importance()
    }

    pub fn activation(&self) -> Option<Activation> {
        self.codec.activation()
    }

    /// Raw access to the codec's kernels (for benchmarks and backends).
    pub fn codec(&self) -> &dyn Codec {
        &*self.codec
    }

    /// Bytes needed to store `n` elements; errors if `n` is not whole blocks.
    pub fn encoded_len(&self, n: usize) -> Result<usize> {
        self.check_len(n)?;
        Ok(n / self.block_elems() * self.block_bytes())
    }

    fn check_len(&self, n: usize) -> Result<()> {
        let block = self.block_elems();
        if n % block != 0 {
            return Err(QuantError::BadLength { format: self.name(), len: n, block });
        }
        Ok(())
    }

    fn check_finite(&self, x: &[f32]) -> Result<()> {
        match x.iter().position(|v| !v.is_finite()) {
            Some(index) => Err(QuantError::NonFinite { format: self.name(), index, value: x[index] }),
            None => Ok(()),
        }
    }

    fn check_codes(&self, codes: &[u8], elems: usize) -> Result<()> {
        let need = self.encoded_len(elems)?;
        if codes.len() != need {
            return Err(QuantError::BufferSize { format: self.name(), got: codes.len(), need, elems });
        }
        Ok(())
    }

    /// Quantize `x` into a new buffer.
    pub fn encode(&self, x: &[f32]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.encoded_len(x.len())?];
        self.encode_into(x, &mut out)?;
        Ok(out)
    }

    /// Quantize `x` into `out`, which must be exactly [`Format::encoded_len`] bytes.
    pub fn encode_into(&self, x: &[f32], out: &mut [u8]) -> Result<()> {
        self.check_codes(out, x.len())?;
        self.check_finite(x)?;
        self.codec.encode(x, None, out);
        Ok(())
    }

    /// Quantize with per-element importance weights (llama.cpp's imatrix:
    /// pass the row's column importances; `importance.len() == x.len()`).
    pub fn encode_weighted(&self, x: &[f32], importance: &[f32]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.encoded_len(x.len())?];
        if !self.supports_importance() {
            return Err(QuantError::Unsupported {
                format: self.name(),
                what: "importance-weighted quantization (supported by q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl)".into(),
            });
        }
        if importance.len() != x.len() {
            return Err(QuantError::LengthMismatch {
                format: self.name(),
                what: "importance",
                got: importance.len(),
                expected: x.len(),
            });
        }
        self.check_finite(x)?;
        self.check_finite(importance)?;
        if let Some(index) = importance.iter().position(|w| *w < 0.0) {
            return Err(QuantError::NonFinite { format: self.name(), index, value: importance[index] });
        }
        self.codec.encode(x, Some(importance), &mut out);
        Ok(out)
    }

    /// Dequantize `codes` holding `n` elements.
    pub fn decode(&self, codes: &[u8], n: usize) -> Result<Vec<f32>> {
        let mut out = vec![0f32; n];
        self.decode_into(codes, &mut out)?;
        Ok(out)
    }

    pub fn decode_into(&self, codes: &[u8], out: &mut [f32]) -> Result<()> {
        self.check_codes(codes, out.len())?;
        self.codec.decode(codes, out);
        Ok(())
    }

    /// `<decode(codes), x>` without materializing the decoded vector.
    pub fn dot_f32(&self, codes: &[u8], x: &[f32]) -> Result<f32> {
        self.check_codes(codes, x.len())?;
        self.check_finite(x)?;
        Ok(self.codec.dot_f32(codes, x))
    }

    /// Quantize an activation vector into this format's dot-product partner
    /// (Q8_0 or Q8_K).
    pub fn quantize_activation(&self, x: &[f32]) -> Result<Vec<u8>> {
        let act = self.require_activation()?;
        act_format(act).encode(x)
    }

    /// Integer-domain dot product with an activation from
    /// [`Format::quantize_activation`], `n` elements long.
    pub fn dot_q8(&self, codes: &[u8], act: &[u8], n: usize) -> Result<f32> {
        let a = self.require_activation()?;
        self.check_codes(codes, n)?;
        act_format(a).check_codes(act, n)?;
        Ok(self.codec.dot_q8(codes, act))
    }

    fn require_activation(&self) -> Result<Activation> {
        self.activation().ok_or_else(|| QuantError::Unsupported {
            format: self.name(),
            what: "dot with a q8 activation (use dot_f32)".into(),
        })
    }
}

/// The [`Format`] of an activation type (built once).
pub fn act_format(a: Activation) -> Format {
    static Q8_0: std::sync::OnceLock<Format> = std::sync::OnceLock::new();
    static Q8_1: std::sync::OnceLock<Format> = std::sync::OnceLock::new();
    static Q8K: std::sync::OnceLock<Format> = std::sync::OnceLock::new();
    match a {
        Activation::Q8_0 => Q8_0.get_or_init(|| Format::parse("q8_0").expect("q8_0 is in the table")).clone(),
        Activation::Q8_1 => Q8_1.get_or_init(|| Format::parse("q8_1").expect("q8_1 is in the table")).clone(),
        Activation::Q8K => Q8K.get_or_init(|| Format::parse("q8_k").expect("q8_k is in the table")).clone(),
    }
}
