//! AVX2 + FMA + F16C kernels. Every function requires those features; the
//! dispatcher in `simd/mod.rs` only calls them after detecting them.
#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use crate::ggml::search::get_scale_min_k4;
use crate::rot::rht::fwht_ref;

#[inline(always)]
unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// f16 → f32 with the F16C instruction (the `half` crate only uses it
/// when the whole binary is built with F16C enabled).
#[inline(always)]
pub unsafe fn f16_at(b: &[u8], at: usize) -> f32 {
    let bits = u16::from_le_bytes([b[at], b[at + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// Two adjacent f16 values at `at` (lanes 0 and 1). Loading 32 bits lets
/// the compiler use a zeroing `movd`; a 16-bit value gets inserted into a
/// live register instead, chaining each block onto the last.
#[inline(always)]
unsafe fn f16x2_at(b: &[u8], at: usize) -> __m128 {
    let bits = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))
}

/// Butterflies for h = 1, 2, 4 inside one 8-lane register.
#[inline(always)]
unsafe fn fwht8(x: __m256) -> __m256 {
    let b = _mm256_permute_ps(x, 0b10_11_00_01);
    let x = _mm256_blend_ps(_mm256_add_ps(x, b), _mm256_sub_ps(b, x), 0b1010_1010);
    let b = _mm256_permute_ps(x, 0b01_00_11_10);
    let x = _mm256_blend_ps(_mm256_add_ps(x, b), _mm256_sub_ps(b, x), 0b1100_1100);
    let b = _mm256_permute2f128_ps(x, x, 1);
    _mm256_blend_ps(_mm256_add_ps(x, b), _mm256_sub_ps(b, x), 0b1111_0000)
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn fwht(x: &mut [f32]) {
    let n = x.len();
    if n < 8 {
        return fwht_ref(x);
    }
    let p = x.as_mut_ptr();
    for i in (0..n).step_by(8) {
        _mm256_storeu_ps(p.add(i), fwht8(_mm256_loadu_ps(p.add(i))));
    }
    let mut h = 8;
    while h < n {
        for i in (0..n).step_by(2 * h) {
            for j in (i..i + h).step_by(8) {
                let a = _mm256_loadu_ps(p.add(j));
                let b = _mm256_loadu_ps(p.add(j + h));
                _mm256_storeu_ps(p.add(j), _mm256_add_ps(a, b));
                _mm256_storeu_ps(p.add(j + h), _mm256_sub_ps(a, b));
            }
        }
        h *= 2;
    }
    let s = _mm256_set1_ps(1.0 / (n as f32).sqrt());
    for i in (0..n).step_by(8) {
        _mm256_storeu_ps(p.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), s));
    }
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_bounds(u: &[f32], bounds: &[f32], codes: &mut [u8]) {
    let n = u.len().min(codes.len());
    let mut i = 0;
    let mut tmp = [0i32; 8];
    while i + 8 <= n {
        let v = _mm256_loadu_ps(u.as_ptr().add(i));
        let mut cnt = _mm256_setzero_si256();
        for &b in bounds {
            let gt = _mm256_castps_si256(_mm256_cmp_ps(v, _mm256_set1_ps(b), _CMP_GT_OQ));
            cnt = _mm256_sub_epi32(cnt, gt);
        }
        _mm256_storeu_si256(tmp.as_mut_ptr() as *mut __m256i, cnt);
        for k in 0..8 {
            codes[i + k] = tmp[k] as u8;
        }
        i += 8;
    }
    super::quantize_bounds_ref(&u[i..n], bounds, &mut codes[i..n]);
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequant_q8_0(codes: &[u8], out: &mut [f32]) {
    for (b, y) in codes.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(b, 0));
        for k in 0..4 {
            let q = _mm_loadl_epi64(b.as_ptr().add(2 + 8 * k) as *const __m128i);
            let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            _mm256_storeu_ps(y.as_mut_ptr().add(8 * k), _mm256_mul_ps(f, d));
        }
    }
}

/// 32 signed bytes · 32 signed bytes → eight i32 partial sums.
#[inline(always)]
unsafe fn dot_i8x32(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q8_0_q8_0(codes: &[u8], act: &[u8]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, y) in codes.chunks_exact(34).zip(act.chunks_exact(34)) {
        let x = _mm256_loadu_si256(b.as_ptr().add(2) as *const __m256i);
        let q = _mm256_loadu_si256(y.as_ptr().add(2) as *const __m256i);
        let s = _mm256_cvtepi32_ps(dot_i8x32(x, q));
        let d = _mm_mul_ss(f16x2_at(b, 0), f16x2_at(y, 0));
        acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(d), s, acc);
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dequant_q4k(codes: &[u8], out: &mut [f32]) {
    let mask = _mm_set1_epi8(0xF);
    for (b, y) in codes.chunks_exact(144).zip(out.chunks_exact_mut(256)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        for n in 0..4 {
            for half in 0..2 {
                let (sc, m) = get_scale_min_k4(2 * n + half, &b[4..16]);
                let dl = _mm256_set1_ps(d * sc as f32);
                let ml = _mm256_set1_ps(dmin * m as f32);
                for k in 0..4 {
                    let raw = _mm_loadl_epi64(b.as_ptr().add(16 + 32 * n + 8 * k) as *const __m128i);
                    let q = if half == 0 { _mm_and_si128(raw, mask) } else { _mm_and_si128(_mm_srli_epi16(raw, 4), mask) };
                    let f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q));
                    let v = _mm256_fmsub_ps(f, dl, ml);
                    _mm256_storeu_ps(y.as_mut_ptr().add(64 * n + 32 * half + 8 * k), v);
                }
            }
        }
    }
}

