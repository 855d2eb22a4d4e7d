//! Run-time dispatch of the hot kernels to AVX-512, AVX2 or the scalar
//! reference. Every `*_at(level, ..)` function is public so property tests
//! can compare each level against the scalar reference; the plain function
//! uses the best level this CPU supports (or `LOWBIT_SIMD=scalar|avx2|avx512`
//! to force a lower one).

use std::sync::OnceLock;

use crate::ggml::legacy::{dequant_q8_0_ref, dot_q4_1_q8_1_ref, dot_q8_0_f32_ref, dot_q8_0_q8_0_ref};
use crate::ggml::q45_k::{dequant_q4k_ref, dot_q4k_f32_ref, dot_q4k_q8k_ref};
use crate::rot::rht::fwht_ref;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Scalar,
    Avx2,
    Avx512,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }
}

/// Every level this CPU can run, scalar first.
pub fn available() -> Vec<Level> {
    let mut v = vec![Level::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c") {
            v.push(Level::Avx2);
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                v.push(Level::Avx512);
            }
        }
    }
    v
}

/// The level the plain kernel functions use.
pub fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = *available().last().unwrap_or(&Level::Scalar);
        let wanted = match std::env::var("LOWBIT_SIMD").ok().as_deref() {
            Some("scalar") => Level::Scalar,
            Some("avx2") => Level::Avx2,
            _ => Level::Avx512,
        };
        best.min(wanted)
    })
}