/// Unpack Q4_K's twelve scale bytes into 8 scales (bytes 0..8) and 8 mins
/// (bytes 8..16) with word-wide bit moves instead of eight branchy lookups.
#[inline(always)]
pub fn q4k_scales_mins(s: &[u8]) -> [u8; 16] {
    const KMASK1: u32 = 0x3f3f3f3f;
    const KMASK2: u32 = 0x0f0f0f0f;
    const KMASK3: u32 = 0x03030303;
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, u2) = (w(0), w(1), w(2));
    let out = [
        u0 & KMASK1,
        (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4),
        u1 & KMASK1,
        ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4),
    ];
    let mut b = [0u8; 16];
    for (i, v) in out.iter().enumerate() {
        b[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// Σ mins[j] · (bsums[2j] + bsums[2j+1]) for one Q4_K / Q8_K block pair.
#[inline(always)]
pub unsafe fn q4k_min_sum(sm: &[u8; 16], y: &[u8]) -> __m128i {
    let bs = _mm256_loadu_si256(y.as_ptr().add(260) as *const __m256i);
    let pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    let mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(sm.as_ptr().add(8) as *const __m128i));
    _mm_madd_epi16(mins, pairs)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4k_q8k(codes: &[u8], act: &[u8]) -> f32 {
    let m4 = _mm256_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (b, y) in codes.chunks_exact(144).zip(act.chunks_exact(292)) {
        let yd = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
        let sm = q4k_scales_mins(&b[4..16]);
        acc_m = _mm_fmadd_ps(_mm_set1_ps(yd * f16_at(b, 2)), _mm_cvtepi32_ps(q4k_min_sum(&sm, y)), acc_m);
        let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        for n in 0..4 {
            let q4 = _mm256_loadu_si256(b.as_ptr().add(16 + 32 * n) as *const __m256i);
            let lo = _mm256_and_si256(q4, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            let y0 = _mm256_loadu_si256(y.as_ptr().add(4 + 64 * n) as *const __m256i);
            let y1 = _mm256_loadu_si256(y.as_ptr().add(4 + 64 * n + 32) as *const __m256i);
            let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0), _mm256_set1_epi16(sm[2 * n] as i16));
            let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1), _mm256_set1_epi16(sm[2 * n + 1] as i16));
            s0 = _mm256_add_epi32(s0, p0);
            s1 = _mm256_add_epi32(s1, p1);
        }
        let sumi = _mm256_add_epi32(s0, s1);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(yd * f16_at(b, 0)), _mm256_cvtepi32_ps(sumi), acc);
    }
    let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    let m = _mm_add_ss(m, _mm_shuffle_ps(m, m, 1));
    hsum_ps(acc) - _mm_cvtss_f32(m)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn turbo_rotq(x: &[f32], signs: &[f32], bounds: &[f32], u: &mut [f32], codes: &mut [u8]) -> f32 {
    let n = x.len();
    let (mut acc, mut i) = (_mm256_setzero_ps(), 0);
    while i + 8 <= n {
        let v = _mm256_loadu_ps(x.as_ptr().add(i));
        acc = _mm256_fmadd_ps(v, v, acc);
        _mm256_storeu_ps(u.as_mut_ptr().add(i), _mm256_mul_ps(v, _mm256_loadu_ps(signs.as_ptr().add(i))));
        i += 8;
    }
    let mut sq = hsum_ps(acc);
    for j in i..n {
        sq += x[j] * x[j];
        u[j] = x[j] * signs[j];
    }
    let norm = sq.sqrt();
    fwht(&mut u[..n]);
    let s = if norm > 0.0 { (n as f32).sqrt() / norm } else { 0.0 };
    for v in u[..n].iter_mut() {
        *v *= s;
    }
    quantize_bounds(&u[..n], bounds, codes);
    norm
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn turbo_dequant(codes: &[u8], levels: &[f32], signs: &[f32], scale: f32, out: &mut [f32]) {
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = levels[c as usize] * scale;
    }
    fwht(out);
    for (o, s) in out.iter_mut().zip(signs) {
        *o *= s;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q8_0_f32(codes: &[u8], x: &[f32]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (b, xs) in codes.chunks_exact(34).zip(x.chunks_exact(32)) {
        let mut s = _mm256_setzero_ps();
        for k in 0..4 {
            let q = _mm_loadl_epi64(b.as_ptr().add(2 + 8 * k) as *const __m128i);
            let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            s = _mm256_fmadd_ps(f, _mm256_loadu_ps(xs.as_ptr().add(8 * k)), s);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(b, 0)), s, acc);
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4k_f32(codes: &[u8], x: &[f32]) -> f32 {
    let mask = _mm_set1_epi8(0xF);
    let mut acc = _mm256_setzero_ps();
    for (b, xs) in codes.chunks_exact(144).zip(x.chunks_exact(256)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let sm = q4k_scales_mins(&b[4..16]);
        for n in 0..4 {
            for half in 0..2 {
                let (mut qx, mut sx) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for k in 0..4 {
                    let raw = _mm_loadl_epi64(b.as_ptr().add(16 + 32 * n + 8 * k) as *const __m128i);
                    let q = if half == 0 { _mm_and_si128(raw, mask) } else { _mm_and_si128(_mm_srli_epi16(raw, 4), mask) };
                    let v = _mm256_loadu_ps(xs.as_ptr().add(64 * n + 32 * half + 8 * k));
                    qx = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(q)), v, qx);
                    sx = _mm256_add_ps(sx, v);
                }
                let j = 2 * n + half;
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * sm[j] as f32), qx, acc);
                acc = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * sm[8 + j] as f32), sx, acc);
            }
        }
    }
    hsum_ps(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_f32_bytes(codes: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(codes.len() / 4);
    let p = codes.as_ptr() as *const f32;
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(i)), _mm256_loadu_ps(x.as_ptr().add(i)), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p.add(i + 8)), _mm256_loadu_ps(x.as_ptr().add(i + 8)), a1);
        i += 16;
    }
    let mut sum = hsum_ps(_mm256_add_ps(a0, a1));
    for j in i..n {
        sum += std::ptr::read_unaligned(p.add(j)) * x[j];
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_1_q8_1(codes: &[u8], act: &[u8]) -> f32 {
    let m4 = _mm_set1_epi8(0xF);
    let ones16 = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm_setzero_ps();
    for (b, y) in codes.chunks_exact(20).zip(act.chunks_exact(36)) {
        let raw = _mm_loadu_si128(b.as_ptr().add(4) as *const __m128i);
        let lo = _mm_and_si128(raw, m4);
        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
        let q = _mm256_set_m128i(hi, lo);
        let yv = _mm256_loadu_si256(y.as_ptr().add(4) as *const __m256i);
        let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(q, yv), ones16);
        // (d, m) · (dy, s): lane 0 scales the dot, lane 1 is the min term.
        let p = _mm_mul_ps(f16x2_at(b, 0), f16x2_at(y, 0));
        acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), _mm256_cvtepi32_ps(dot), acc);
        acc_m = _mm_add_ps(acc_m, p);
    }
    hsum_ps(acc) + _mm_cvtss_f32(_mm_movehdup_ps(acc_m))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q4_1_q8_1_x4(codes: &[u8], acts: [&[u8]; 4]) -> [f32; 4] {
    let m4 = _mm_set1_epi8(0xF);
    let ones16 = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut acc_m = [_mm_setzero_ps(); 4];
    let nb = codes.len() / 20;
    for blk in 0..nb {
        let b = codes.as_ptr().add(20 * blk);
        let raw = _mm_loadu_si128(b.add(4) as *const __m128i);
        let lo = _mm_and_si128(raw, m4);
        let hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
        let q = _mm256_set_m128i(hi, lo);
        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(b as *const i32)));
        for k in 0..4 {
            let y = acts[k].as_ptr().add(36 * blk);
            let yv = _mm256_loadu_si256(y.add(4) as *const __m256i);
            let dot = _mm256_madd_epi16(_mm256_maddubs_epi16(q, yv), ones16);
            let p = _mm_mul_ps(dm, _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(y as *const i32))));
            acc[k] = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), _mm256_cvtepi32_ps(dot), acc[k]);
            acc_m[k] = _mm_add_ps(acc_m[k], p);
        }
    }
    std::array::from_fn(|k| hsum_ps(acc[k]) + _mm_cvtss_f32(_mm_movehdup_ps(acc_m[k])))
}