macro_rules! dispatch {
    ($(#[$m:meta])* $name:ident, $at:ident, ($($arg:ident : $ty:ty),*) -> $ret:ty, $scalar:expr) => {
        $(#[$m])*
        pub fn $at(level: Level, $($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: a level above Scalar is only produced by `available()`
                // after the matching CPU features were detected.
                match level {
                    Level::Avx512 => return unsafe { avx512::$name($($arg),*) },
                    Level::Avx2 => return unsafe { avx2::$name($($arg),*) },
                    Level::Scalar => {}
                }
            }
            let _ = level;
            $scalar($($arg),*)
        }
        $(#[$m])*
        pub fn $name($($arg: $ty),*) -> $ret {
            $at(level(), $($arg),*)
        }
    };
}

fn quantize_bounds_ref(u: &[f32], bounds: &[f32], codes: &mut [u8]) {
    for (c, &v) in codes.iter_mut().zip(u) {
        *c = bounds.iter().filter(|&&b| v > b).count() as u8;
    }
}

dispatch!(
    /// In-place orthonormal Walsh–Hadamard transform (power-of-two length).
    fwht, fwht_at, (x: &mut [f32]) -> (), fwht_ref
);
dispatch!(
    /// codes[i] = number of `bounds` strictly below u[i] (a sorted codebook's index).
    quantize_bounds, quantize_bounds_at, (u: &[f32], bounds: &[f32], codes: &mut [u8]) -> (), quantize_bounds_ref
);
/// Scalar reference of the fused TurboQuant encode of one power-of-two
/// vector: returns ‖x‖, leaves the rotated coordinates in unit-sphere units
/// (u = H·D·x·√d/‖x‖) in `u` and their codebook indices in `codes`.
pub fn turbo_rotq_ref(x: &[f32], signs: &[f32], bounds: &[f32], u: &mut [f32], codes: &mut [u8]) -> f32 {
    let n = x.len();
    let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
    for ((o, v), s) in u.iter_mut().zip(x).zip(signs) {
        *o = v * s;
    }
    fwht_ref(&mut u[..n]);
    let s = if norm > 0.0 { (n as f32).sqrt() / norm } else { 0.0 };
    for v in u[..n].iter_mut() {
        *v *= s;
    }
    quantize_bounds_ref(&u[..n], bounds, codes);
    norm
}

/// Scalar reference of the fused TurboQuant decode of one power-of-two
/// vector: out = D·H·(levels[codes]·scale).
pub fn turbo_dequant_ref(codes: &[u8], levels: &[f32], signs: &[f32], scale: f32, out: &mut [f32]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = levels[c as usize] * scale;
    }
    fwht_ref(out);
    for (o, s) in out.iter_mut().zip(signs) {
        *o *= s;
    }
}

dispatch!(
    /// Fused TurboQuant encode of one power-of-two vector (see [`turbo_rotq_ref`]).
    turbo_rotq, turbo_rotq_at, (x: &[f32], signs: &[f32], bounds: &[f32], u: &mut [f32], codes: &mut [u8]) -> f32, turbo_rotq_ref
);
dispatch!(
    /// Fused TurboQuant decode of one power-of-two vector (see [`turbo_dequant_ref`]).
    turbo_dequant, turbo_dequant_at, (codes: &[u8], levels: &[f32], signs: &[f32], scale: f32, out: &mut [f32]) -> (), turbo_dequant_ref
);
dispatch!(
    /// Q8_0 blocks → f32.
    dequant_q8_0, dequant_q8_0_at, (codes: &[u8], out: &mut [f32]) -> (), dequant_q8_0_ref
);
dispatch!(
    /// Q8_0 · Q8_0.
    dot_q8_0_q8_0, dot_q8_0_q8_0_at, (codes: &[u8], act: &[u8]) -> f32, dot_q8_0_q8_0_ref
);
/// out[r][i] = dot(rows[r], acts[i]): four rows against any number of
/// activations one dot at a time (the references, and what the tiled
/// kernels do with activations past their last tile).
pub(crate) fn rows_by_acts(rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4], dot: impl Fn(&[u8], &[u8]) -> f32) {
    for (r, o) in rows.into_iter().zip(out) {
        for (v, a) in o.iter_mut().zip(acts) {
            *v = dot(r, a);
        }
    }
}

fn dot_q8_0_q8_0_4xn_ref(rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
    rows_by_acts(rows, acts, out, dot_q8_0_q8_0_ref)
}
dispatch!(
    /// Four Q8_0 rows against any number of Q8_0 activations (a prefill
    /// matmul's inner loop): out[row][i] = rows[row] · acts[i].
    dot_q8_0_q8_0_4xn, dot_q8_0_q8_0_4xn_at, (rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) -> (), dot_q8_0_q8_0_4xn_ref
);
dispatch!(
    /// Q4_K blocks → f32.
    dequant_q4k, dequant_q4k_at, (codes: &[u8], out: &mut [f32]) -> (), dequant_q4k_ref
);
dispatch!(
    /// Q4_K · Q8_K.
    dot_q4k_q8k, dot_q4k_q8k_at, (codes: &[u8], act: &[u8]) -> f32, dot_q4k_q8k_ref
);
dispatch!(
    /// Q8_0 · f32.
    dot_q8_0_f32, dot_q8_0_f32_at, (codes: &[u8], x: &[f32]) -> f32, dot_q8_0_f32_ref
);
dispatch!(
    /// Q4_K · f32.
    dot_q4k_f32, dot_q4k_f32_at, (codes: &[u8], x: &[f32]) -> f32, dot_q4k_f32_ref
);

/// Scalar reference: little-endian f32 bytes · f32.
pub fn dot_f32_bytes_ref(codes: &[u8], x: &[f32]) -> f32 {
    codes.chunks_exact(4).zip(x).map(|(c, v)| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * v).sum()
}

dispatch!(
    /// Stored f32 (little-endian bytes, any alignment) · f32.
    dot_f32_bytes, dot_f32_bytes_at, (codes: &[u8], x: &[f32]) -> f32, dot_f32_bytes_ref
);
dispatch!(
    /// Q4_1 · Q8_1.
    dot_q4_1_q8_1, dot_q4_1_q8_1_at, (codes: &[u8], act: &[u8]) -> f32, dot_q4_1_q8_1_ref
);

/// Scalar reference: out[i] = levels[code i]·scale for `out.len()` codes of
/// `bits` bits packed as in [`crate::bitpack`].
pub fn levels_scaled_ref(packed: &[u8], bits: u32, levels: &[f32], scale: f32, out: &mut [f32]) {
    let mut codes = [0u8; 64];
    for (i, chunk) in out.chunks_mut(64).enumerate() {
        // 64 codes always start on a byte boundary.
        let at = i * 64 * bits as usize / 8;
        let c = &mut codes[..chunk.len()];
        crate::bitpack::unpack(&packed[at..], bits, c);
        for (o, &k) in chunk.iter_mut().zip(c.iter()) {
            *o = levels[k as usize] * scale;
        }
    }
}

dispatch!(
    /// Codebook decode: packed `bits`-bit codes → levels[code]·scale. The
    /// vector kernels handle bits ≤ 4 (≤ 16 levels) and fall back above.
    levels_scaled, levels_scaled_at, (packed: &[u8], bits: u32, levels: &[f32], scale: f32, out: &mut [f32]) -> (), levels_scaled_ref
);

/// Scalar reference: TurboQuant-MSE blocks (norm f16 | packed codes) to
/// the rotated domain, out = levels[code]·norm/√dim, one row per block.
pub fn turbo_rows_ref(blocks: &[u8], bits: u32, dim: usize, levels: &[f32], out: &mut [f32]) {
    let bb = 2 + crate::bitpack::packed_len(dim, bits);
    let inv = 1.0 / (dim as f32).sqrt();
    for (b, y) in blocks.chunks_exact(bb).zip(out.chunks_exact_mut(dim)) {
        let norm = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        levels_scaled_ref(&b[2..], bits, levels, norm * inv, y);
    }
}

dispatch!(
    /// Rotated-domain decode of whole TurboQuant-MSE blocks (see
    /// [`turbo_rows_ref`]): the codebook is loaded once for every row.
    turbo_rows, turbo_rows_at, (blocks: &[u8], bits: u32, dim: usize, levels: &[f32], out: &mut [f32]) -> (), turbo_rows_ref
);

/// Scalar reference: rows of packed `bits`-bit codes (each `scale.len()`
/// codes, `row_bytes` apart) to out[t][c] = code·scale[c] + min[c] — a
/// per-column affine grid such as KIVI's per-channel keys.
pub fn affine_rows_ref(packed: &[u8], row_bytes: usize, bits: u32, scale: &[f32], min: &[f32], out: &mut [f32]) {
    let d = scale.len();
    let mut codes = vec![0u8; d];
    for (row, y) in packed.chunks(row_bytes).zip(out.chunks_exact_mut(d)) {
        crate::bitpack::unpack(row, bits, &mut codes);
        for (((o, &c), s), m) in y.iter_mut().zip(&codes).zip(scale).zip(min) {
            *o = c as f32 * s + m;
        }
    }
}

dispatch!(
    /// Per-column affine decode of packed code rows (see [`affine_rows_ref`]).
    affine_rows, affine_rows_at, (packed: &[u8], row_bytes: usize, bits: u32, scale: &[f32], min: &[f32], out: &mut [f32]) -> (), affine_rows_ref
);

/// Scalar reference: out[i] = Σ_j q[j]·levels[code_ij] for rows of
/// `q.len()` packed `bits`-bit codes, `row_bytes` apart — asymmetric
/// distance computation of a (rotated) query against codebook codes.
pub fn code_dots_ref(packed: &[u8], row_bytes: usize, bits: u32, levels: &[f32], q: &[f32], out: &mut [f32]) {
    let mut buf = [0f32; 64];
    for (o, row) in out.iter_mut().zip(packed.chunks(row_bytes)) {
        let mut sum = 0f32;
        for (i, qc) in q.chunks(64).enumerate() {
            let b = &mut buf[..qc.len()];
            levels_scaled_ref(&row[i * 8 * bits as usize..], bits, levels, 1.0, b);
            sum += qc.iter().zip(b.iter()).map(|(a, c)| a * c).sum::<f32>();
        }
        *o = sum;
    }
}

dispatch!(
    /// Query · codebook codes, row by row, without decoding to memory (see
    /// [`code_dots_ref`]); vector kernels for bits ≤ 4.
    code_dots, code_dots_at, (packed: &[u8], row_bytes: usize, bits: u32, levels: &[f32], q: &[f32], out: &mut [f32]) -> (), code_dots_ref
);

/// Scalar reference: out[i] = c0 + Σ_j t[256·j + codes[i·row_bytes + j]]
/// — a scan of byte codes through one 256-entry lookup table per code byte
/// (product-quantizer style asymmetric distance computation).
pub fn table_dots_ref(codes: &[u8], row_bytes: usize, t: &[f32], c0: f32, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(row_bytes)) {
        *o = c0 + row.iter().enumerate().map(|(j, &c)| t[256 * j + c as usize]).sum::<f32>();
    }
}

dispatch!(
    /// Byte codes through per-byte lookup tables (see [`table_dots_ref`]);
    /// AVX-512 gathers 16 table entries per instruction.
    table_dots, table_dots_at, (codes: &[u8], row_bytes: usize, t: &[f32], c0: f32, out: &mut [f32]) -> (), table_dots_ref
);

/// Scalar reference: with c(x) = the number of `bounds` strictly below x
/// (a sorted codebook's index), returns (Σ u·levels[c(u)], Σ levels[c(u)]²)
/// — what a codebook's least-squares fit to `u` needs, without the codes.
pub fn stretch_fit_ref(u: &[f32], bounds: &[f32], levels: &[f32]) -> (f32, f32) {
    let (mut uc, mut cc) = (0f32, 0f32);
    for &x in u {
        let l = levels[bounds.iter().filter(|&&b| x > b).count()];
        uc += x * l;
        cc += l * l;
    }
    (uc, cc)
}

dispatch!(
    /// See [`stretch_fit_ref`]; AVX-512 finds the codes by binary search with
    /// register permutes (codebooks of up to 32 levels).
    stretch_fit, stretch_fit_at, (u: &[f32], bounds: &[f32], levels: &[f32]) -> (f32, f32), stretch_fit_ref
);

/// Scalar reference: y += a·x.
pub fn axpy_ref(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

dispatch!(
    /// y += a·x over the shorter length.
    axpy, axpy_at, (a: f32, x: &[f32], y: &mut [f32]) -> (), axpy_ref
);

/// Scalar reference: x[i] ← exp(x[i] − max); returns the sum (a softmax
/// step; `max` ≥ every x[i]).
pub fn exp_sub_sum_ref(x: &mut [f32], max: f32) -> f32 {
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    sum
}

dispatch!(
    /// x[i] ← exp(x[i] − max), returning Σ x[i]; vector versions use a
    /// degree-6 polynomial (relative error about 2e-7).
    exp_sub_sum, exp_sub_sum_at, (x: &mut [f32], max: f32) -> f32, exp_sub_sum_ref
);

/// Scalar reference: acc += Σ_i w[i]·rows[i] (rows of acc.len() floats) —
/// a softmax-weighted sum of value rows.
pub fn weighted_rows_ref(w: &[f32], rows: &[f32], acc: &mut [f32]) {
    let d = acc.len();
    for (&wi, row) in w.iter().zip(rows.chunks_exact(d)) {
        axpy_ref(wi, row, acc);
    }
}

dispatch!(
    /// acc += Σ_i w[i]·rows[i]: the accumulator stays in registers across rows.
    weighted_rows, weighted_rows_at, (w: &[f32], rows: &[f32], acc: &mut [f32]) -> (), weighted_rows_ref
);

/// Scalar reference: out[i] = q · rows[i] (rows of q.len() floats).
pub fn dot_rows_ref(q: &[f32], rows: &[f32], out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(q.len())) {
        *o = q.iter().zip(row).map(|(a, b)| a * b).sum();
    }
}