pub unsafe fn dot_q4_1_q8_1_4xn(rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
    for (r, o) in rows.into_iter().zip(out) {
        let mut i = 0;
        while i + 4 <= acts.len() {
            o[i..i + 4].copy_from_slice(&dot_q4_1_q8_1_x4(r, [acts[i], acts[i + 1], acts[i + 2], acts[i + 3]]));
            i += 4;
        }
        for j in i..acts.len() {
            o[j] = dot_q4_1_q8_1(r, acts[j]);
        }
    }
}

/// Eight `bits`-bit codes starting at code `i` (bits ≤ 4, so they lie in
/// the `bits` bytes from byte i·bits/8, i a multiple of 8), one per lane.
#[inline(always)]
unsafe fn codes8(packed: &[u8], bits: u32, i: usize, shifts: __m256i, mask: __m256i) -> __m256i {
    let at = i * bits as usize / 8;
    // A whole-word load where the buffer allows (a short copy is a call).
    let word = if at + 4 <= packed.len() {
        std::ptr::read_unaligned(packed.as_ptr().add(at) as *const i32)
    } else {
        let mut w = [0u8; 4];
        w[..bits as usize].copy_from_slice(&packed[at..at + bits as usize]);
        i32::from_le_bytes(w)
    };
    _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(word), shifts), mask)
}