dispatch!(
    /// out[i] = q · rows[i]: the query stays in registers across rows.
    dot_rows, dot_rows_at, (q: &[f32], rows: &[f32], out: &mut [f32]) -> (), dot_rows_ref
);

/// f32 · f32 through the byte-level kernel (any alignment).
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: viewing initialized f32s as bytes is always sound (u8 has alignment 1).
    let bytes = unsafe { std::slice::from_raw_parts(a.as_ptr() as *const u8, 4 * n) };
    dot_f32_bytes(bytes, &b[..n])
}

pub(crate) fn dot_q4_1_q8_1_x4_ref(codes: &[u8], acts: [&[u8]; 4]) -> [f32; 4] {
    acts.map(|a| dot_q4_1_q8_1_ref(codes, a))
}

fn dot_q4_1_q8_1_4xn_ref(rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
    rows_by_acts(rows, acts, out, dot_q4_1_q8_1_ref)
}

dispatch!(
    /// Four Q4_1 rows against any number of Q8_1 activations (a prefill
    /// matmul's inner loop): out[row][i] = rows[row] · acts[i].
    dot_q4_1_q8_1_4xn, dot_q4_1_q8_1_4xn_at, (rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) -> (), dot_q4_1_q8_1_4xn_ref
);

dispatch!(
    /// One Q4_1 row against four Q8_1 activations.
    dot_q4_1_q8_1_x4, dot_q4_1_q8_1_x4_at, (codes: &[u8], acts: [&[u8]; 4]) -> [f32; 4], dot_q4_1_q8_1_x4_ref
);

fn f16_to_f32_ref(src: &[half::f16], dst: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

dispatch!(
    /// dst[i] = src[i] as f32 (min of the two lengths): one call for a
    /// whole row, 8 values per instruction (the f16 KV cache's rows).
    f16_to_f32, f16_to_f32_at, (src: &[half::f16], dst: &mut [f32]) -> (), f16_to_f32_ref
);

fn dot_rows_f16_ref(q: &[f32], rows: &[half::f16], stride: usize, out: &mut [f32]) {
    let mut row = vec![0f32; q.len()];
    for (i, o) in out.iter_mut().enumerate() {
        f16_to_f32_ref(&rows[i * stride..i * stride + q.len()], &mut row);
        dot_rows_ref(q, &row, std::slice::from_mut(o));
    }
}

dispatch!(
    /// out[i] = q · rows[i·stride .. i·stride + q.len()] on f16 rows (the f16
    /// KV cache, one head of a token-major block): the same results as
    /// converting the rows and calling [`dot_rows`] at the same level.
    dot_rows_f16, dot_rows_f16_at, (q: &[f32], rows: &[half::f16], stride: usize, out: &mut [f32]) -> (), dot_rows_f16_ref
);

fn weighted_rows_f16_ref(w: &[f32], rows: &[half::f16], stride: usize, acc: &mut [f32]) {
    let mut row = vec![0f32; acc.len()];
    for (i, &wi) in w.iter().enumerate() {
        f16_to_f32_ref(&rows[i * stride..i * stride + acc.len()], &mut row);
        weighted_rows_ref(&[wi], &row, acc);
    }
}

dispatch!(
    /// acc += Σ_i w[i]·rows[i·stride .. i·stride + acc.len()] on f16 rows:
    /// the same results as converting the rows and calling
    /// [`weighted_rows`] at the same level.
    weighted_rows_f16, weighted_rows_f16_at, (w: &[f32], rows: &[half::f16], stride: usize, acc: &mut [f32]) -> (), weighted_rows_f16_ref
);

/// Ask the CPU to bring `bytes` into its caches (one hint per 64-byte
/// line); no effect on results. Matrix–vector products call it a few KB
/// ahead of the row they compute: the hardware prefetcher alone leaves a
/// streamed weight matrix's loads waiting on memory.
#[inline]
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch hint never faults and reads nothing; the address is in bounds.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr() as *const i8) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Scalar reference of [`q8_block`].
pub fn q8_block_ref(x: &[f32], codes: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    (d, q8_codes_ref(x, id, codes))
}

/// codes[i] = round(x[i]·id) as i8 (half away from zero, saturating);
/// returns their sum. The SIMD [`q8_block`]s finish their tails with it.
pub(crate) fn q8_codes_ref(x: &[f32], id: f32, codes: &mut [u8]) -> i32 {
    let mut sum = 0i32;
    for (q, &v) in codes.iter_mut().zip(x) {
        let r = (v * id).round() as i8;
        sum += r as i32;
        *q = r as u8;
    }
    sum
}

dispatch!(
    /// One block of an 8-bit activation (Q8_0, Q8_1): d = max|x|/127,
    /// codes[i] = round(x[i]/d) (half away from zero) as i8; returns d and
    /// the sum of the codes. Equal to the scalar reference for finite x.
    q8_block, q8_block_at, (x: &[f32], codes: &mut [u8]) -> (f32, i32), q8_block_ref
);