#[inline(always)]
unsafe fn code_shifts(bits: u32) -> (__m256i, __m256i) {
    let b = bits as i32;
    (_mm256_setr_epi32(0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b), _mm256_set1_epi32((1 << b) - 1))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn levels_scaled(packed: &[u8], bits: u32, levels: &[f32], scale: f32, out: &mut [f32]) {
    let n = out.len();
    if bits > 4 || n % 8 != 0 {
        return super::levels_scaled_ref(packed, bits, levels, scale, out);
    }
    let mut table = [0f32; 16];
    table[..levels.len()].copy_from_slice(levels);
    let lo = _mm256_mul_ps(_mm256_loadu_ps(table.as_ptr()), _mm256_set1_ps(scale));
    let hi = _mm256_mul_ps(_mm256_loadu_ps(table.as_ptr().add(8)), _mm256_set1_ps(scale));
    let (shifts, mask) = code_shifts(bits);
    let eight = _mm256_set1_epi32(8);
    for i in (0..n).step_by(8) {
        let c = codes8(packed, bits, i, shifts, mask);
        let a = _mm256_permutevar8x32_ps(lo, c);
        let b = _mm256_permutevar8x32_ps(hi, c);
        // Lanes with code ≥ 8 take the high table.
        let sel = _mm256_castsi256_ps(_mm256_cmpgt_epi32(eight, c));
        _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_blendv_ps(b, a, sel));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn code_dots(packed: &[u8], row_bytes: usize, bits: u32, levels: &[f32], q: &[f32], out: &mut [f32]) {
    let d = q.len();
    if bits > 4 || d % 16 != 0 {
        return super::code_dots_ref(packed, row_bytes, bits, levels, q, out);
    }
    let mut table = [0f32; 16];
    table[..levels.len()].copy_from_slice(levels);
    let lo = _mm256_loadu_ps(table.as_ptr());
    let hi = _mm256_loadu_ps(table.as_ptr().add(8));
    let (shifts, mask) = code_shifts(bits);
    let eight = _mm256_set1_epi32(8);
    let look = |c: __m256i| {
        let sel = _mm256_castsi256_ps(_mm256_cmpgt_epi32(eight, c));
        _mm256_blendv_ps(_mm256_permutevar8x32_ps(hi, c), _mm256_permutevar8x32_ps(lo, c), sel)
    };
    for (o, row) in out.iter_mut().zip(packed.chunks(row_bytes)) {
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..d).step_by(16) {
            a0 = _mm256_fmadd_ps(look(codes8(row, bits, i, shifts, mask)), _mm256_loadu_ps(q.as_ptr().add(i)), a0);
            a1 = _mm256_fmadd_ps(look(codes8(row, bits, i + 8, shifts, mask)), _mm256_loadu_ps(q.as_ptr().add(i + 8)), a1);
        }
        *o = hsum_ps(_mm256_add_ps(a0, a1));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let va = _mm256_set1_ps(a);
    let mut i = 0;
    while i + 8 <= n {
        let p = y.as_mut_ptr().add(i);
        _mm256_storeu_ps(p, _mm256_fmadd_ps(va, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(p)));
        i += 8;
    }
    for j in i..n {
        y[j] += a * x[j];
    }
}

/// exp(x) for x ≤ 0 (Cephes expf: 2^n · p(r), r = x − n·ln 2).
#[inline(always)]
unsafe fn exp256(x: __m256) -> __m256 {
    let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
    let n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_1e-4);
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 5.000_000_1e-1] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    let e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    _mm256_mul_ps(p, _mm256_castsi256_ps(e))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn exp_sub_sum(x: &mut [f32], max: f32) -> f32 {
    let m = _mm256_set1_ps(max);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= x.len() {
        let p = x.as_mut_ptr().add(i);
        let e = exp256(_mm256_sub_ps(_mm256_loadu_ps(p), m));
        _mm256_storeu_ps(p, e);
        acc = _mm256_add_ps(acc, e);
        i += 8;
    }
    hsum_ps(acc) + super::exp_sub_sum_ref(&mut x[i..], max)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn weighted_rows(w: &[f32], rows: &[f32], acc: &mut [f32]) {
    let d = acc.len();
    let n = w.len().min(rows.len() / d.max(1));
    let mut c0 = 0;
    while c0 + 32 <= d {
        let a = acc.as_mut_ptr().add(c0);
        let (mut a0, mut a1, mut a2, mut a3) = (_mm256_loadu_ps(a), _mm256_loadu_ps(a.add(8)), _mm256_loadu_ps(a.add(16)), _mm256_loadu_ps(a.add(24)));
        for i in 0..n {
            let r = rows.as_ptr().add(i * d + c0);
            let wi = _mm256_set1_ps(w[i]);
            a0 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r), a0);
            a1 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r.add(8)), a1);
            a2 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r.add(16)), a2);
            a3 = _mm256_fmadd_ps(wi, _mm256_loadu_ps(r.add(24)), a3);
        }
        _mm256_storeu_ps(a, a0);
        _mm256_storeu_ps(a.add(8), a1);
        _mm256_storeu_ps(a.add(16), a2);
        _mm256_storeu_ps(a.add(24), a3);
        c0 += 32;
    }
    if c0 < d {
        for i in 0..n {
            super::axpy_ref(w[i], &rows[i * d + c0..(i + 1) * d], &mut acc[c0..]);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_rows(q: &[f32], rows: &[f32], out: &mut [f32]) {
    let d = q.len();
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(d.max(1))) {
        *o = dot_f32_bytes(std::slice::from_raw_parts(row.as_ptr() as *const u8, 4 * d), q);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn turbo_rows(blocks: &[u8], bits: u32, dim: usize, levels: &[f32], out: &mut [f32]) {
    let bb = 2 + crate::bitpack::packed_len(dim, bits);
    let inv = 1.0 / (dim as f32).sqrt();
    for (b, y) in blocks.chunks_exact(bb).zip(out.chunks_exact_mut(dim)) {
        levels_scaled(&b[2..], bits, levels, f16_at(b, 0) * inv, y);
    }
}

/// The 512-bit kernel carries the vector version; AVX2 machines use the
/// reference.
pub unsafe fn affine_rows(packed: &[u8], row_bytes: usize, bits: u32, scale: &[f32], min: &[f32], out: &mut [f32]) {
    super::affine_rows_ref(packed, row_bytes, bits, scale, min, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn f16_to_f32(src: &[half::f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let (sp, dp) = (src.as_ptr() as *const u16, dst.as_mut_ptr());
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(dp.add(i), _mm256_cvtph_ps(_mm_loadu_si128(sp.add(i) as *const __m128i)));
        i += 8;
    }
    for j in i..n {
        *dp.add(j) = src[j].to_f32();
    }
}

/// Rows converted one at a time into a buffer, then the f32 kernels
/// (each row's operations are those of the f32 path).
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_rows_f16(q: &[f32], rows: &[half::f16], stride: usize, out: &mut [f32]) {
    let d = q.len();
    let (mut stack, mut heap) = ([0f32; 256], Vec::new());
    let buf: &mut [f32] = if d <= 256 { &mut stack[..d] } else { heap.resize(d, 0.0); &mut heap };
    for (i, o) in out.iter_mut().enumerate() {
        f16_to_f32(&rows[i * stride..i * stride + d], buf);
        dot_rows(q, buf, std::slice::from_mut(o));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn weighted_rows_f16(w: &[f32], rows: &[half::f16], stride: usize, acc: &mut [f32]) {
    let d = acc.len();
    let (mut stack, mut heap) = ([0f32; 256], Vec::new());
    let buf: &mut [f32] = if d <= 256 { &mut stack[..d] } else { heap.resize(d, 0.0); &mut heap };
    for (i, &wi) in w.iter().enumerate() {
        f16_to_f32(&rows[i * stride..i * stride + d], buf);
        weighted_rows(&[wi], buf, acc);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn q8_block(x: &[f32], codes: &mut [u8]) -> (f32, i32) {
    let n = x.len().min(codes.len());
    let sign = _mm256_set1_ps(-0.0);
    let mut amax = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(x.as_ptr().add(i))));
        i += 8;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), amax);
    let amax = x[i..n].iter().chain(&lanes).fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    let mut i = 0;
    let mut r = [0i32; 8];
    while i + 8 <= n {
        // round half away from zero: truncate, step out where |fraction| ≥ ½.
        let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), _mm256_set1_ps(id));
        let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
        let up = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), _mm256_set1_ps(0.5));
        let one = _mm256_or_ps(_mm256_set1_ps(1.0), _mm256_and_ps(v, sign));
        _mm256_storeu_si256(r.as_mut_ptr() as *mut __m256i, _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(up, one))));
        for k in 0..8 {
            let q = r[k].clamp(-128, 127);
            sum += q;
            codes[i + k] = q as i8 as u8;
        }
        i += 8;
    }
    sum += super::q8_codes_ref(&x[i..n], id, &mut codes[i..n]);
    (d, sum)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn dot_q8_0_q8_0_4xn(rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
    super::rows_by_acts(rows, acts, out, |r, a| dot_q8_0_q8_0(r, a))
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn table_dots(codes: &[u8], row_bytes: usize, t: &[f32], c0: f32, out: &mut [f32]) {
    super::table_dots_ref(codes, row_bytes, t, c0, out)
}

#[target_feature(enable = "avx2,fma")]
pub unsafe fn stretch_fit(u: &[f32], bounds: &[f32], levels: &[f32]) -> (f32, f32) {
    super::stretch_fit_ref(u, bounds, levels)
}
