//! AVX-512 (F + BW) kernels. Every function requires those features (plus
//! the AVX2 set); the dispatcher only calls them after detecting them.
#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use super::avx2::{f16_at, q4k_scales_mins};


/// Butterflies for h = 1, 2, 4, 8 inside one 16-lane register.
#[inline(always)]
unsafe fn fwht16(x: __m512) -> __m512 {
    let b = _mm512_permute_ps(x, 0b10_11_00_01);
    let x = _mm512_mask_blend_ps(0xAAAA, _mm512_add_ps(x, b), _mm512_sub_ps(b, x));
    let b = _mm512_permute_ps(x, 0b01_00_11_10);
    let x = _mm512_mask_blend_ps(0xCCCC, _mm512_add_ps(x, b), _mm512_sub_ps(b, x));
    let b = _mm512_shuffle_f32x4(x, x, 0b10_11_00_01);
    let x = _mm512_mask_blend_ps(0xF0F0, _mm512_add_ps(x, b), _mm512_sub_ps(b, x));
    let b = _mm512_shuffle_f32x4(x, x, 0b01_00_11_10);
    _mm512_mask_blend_ps(0xFF00, _mm512_add_ps(x, b), _mm512_sub_ps(b, x))
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn fwht(x: &mut [f32]) {
    let n = x.len();
    if n < 16 {
        return super::avx2::fwht(x);
    }
    let p = x.as_mut_ptr();
    for i in (0..n).step_by(16) {
        _mm512_storeu_ps(p.add(i), fwht16(_mm512_loadu_ps(p.add(i))));
    }
    let mut h = 16;
    while h < n {
        for i in (0..n).step_by(2 * h) {
            for j in (i..i + h).step_by(16) {
                let a = _mm512_loadu_ps(p.add(j));
                let b = _mm512_loadu_ps(p.add(j + h));
                _mm512_storeu_ps(p.add(j), _mm512_add_ps(a, b));
                _mm512_storeu_ps(p.add(j + h), _mm512_sub_ps(a, b));
            }
        }
        h *= 2;
    }
    let s = _mm512_set1_ps(1.0 / (n as f32).sqrt());
    for i in (0..n).step_by(16) {
        _mm512_storeu_ps(p.add(i), _mm512_mul_ps(_mm512_loadu_ps(p.add(i)), s));
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn quantize_bounds(u: &[f32], bounds: &[f32], codes: &mut [u8]) {
    let n = u.len().min(codes.len());
    let one = _mm512_set1_epi32(1);
    let mut i = 0;
    while i + 16 <= n {
        let v = _mm512_loadu_ps(u.as_ptr().add(i));
        let mut cnt = _mm512_setzero_si512();
        for &b in bounds {
            let m = _mm512_cmp_ps_mask(v, _mm512_set1_ps(b), _CMP_GT_OQ);
            cnt = _mm512_mask_add_epi32(cnt, m, cnt, one);
        }
        _mm_storeu_si128(codes.as_mut_ptr().add(i) as *mut __m128i, _mm512_cvtepi32_epi8(cnt));
        i += 16;
    }
    super::avx2::quantize_bounds(&u[i..n], bounds, &mut codes[i..n]);
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn dequant_q8_0(codes: &[u8], out: &mut [f32]) {
    for (b, y) in codes.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = _mm512_set1_ps(f16_at(b, 0));
        for k in 0..2 {
            let q = _mm_loadu_si128(b.as_ptr().add(2 + 16 * k) as *const __m128i);
            let f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
            _mm512_storeu_ps(y.as_mut_ptr().add(16 * k), _mm512_mul_ps(f, d));
        }
    }
}

/// 64 signed bytes · 64 signed bytes → sixteen i32 partial sums
/// (lanes 0..8 from the low 32 bytes, 8..16 from the high 32).
#[inline(always)]
unsafe fn dot_i8x64(x: __m512i, y: __m512i) -> __m512i {
    let ax = _mm512_abs_epi8(x);
    let neg = _mm512_movepi8_mask(x);
    let sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
    _mm512_madd_epi16(_mm512_maddubs_epi16(ax, sy), _mm512_set1_epi16(1))
}

#[inline(always)]
unsafe fn load2x32(a: *const u8, b: *const u8) -> __m512i {
    let lo = _mm256_loadu_si256(a as *const __m256i);
    let hi = _mm256_loadu_si256(b as *const __m256i);
    _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn dot_q8_0_q8_0(codes: &[u8], act: &[u8]) -> f32 {
    let nb = codes.len() / 34;
    let mut acc = _mm512_setzero_ps();
    let (cp, ap) = (codes.as_ptr(), act.as_ptr());
    let mut i = 0;
    while i + 2 <= nb {
        let x = load2x32(cp.add(34 * i + 2), cp.add(34 * i + 36));
        let y = load2x32(ap.add(34 * i + 2), ap.add(34 * i + 36));
        let s = _mm512_cvtepi32_ps(dot_i8x64(x, y));
        let d0 = f16_at(codes, 34 * i) * f16_at(act, 34 * i);
        let d1 = f16_at(codes, 34 * i + 34) * f16_at(act, 34 * i + 34);
        let d = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(d0)), _mm256_castps_pd(_mm256_set1_ps(d1)), 1));
        acc = _mm512_fmadd_ps(d, s, acc);
        i += 2;
    }
    let mut sum = _mm512_reduce_add_ps(acc);
    if i < nb {
        sum += super::avx2::dot_q8_0_q8_0(&codes[34 * i..], &act[34 * i..]);
    }
    sum
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn dequant_q4k(codes: &[u8], out: &mut [f32]) {
    let mask = _mm_set1_epi8(0xF);
    for (b, y) in codes.chunks_exact(144).zip(out.chunks_exact_mut(256)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let sm = q4k_scales_mins(&b[4..16]);
        let (sc, mn) = (&sm[..8], &sm[8..]);
        for n in 0..4 {
            for half in 0..2 {
                let dl = _mm512_set1_ps(d * sc[2 * n + half] as f32);
                let ml = _mm512_set1_ps(dmin * mn[2 * n + half] as f32);
                for k in 0..2 {
                    let raw = _mm_loadu_si128(b.as_ptr().add(16 + 32 * n + 16 * k) as *const __m128i);
                    let q = if half == 0 { _mm_and_si128(raw, mask) } else { _mm_and_si128(_mm_srli_epi16(raw, 4), mask) };
                    let f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q));
                    _mm512_storeu_ps(y.as_mut_ptr().add(64 * n + 32 * half + 16 * k), _mm512_fmsub_ps(f, dl, ml));
                }
            }
        }
    }
}

/// The AVX2 kernel measured faster than a 512-bit one here (the 4-bit
/// unpack, not the multiply-add, bounds it), so AVX-512 reuses it.
pub unsafe fn dot_q4k_q8k(codes: &[u8], act: &[u8]) -> f32 {
    super::avx2::dot_q4k_q8k(codes, act)
}

/// Cross-register butterflies for h = 16, 32, 64 over eight 16-lane registers.
#[inline(always)]
unsafe fn fwht128_regs(r: &mut [__m512; 8]) {
    for i in 0..8 {
        r[i] = fwht16(r[i]);
    }
    for h in [1usize, 2, 4] {
        for i in 0..8 {
            if i & h == 0 {
                let (a, b) = (r[i], r[i + h]);
                r[i] = _mm512_add_ps(a, b);
                r[i + h] = _mm512_sub_ps(a, b);
            }
        }
    }
}

/// Fused TurboQuant encode of one 128-vector: norm, random signs, FWHT,
/// scale to unit-sphere units, codebook index by binary search over the
/// (≤ 15) bounds. Falls back to the AVX2 path for other shapes.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn turbo_rotq(x: &[f32], signs: &[f32], bounds: &[f32], u: &mut [f32], codes: &mut [u8]) -> f32 {
    let n = x.len();
    if n != 128 || bounds.len() > 15 {
        return super::avx2::turbo_rotq(x, signs, bounds, u, codes);
    }
    let mut r = [_mm512_setzero_ps(); 8];
    let mut acc = _mm512_setzero_ps();
    for i in 0..8 {
        let v = _mm512_loadu_ps(x.as_ptr().add(16 * i));
        acc = _mm512_fmadd_ps(v, v, acc);
        r[i] = _mm512_mul_ps(v, _mm512_loadu_ps(signs.as_ptr().add(16 * i)));
    }
    let norm = _mm512_reduce_add_ps(acc).sqrt();
    fwht128_regs(&mut r);
    // Orthonormal FWHT (1/√128) then × √128/‖x‖: together 1/‖x‖.
    let s = _mm512_set1_ps(if norm > 0.0 { 1.0 / norm } else { 0.0 });
    let mut table = [f32::INFINITY; 16];
    table[..bounds.len()].copy_from_slice(bounds);
    let t = _mm512_loadu_ps(table.as_ptr());
    let levels = bounds.len() + 1;
    for i in 0..8 {
        let v = _mm512_mul_ps(r[i], s);
        _mm512_storeu_ps(u.as_mut_ptr().add(16 * i), v);
        let mut idx = _mm512_setzero_si512();
        let mut step = levels / 2;
        while step > 0 {
            let st = _mm512_set1_epi32(step as i32);
            let probe = _mm512_sub_epi32(_mm512_add_epi32(idx, st), _mm512_set1_epi32(1));
            let b = _mm512_permutexvar_ps(probe, t);
            let m = _mm512_cmp_ps_mask(v, b, _CMP_GT_OQ);
            idx = _mm512_mask_add_epi32(idx, m, idx, st);
            step /= 2;
        }
        _mm_storeu_si128(codes.as_mut_ptr().add(16 * i) as *mut __m128i, _mm512_cvtepi32_epi8(idx));
    }
    norm
}

/// Fused TurboQuant decode of one 128-vector: level lookup (≤ 16 levels),
/// scale, inverse FWHT, signs.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn turbo_dequant(codes: &[u8], levels: &[f32], signs: &[f32], scale: f32, out: &mut [f32]) {
    let n = out.len();
    if n != 128 || levels.len() > 16 {
        return super::avx2::turbo_dequant(codes, levels, signs, scale, out);
    }
    let mut table = [0f32; 16];
    table[..levels.len()].copy_from_slice(levels);
    let t = _mm512_loadu_ps(table.as_ptr());
    // scale × (1/√128) from the orthonormal inverse FWHT.
    let s = _mm512_set1_ps(scale / (128f32).sqrt());
    let mut r = [_mm512_setzero_ps(); 8];
    for i in 0..8 {
        let c = _mm512_cvtepu8_epi32(_mm_loadu_si128(codes.as_ptr().add(16 * i) as *const __m128i));
        r[i] = _mm512_permutexvar_ps(c, t);
    }
    fwht128_regs(&mut r);
    for i in 0..8 {
        let v = _mm512_mul_ps(_mm512_mul_ps(r[i], s), _mm512_loadu_ps(signs.as_ptr().add(16 * i)));
        _mm512_storeu_ps(out.as_mut_ptr().add(16 * i), v);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn dot_q8_0_f32(codes: &[u8], x: &[f32]) -> f32 {
    let mut acc = _mm512_setzero_ps();
    for (b, xs) in codes.chunks_exact(34).zip(x.chunks_exact(32)) {
        let q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().add(2) as *const __m128i)));
        let q1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(b.as_ptr().add(18) as *const __m128i)));
        let s = _mm512_fmadd_ps(q1, _mm512_loadu_ps(xs.as_ptr().add(16)), _mm512_mul_ps(q0, _mm512_loadu_ps(xs.as_ptr())));
        acc = _mm512_fmadd_ps(_mm512_set1_ps(f16_at(b, 0)), s, acc);
    }
    _mm512_reduce_add_ps(acc)
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn dot_q4k_f32(codes: &[u8], x: &[f32]) -> f32 {
    let mask = _mm_set1_epi8(0xF);
    let mut acc = _mm512_setzero_ps();
    for (b, xs) in codes.chunks_exact(144).zip(x.chunks_exact(256)) {
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        let sm = q4k_scales_mins(&b[4..16]);
        for n in 0..4 {
            for half in 0..2 {
                let (mut qx, mut sx) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                for k in 0..2 {
                    let raw = _mm_loadu_si128(b.as_ptr().add(16 + 32 * n + 16 * k) as *const __m128i);
                    let q = if half == 0 { _mm_and_si128(raw, mask) } else { _mm_and_si128(_mm_srli_epi16(raw, 4), mask) };
                    let v = _mm512_loadu_ps(xs.as_ptr().add(64 * n + 32 * half + 16 * k));
                    qx = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(q)), v, qx);
                    sx = _mm512_add_ps(sx, v);
                }
                let j = 2 * n + half;
                acc = _mm512_fmadd_ps(_mm512_set1_ps(d * sm[j] as f32), qx, acc);
                acc = _mm512_fnmadd_ps(_mm512_set1_ps(dmin * sm[8 + j] as f32), sx, acc);
            }
        }
    }
    _mm512_reduce_add_ps(acc)
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn dot_f32_bytes(codes: &[u8], x: &[f32]) -> f32 {
    let n = x.len().min(codes.len() / 4);
    let p = codes.as_ptr() as *const f32;
    let (mut a0, mut a1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    while i + 32 <= n {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(i)), _mm512_loadu_ps(x.as_ptr().add(i)), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(p.add(i + 16)), _mm512_loadu_ps(x.as_ptr().add(i + 16)), a1);
        i += 32;
    }
    let mut sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    if i < n {
        sum += super::avx2::dot_f32_bytes(&codes[4 * i..], &x[i..]);
    }
    sum
}

/// Q4_1 · Q8_1: with AVX-512 VNNI two blocks per `vpdpbusd` (the decode
/// matvec), else the AVX2 kernel.
pub unsafe fn dot_q4_1_q8_1(codes: &[u8], act: &[u8]) -> f32 {
    if has_vnni() {
        dot_q4_1_q8_1_vnni(codes, act)
    } else {
        super::avx2::dot_q4_1_q8_1(codes, act)
    }
}

/// Whether the CPU has AVX-512 VNNI (`vpdpbusd`), checked once.
fn has_vnni() -> bool {
    static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VNNI.get_or_init(|| is_x86_feature_detected!("avx512vnni"))
}

/// Two consecutive Q4_1 blocks at `b`: their 64 codes as bytes (block 0
/// then block 1, each low nibbles then high) and [d0, m0, d1, m1].
#[inline(always)]
unsafe fn q4_1_pair(b: *const u8) -> (__m512i, __m128) {
    let m4 = _mm_set1_epi8(0xF);
    let expand = |b: *const u8| {
        let raw = _mm_loadu_si128(b.add(4) as *const __m128i);
        _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), _mm_and_si128(raw, m4))
    };
    let q = _mm512_inserti64x4(_mm512_castsi256_si512(expand(b)), expand(b.add(20)), 1);
    let dm = _mm_cvtph_ps(_mm_set_epi32(0, 0, std::ptr::read_unaligned(b.add(20) as *const i32), std::ptr::read_unaligned(b as *const i32)));
    (q, dm)
}

/// Two consecutive Q8_1 blocks at `y`: their 64 codes and [d0, s0, d1, s1].
#[inline(always)]
unsafe fn q8_1_pair(y: *const u8) -> (__m512i, __m128) {
    let a = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(y.add(4) as *const __m256i)), _mm256_loadu_si256(y.add(40) as *const __m256i), 1);
    let ds = _mm_cvtph_ps(_mm_set_epi32(0, 0, std::ptr::read_unaligned(y.add(36) as *const i32), std::ptr::read_unaligned(y as *const i32)));
    (a, ds)
}

/// Lane i of a block pair's scale vector takes product 0 (first block)
/// for i < 8, product 2 (second block) above: the `pick` of
/// [`pair_pick`].
#[inline(always)]
unsafe fn pair_scales(pick: __m512i, p: __m128) -> __m512 {
    _mm512_permutexvar_ps(pick, _mm512_castps128_ps512(p))
}

#[inline(always)]
unsafe fn pair_pick() -> __m512i {
    _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q4_1_q8_1_vnni(codes: &[u8], act: &[u8]) -> f32 {
    let nb = codes.len() / 20;
    let pick = pair_pick();
    let (mut acc, mut acc_m) = (_mm512_setzero_ps(), _mm_setzero_ps());
    let mut blk = 0;
    while blk + 2 <= nb {
        let (q, dm) = q4_1_pair(codes.as_ptr().add(20 * blk));
        let (a, ds) = q8_1_pair(act.as_ptr().add(36 * blk));
        // [d0·da0, m0·sa0, d1·da1, m1·sa1] (Q8_1 blocks: d, s = d·Σq).
        let p = _mm_mul_ps(dm, ds);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, a)), pair_scales(pick, p), acc);
        acc_m = _mm_add_ps(acc_m, p);
        blk += 2;
    }
    let m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
    let mut sum = _mm512_reduce_add_ps(acc) + _mm_cvtss_f32(_mm_movehdup_ps(m));
    if blk < nb {
        sum += super::dot_q4_1_q8_1_ref(&codes[20 * blk..], &act[36 * blk..]);
    }
    sum
}

/// One Q4_1 row against four Q8_1 activations: with AVX-512 VNNI two
/// blocks at a time (`vpdpbusd` on 64 codes), else the AVX2 kernel.
pub unsafe fn dot_q4_1_q8_1_x4(codes: &[u8], acts: [&[u8]; 4]) -> [f32; 4] {
    if has_vnni() {
        dot_q4_1_q8_1_x4_vnni(codes, acts)
    } else {
        super::avx2::dot_q4_1_q8_1_x4(codes, acts)
    }
}

/// Four Q4_1 rows against any number of Q8_1 activations: with VNNI in
/// 4 × 4 tiles, else the AVX2 kernels.
pub unsafe fn dot_q4_1_q8_1_4xn(rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
    if has_vnni() {
        dot_q4_1_q8_1_4xn_vnni(rows, acts, out)
    } else {
        super::avx2::dot_q4_1_q8_1_4xn(rows, acts, out)
    }
}

/// A Q4_1 row's block pair, prepared once for all activations: the 64
/// codes as bytes, the scales spread over each block's lanes (0–7, 8–15)
/// and the minimums in lanes 0 and 8 (zero elsewhere).
#[derive(Clone, Copy)]
struct Q41RowPair {
    q: __m512i,
    d: __m512,
    m: __m512,
}

/// Per block pair of four rows and four activations: `vpdpbusd` (codes
/// 0..15 are already unsigned), one multiply for the two blocks' scale
/// products and two FMAs (the dot, and the minimum times the activation's
/// d·Σq); the rows' part is prepared once per call and read from memory,
/// each activation's codes and scales are loaded once per four rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q4_1_q8_1_4xn_vnni(rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
    let nb = rows.iter().map(|r| r.len() / 20).chain(acts.iter().map(|a| a.len() / 36)).min().unwrap_or(0);
    let np = nb / 2;
    let pick_d = pair_pick();
    let pick_m = _mm512_setr_epi32(1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0);
    // Activation block pair at y: words 0, 1 = d0, s0 and 18, 19 = d1, s1.
    let pick_a = _mm512_setr_epi32(0, 0, 0, 0, 0x0012_0012, 0x0012_0012, 0x0012_0012, 0x0012_0012, 0x0001_0001, 0x0001_0001, 0x0001_0001, 0x0001_0001, 0x0013_0013, 0x0013_0013, 0x0013_0013, 0x0013_0013);
    let mut prep = Vec::with_capacity(4 * np);
    for p in 0..np {
        for r in rows {
            let (q, dm) = q4_1_pair(r.as_ptr().add(40 * p));
            let dm = _mm512_castps128_ps512(dm);
            prep.push(Q41RowPair { q, d: _mm512_permutexvar_ps(pick_d, dm), m: _mm512_maskz_permutexvar_ps(0x0101, pick_m, dm) });
        }
    }
    let tile = |i: usize| {
        let mut acc = [[_mm512_setzero_ps(); 4]; 4];
        for (p, rp) in prep.chunks_exact(4).enumerate() {
            for k in 0..4 {
                let y = acts[i + k].as_ptr().add(72 * p);
                let a = load2x32(y.add(4), y.add(40));
                let ds = _mm512_permutexvar_epi16(pick_a, _mm512_loadu_si512(y as *const __m512i));
                let da = _mm512_cvtph_ps(_mm512_castsi512_si256(ds));
                let sa = _mm512_cvtph_ps(_mm512_extracti64x4_epi64::<1>(ds));
                for r in 0..4 {
                    let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), rp[r].q, a);
                    let t = _mm512_fmadd_ps(rp[r].m, sa, acc[r][k]);
                    acc[r][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(rp[r].d, da), t);
                }
            }
        }
        acc
    };
    let odd = |r: &[u8], a: &[u8]| if 2 * np < nb { super::dot_q4_1_q8_1_ref(&r[40 * np..], &a[72 * np..]) } else { 0.0 };
    tiles_4xn(rows, acts, out, tile, odd, |r, a| dot_q4_1_q8_1(r, a));
}

/// The frame of the 4 × n kernels: `tile(i)` gives the 4 × 4 accumulators
/// of activations i..i+4 (over whole block pairs), each output adds
/// `odd(row, act)` (an odd last block), and activations past the last
/// multiple of four take `single` dots.
#[inline(always)]
unsafe fn tiles_4xn(
    rows: [&[u8]; 4],
    acts: &[&[u8]],
    out: [&mut [f32]; 4],
    tile: impl Fn(usize) -> [[__m512; 4]; 4],
    odd: impl Fn(&[u8], &[u8]) -> f32,
    single: impl Fn(&[u8], &[u8]) -> f32,
) {
    let [o0, o1, o2, o3] = out;
    let mut i = 0;
    while i + 4 <= acts.len() {
        let acc = tile(i);
        for (r, o) in [&mut *o0, &mut *o1, &mut *o2, &mut *o3].into_iter().enumerate() {
            for k in 0..4 {
                o[i + k] = _mm512_reduce_add_ps(acc[r][k]) + odd(rows[r], acts[i + k]);
            }
        }
        i += 4;
    }
    super::rows_by_acts(rows, &acts[i..], [&mut o0[i..], &mut o1[i..], &mut o2[i..], &mut o3[i..]], single);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q4_1_q8_1_x4_vnni(codes: &[u8], acts: [&[u8]; 4]) -> [f32; 4] {
    let nb = codes.len() / 20;
    let pick = pair_pick();
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut acc_m = [_mm_setzero_ps(); 4];
    let mut blk = 0;
    while blk + 2 <= nb {
        let (q, dm) = q4_1_pair(codes.as_ptr().add(20 * blk));
        for k in 0..4 {
            let (a, ds) = q8_1_pair(acts[k].as_ptr().add(36 * blk));
            let p = _mm_mul_ps(dm, ds);
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, a)), pair_scales(pick, p), acc[k]);
            acc_m[k] = _mm_add_ps(acc_m[k], p);
        }
        blk += 2;
    }
    let mut out = [0f32; 4];
    for k in 0..4 {
        let m = _mm_add_ps(acc_m[k], _mm_movehl_ps(acc_m[k], acc_m[k]));
        out[k] = _mm512_reduce_add_ps(acc[k]) + _mm_cvtss_f32(_mm_movehdup_ps(m));
    }
    if blk < nb {
        let tail = super::dot_q4_1_q8_1_x4_ref(&codes[20 * blk..], acts.map(|a| &a[36 * blk..]));
        for k in 0..4 {
            out[k] += tail[k];
        }
    }
    out
}

/// Four Q8_0 rows against any number of Q8_0 activations: with VNNI in
/// 4 × 4 tiles, else the AVX-512 dot per pair.
pub unsafe fn dot_q8_0_q8_0_4xn(rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
    if has_vnni() {
        dot_q8_0_q8_0_4xn_vnni(rows, acts, out)
    } else {
        super::rows_by_acts(rows, acts, out, |r, a| dot_q8_0_q8_0(r, a))
    }
}

/// The f16 scales of the Q8_0 blocks at `b` and `b + 34`, spread as
/// lanes 0–7 and 8–15 (the lanes of those blocks' `vpdpbusd` sums): one
/// 64-byte load holds both (words 0 and 17), one word permute spreads them.
#[inline(always)]
unsafe fn q8_0_pair_scales(b: *const u8, pick: __m512i) -> __m512 {
    let raw = _mm512_loadu_si512(b as *const __m512i);
    _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(pick, raw)))
}

/// The rows' part of a block pair, prepared once for all activations:
/// the 64 codes, −128·Σw per `vpdpbusd` lane, and the spread scales.
#[derive(Clone, Copy)]
struct Q8RowPair {
    w: __m512i,
    base: __m512i,
    d: __m512,
}

/// `vpdpbusd` multiplies unsigned by signed bytes: the activations' codes
/// are offset to a + 128 (one xor), and each row's sums start from its
/// prepared −128·Σw, so every lane ends at Σ w·a exactly. The rows' codes,
/// bases and scales are prepared once per call (they serve every
/// activation) and read from memory in the tile, which leaves the vector
/// ports to the four operations per row and activation.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn dot_q8_0_q8_0_4xn_vnni(rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
    let nb = rows.iter().chain(acts).map(|r| r.len() / 34).min().unwrap_or(0);
    let np = nb / 2;
    let pick = _mm512_zextsi256_si512(_mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17, 17, 17));
    let flip = _mm512_set1_epi8(-128);
    let zero = _mm512_setzero_si512();
    let mut prep = Vec::with_capacity(4 * np);
    for p in 0..np {
        for r in rows {
            let b = r.as_ptr().add(68 * p);
            let w = load2x32(b.add(2), b.add(36));
            let base = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, flip, w));
            prep.push(Q8RowPair { w, base, d: q8_0_pair_scales(b, pick) });
        }
    }
    let tile = |i: usize| {
        let mut acc = [[_mm512_setzero_ps(); 4]; 4];
        for (p, rp) in prep.chunks_exact(4).enumerate() {
            for k in 0..4 {
                let b = acts[i + k].as_ptr().add(68 * p);
                let a = _mm512_xor_si512(load2x32(b.add(2), b.add(36)), flip);
                let da = q8_0_pair_scales(b, pick);
                for r in 0..4 {
                    let dot = _mm512_dpbusd_epi32(rp[r].base, a, rp[r].w);
                    acc[r][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(rp[r].d, da), acc[r][k]);
                }
            }
        }
        acc
    };
    let odd = |r: &[u8], a: &[u8]| if 2 * np < nb { super::dot_q8_0_q8_0_ref(&r[68 * np..], &a[68 * np..]) } else { 0.0 };
    tiles_4xn(rows, acts, out, tile, odd, |r, a| dot_q8_0_q8_0(r, a));
}

/// Sixteen packed codes of 1–4 bits at a time as 32-bit lane indices.
struct Codes16 {
    bits: u32,
    shifts: __m512i,
    shifts_hi: __m512i,
    mask: __m512i,
    shifts32: __m512i,
    mask32: __m512i,
    halves: __m512i,
}

impl Codes16 {
    #[inline(always)]
    unsafe fn new(bits: u32) -> Codes16 {
        let b = bits as i64;
        let shifts = _mm512_setr_epi64(0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b);
        let bb = bits as i32;
        Codes16 {
            bits,
            shifts,
            shifts_hi: _mm512_add_epi64(shifts, _mm512_set1_epi64(8 * b)),
            mask: _mm512_set1_epi64((1i64 << b) - 1),
            shifts32: if bits <= 2 {
                _mm512_setr_epi32(0, bb, 2 * bb, 3 * bb, 4 * bb, 5 * bb, 6 * bb, 7 * bb, 8 * bb, 9 * bb, 10 * bb, 11 * bb, 12 * bb, 13 * bb, 14 * bb, 15 * bb)
            } else {
                _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28)
            },
            mask32: _mm512_set1_epi32((1i32 << bb) - 1),
            halves: _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
        }
    }

    /// Codes i..i+16 of `packed` (i a multiple of 16: they fill 2·bits
    /// bytes from byte i·bits/8).
    #[inline(always)]
    unsafe fn at(&self, packed: &[u8], i: usize) -> __m512i {
        let at = i * self.bits as usize / 8;
        // A whole-word load where the buffer allows (a short copy is a call).
        let word = if at + 8 <= packed.len() {
            std::ptr::read_unaligned(packed.as_ptr().add(at) as *const i64)
        } else {
            let mut w = [0u8; 8];
            w[..2 * self.bits as usize].copy_from_slice(&packed[at..at + 2 * self.bits as usize]);
            i64::from_le_bytes(w)
        };
        if self.bits <= 2 {
            // Sixteen codes in the low 32 bits: one shift per 32-bit lane.
            _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(word as i32), self.shifts32), self.mask32)
        } else if self.bits == 4 {
            // Low word to lanes 0..8, high word to lanes 8..16.
            let x = _mm512_permutexvar_epi32(self.halves, _mm512_set1_epi64(word));
            _mm512_and_si512(_mm512_srlv_epi32(x, self.shifts32), self.mask32)
        } else {
            let x = _mm512_set1_epi64(word);
            let c0 = _mm512_cvtepi64_epi32(_mm512_and_si512(_mm512_srlv_epi64(x, self.shifts), self.mask));
            let c1 = _mm512_cvtepi64_epi32(_mm512_and_si512(_mm512_srlv_epi64(x, self.shifts_hi), self.mask));
            _mm512_inserti64x4(_mm512_castsi256_si512(c0), c1, 1)
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn levels_scaled(packed: &[u8], bits: u32, levels: &[f32], scale: f32, out: &mut [f32]) {
    let n = out.len();
    if bits > 4 || n % 16 != 0 {
        return super::avx2::levels_scaled(packed, bits, levels, scale, out);
    }
    let mut table = [0f32; 16];
    table[..levels.len()].copy_from_slice(levels);
    let t = _mm512_mul_ps(_mm512_loadu_ps(table.as_ptr()), _mm512_set1_ps(scale));
    let codes = Codes16::new(bits);
    for i in (0..n).step_by(16) {
        _mm512_storeu_ps(out.as_mut_ptr().add(i), _mm512_permutexvar_ps(codes.at(packed, i), t));
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn code_dots(packed: &[u8], row_bytes: usize, bits: u32, levels: &[f32], q: &[f32], out: &mut [f32]) {
    let d = q.len();
    let n = out.len().min(packed.len() / row_bytes.max(1));
    if d % 16 != 0 || row_bytes * 8 < d * bits as usize {
        return super::code_dots_ref(packed, row_bytes, bits, levels, q, out);
    }
    match bits {
        1 => code_dots_b::<1>(packed, row_bytes, levels, q, &mut out[..n]),
        2 => code_dots_b::<2>(packed, row_bytes, levels, q, &mut out[..n]),
        4 => code_dots_b::<4>(packed, row_bytes, levels, q, &mut out[..n]),
        3 => {
            // Sixteen 3-bit codes span 6 bytes: the general unpacker, which
            // never reads past the buffer.
            let mut table = [0f32; 16];
            table[..8].copy_from_slice(&levels[..8]);
            let t = _mm512_loadu_ps(table.as_ptr());
            let codes = Codes16::new(3);
            for (r, o) in out[..n].iter_mut().enumerate() {
                let row = &packed[r * row_bytes..];
                let mut a = _mm512_setzero_ps();
                for i in (0..d).step_by(16) {
                    a = _mm512_fmadd_ps(_mm512_permutexvar_ps(codes.at(row, i), t), _mm512_loadu_ps(q.as_ptr().add(i)), a);
                }
                *o = _mm512_reduce_add_ps(a);
            }
        }
        _ => super::code_dots_ref(packed, row_bytes, bits, levels, q, out),
    }
}

/// Sixteen B-bit codes (B = 1, 2, 4) starting at code `i` of the row at
/// `p`, one per 32-bit lane. Reads exactly the 2·B bytes they occupy.
#[inline(always)]
unsafe fn codes16_b<const B: u32>(p: *const u8, i: usize, halves: __m512i, shifts: __m512i, mask: __m512i) -> __m512i {
    let at = p.add(i * B as usize / 8);
    match B {
        4 => {
            let w = std::ptr::read_unaligned(at as *const i64);
            // Low 32 bits to lanes 0..8, high to 8..16, then a shift per lane.
            _mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(halves, _mm512_set1_epi64(w)), shifts), mask)
        }
        2 => _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(std::ptr::read_unaligned(at as *const i32)), shifts), mask),
        _ => _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(std::ptr::read_unaligned(at as *const u16) as i32), shifts), mask),
    }
}

#[inline(always)]
unsafe fn code_dots_b<const B: u32>(packed: &[u8], row_bytes: usize, levels: &[f32], q: &[f32], out: &mut [f32]) {
    let d = q.len();
    let mut table = [0f32; 16];
    table[..levels.len().min(16)].copy_from_slice(&levels[..levels.len().min(16)]);
    let t = _mm512_loadu_ps(table.as_ptr());
    let b = B as i32;
    let halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let shifts = if B == 4 {
        _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28)
    } else {
        _mm512_setr_epi32(0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b, 8 * b, 9 * b, 10 * b, 11 * b, 12 * b, 13 * b, 14 * b, 15 * b)
    };
    let mask = _mm512_set1_epi32((1 << b) - 1);
    let base = packed.as_ptr();
    let n = out.len();
    let mut r = 0;
    // Four rows at a time: independent accumulators in registers, one load of q.
    while r + 4 <= n {
        let (p0, p1, p2, p3) = (base.add(r * row_bytes), base.add((r + 1) * row_bytes), base.add((r + 2) * row_bytes), base.add((r + 3) * row_bytes));
        let (mut a0, mut a1, mut a2, mut a3) = (_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps());
        let mut i = 0;
        while i < d {
            let qv = _mm512_loadu_ps(q.as_ptr().add(i));
            a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(codes16_b::<B>(p0, i, halves, shifts, mask), t), qv, a0);
            a1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(codes16_b::<B>(p1, i, halves, shifts, mask), t), qv, a1);
            a2 = _mm512_fmadd_ps(_mm512_permutexvar_ps(codes16_b::<B>(p2, i, halves, shifts, mask), t), qv, a2);
            a3 = _mm512_fmadd_ps(_mm512_permutexvar_ps(codes16_b::<B>(p3, i, halves, shifts, mask), t), qv, a3);
            i += 16;
        }
        out[r] = _mm512_reduce_add_ps(a0);
        out[r + 1] = _mm512_reduce_add_ps(a1);
        out[r + 2] = _mm512_reduce_add_ps(a2);
        out[r + 3] = _mm512_reduce_add_ps(a3);
        r += 4;
    }
    while r < n {
        let p = base.add(r * row_bytes);
        let mut a = _mm512_setzero_ps();
        let mut i = 0;
        while i < d {
            a = _mm512_fmadd_ps(_mm512_permutexvar_ps(codes16_b::<B>(p, i, halves, shifts, mask), t), _mm512_loadu_ps(q.as_ptr().add(i)), a);
            i += 16;
        }
        out[r] = _mm512_reduce_add_ps(a);
        r += 1;
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let va = _mm512_set1_ps(a);
    let mut i = 0;
    while i + 16 <= n {
        let p = y.as_mut_ptr().add(i);
        _mm512_storeu_ps(p, _mm512_fmadd_ps(va, _mm512_loadu_ps(x.as_ptr().add(i)), _mm512_loadu_ps(p)));
        i += 16;
    }
    super::avx2::axpy(a, &x[i..n], &mut y[i..n]);
}

/// The softmax step is short (one block of scores); the AVX2 kernel is used.
pub unsafe fn exp_sub_sum(x: &mut [f32], max: f32) -> f32 {
    super::avx2::exp_sub_sum(x, max)
}

/// Row element types the row kernels read: 16 values at `p` as f32.
trait Row16: Sized {
    unsafe fn load16(p: *const Self) -> __m512;
}
impl Row16 for f32 {
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
}
impl Row16 for half::f16 {
    #[inline(always)]
    unsafe fn load16(p: *const half::f16) -> __m512 {
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
}

/// acc[..64k] += Σ_i w[i]·row i (row i at rows + i·stride), the columns in
/// blocks of 64 held in registers across rows; returns the columns done.
#[inline(always)]
unsafe fn weighted_rows_by64<T: Row16>(w: &[f32], rows: *const T, stride: usize, acc: &mut [f32]) -> usize {
    let d = acc.len();
    let mut c0 = 0;
    while c0 + 64 <= d {
        let a = acc.as_mut_ptr().add(c0);
        let (mut a0, mut a1, mut a2, mut a3) = (_mm512_loadu_ps(a), _mm512_loadu_ps(a.add(16)), _mm512_loadu_ps(a.add(32)), _mm512_loadu_ps(a.add(48)));
        for (i, &wi) in w.iter().enumerate() {
            let r = rows.add(i * stride + c0);
            let wv = _mm512_set1_ps(wi);
            a0 = _mm512_fmadd_ps(wv, T::load16(r), a0);
            a1 = _mm512_fmadd_ps(wv, T::load16(r.add(16)), a1);
            a2 = _mm512_fmadd_ps(wv, T::load16(r.add(32)), a2);
            a3 = _mm512_fmadd_ps(wv, T::load16(r.add(48)), a3);
        }
        _mm512_storeu_ps(a, a0);
        _mm512_storeu_ps(a.add(16), a1);
        _mm512_storeu_ps(a.add(32), a2);
        _mm512_storeu_ps(a.add(48), a3);
        c0 += 64;
    }
    c0
}

/// out[i] = q · row i (row i at rows + i·stride) for q.len() = 64 or 128:
/// the query lives in registers; each row costs d/16 multiply-adds.
#[inline(always)]
unsafe fn dot_rows_64_128<T: Row16>(q: &[f32], rows: *const T, stride: usize, out: &mut [f32]) {
    let d = q.len();
    let qv: [__m512; 8] = std::array::from_fn(|j| if 16 * j < d { _mm512_loadu_ps(q.as_ptr().add(16 * j)) } else { _mm512_setzero_ps() });
    for (i, o) in out.iter_mut().enumerate() {
        let r = rows.add(i * stride);
        let mut a0 = _mm512_mul_ps(qv[0], T::load16(r));
        let mut a1 = _mm512_mul_ps(qv[1], T::load16(r.add(16)));
        a0 = _mm512_fmadd_ps(qv[2], T::load16(r.add(32)), a0);
        a1 = _mm512_fmadd_ps(qv[3], T::load16(r.add(48)), a1);
        if d == 128 {
            a0 = _mm512_fmadd_ps(qv[4], T::load16(r.add(64)), a0);
            a1 = _mm512_fmadd_ps(qv[5], T::load16(r.add(80)), a1);
            a0 = _mm512_fmadd_ps(qv[6], T::load16(r.add(96)), a0);
            a1 = _mm512_fmadd_ps(qv[7], T::load16(r.add(112)), a1);
        }
        *o = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn weighted_rows(w: &[f32], rows: &[f32], acc: &mut [f32]) {
    let d = acc.len();
    let n = w.len().min(rows.len() / d.max(1));
    let c0 = weighted_rows_by64(&w[..n], rows.as_ptr(), d, acc);
    if c0 < d {
        // Columns past the last 64: the AVX2 kernel on a column slice.
        for i in 0..n {
            super::avx2::axpy(w[i], &rows[i * d + c0..(i + 1) * d], &mut acc[c0..]);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn dot_rows(q: &[f32], rows: &[f32], out: &mut [f32]) {
    let d = q.len();
    if d != 64 && d != 128 {
        return super::avx2::dot_rows(q, rows, out);
    }
    let n = out.len().min(rows.len() / d);
    dot_rows_64_128(q, rows.as_ptr(), d, &mut out[..n]);
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn turbo_rows(blocks: &[u8], bits: u32, dim: usize, levels: &[f32], out: &mut [f32]) {
    if bits > 4 || dim % 16 != 0 {
        return super::avx2::turbo_rows(blocks, bits, dim, levels, out);
    }
    let bb = 2 + crate::bitpack::packed_len(dim, bits);
    let inv = 1.0 / (dim as f32).sqrt();
    let mut table = [0f32; 16];
    table[..levels.len()].copy_from_slice(levels);
    let t = _mm512_loadu_ps(table.as_ptr());
    let codes = Codes16::new(bits);
    for (b, y) in blocks.chunks_exact(bb).zip(out.chunks_exact_mut(dim)) {
        let s = _mm512_set1_ps(f16_at(b, 0) * inv);
        for i in (0..dim).step_by(16) {
            let v = _mm512_permutexvar_ps(codes.at(&b[2..], i), t);
            _mm512_storeu_ps(y.as_mut_ptr().add(i), _mm512_mul_ps(v, s));
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn affine_rows(packed: &[u8], row_bytes: usize, bits: u32, scale: &[f32], min: &[f32], out: &mut [f32]) {
    let d = scale.len();
    if bits > 4 || d % 16 != 0 || d > 256 {
        return super::affine_rows_ref(packed, row_bytes, bits, scale, min, out);
    }
    let codes = Codes16::new(bits);
    for (row, y) in packed.chunks(row_bytes).zip(out.chunks_exact_mut(d)) {
        for i in (0..d).step_by(16) {
            let c = _mm512_cvtepi32_ps(codes.at(row, i));
            let v = _mm512_fmadd_ps(c, _mm512_loadu_ps(scale.as_ptr().add(i)), _mm512_loadu_ps(min.as_ptr().add(i)));
            _mm512_storeu_ps(y.as_mut_ptr().add(i), v);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn f16_to_f32(src: &[half::f16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let (sp, dp) = (src.as_ptr() as *const u16, dst.as_mut_ptr());
    let mut i = 0;
    while i + 16 <= n {
        _mm512_storeu_ps(dp.add(i), _mm512_cvtph_ps(_mm256_loadu_si256(sp.add(i) as *const __m256i)));
        i += 16;
    }
    super::avx2::f16_to_f32(&src[i..n], &mut dst[i..n]);
}

/// [`dot_rows`] on f16 rows: the same operations with converting loads.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn dot_rows_f16(q: &[f32], rows: &[half::f16], stride: usize, out: &mut [f32]) {
    let d = q.len();
    if d != 64 && d != 128 {
        return super::avx2::dot_rows_f16(q, rows, stride, out);
    }
    assert!(out.is_empty() || rows.len() >= (out.len() - 1) * stride + d, "f16 rows too short");
    dot_rows_64_128(q, rows.as_ptr(), stride, out);
}

/// [`weighted_rows`] on f16 rows: the same operations with converting loads.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn weighted_rows_f16(w: &[f32], rows: &[half::f16], stride: usize, acc: &mut [f32]) {
    let d = acc.len();
    if d % 64 != 0 {
        // One converted row at a time through the f32 kernel of this level.
        let mut buf = vec![0f32; d];
        for (i, &wi) in w.iter().enumerate() {
            super::avx2::f16_to_f32(&rows[i * stride..i * stride + d], &mut buf);
            weighted_rows(&[wi], &buf, acc);
        }
        return;
    }
    assert!(w.is_empty() || rows.len() >= (w.len() - 1) * stride + d, "f16 rows too short");
    weighted_rows_by64(w, rows.as_ptr(), stride, acc);
}

/// round(v) half away from zero, exactly: truncate, then step away from
/// zero where the (exact) fraction is at least one half.
#[inline(always)]
unsafe fn round_away16(v: __m512) -> __m512 {
    let t = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
    let frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
    let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(frac, _mm512_set1_ps(0.5));
    let one = _mm512_or_ps(_mm512_set1_ps(1.0), _mm512_and_ps(v, _mm512_set1_ps(-0.0)));
    _mm512_mask_add_ps(t, up, t, one)
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub unsafe fn q8_block(x: &[f32], codes: &mut [u8]) -> (f32, i32) {
    let n = x.len().min(codes.len());
    let mut amax = _mm512_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(x.as_ptr().add(i))));
        i += 16;
    }
    let amax = x[i..n].iter().fold(_mm512_reduce_max_ps(amax), |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = _mm512_setzero_si512();
    let mut i = 0;
    while i + 16 <= n {
        let r = _mm512_cvttps_epi32(round_away16(_mm512_mul_ps(_mm512_loadu_ps(x.as_ptr().add(i)), _mm512_set1_ps(id))));
        _mm_storeu_si128(codes.as_mut_ptr().add(i) as *mut __m128i, _mm512_cvtsepi32_epi8(r));
        sum = _mm512_add_epi32(sum, r);
        i += 16;
    }
    let sum = _mm512_reduce_add_epi32(sum) + super::q8_codes_ref(&x[i..n], id, &mut codes[i..n]);
    (d, sum)
}

/// Four rows at a time, 16 code bytes per gather; the last partial group of
/// a row masked.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
pub unsafe fn table_dots(codes: &[u8], row_bytes: usize, t: &[f32], c0: f32, out: &mut [f32]) {
    let n = out.len().min(codes.len() / row_bytes.max(1));
    assert!(t.len() >= 256 * row_bytes, "table_dots: {} table entries for {row_bytes} code bytes", t.len());
    let offs = _mm512_setr_epi32(0, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 2560, 2816, 3072, 3328, 3584, 3840);
    let full = row_bytes / 16;
    let rem = row_bytes % 16;
    let tail_mask: u16 = ((1u32 << rem) - 1) as u16;
    // One group of 16 code bytes of a row (at byte j) through the tables.
    let group = |row: *const u8, j: usize, mask: u16| -> __m512 {
        let c = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, row.add(j) as *const i8));
        let idx = _mm512_add_epi32(c, offs);
        _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, t.as_ptr().add(256 * j))
    };
    let mut i = 0;
    while i + 4 <= n {
        let r: [*const u8; 4] = std::array::from_fn(|k| codes.as_ptr().add((i + k) * row_bytes));
        let mut acc = [_mm512_setzero_ps(); 4];
        for g in 0..full {
            for k in 0..4 {
                acc[k] = _mm512_add_ps(acc[k], group(r[k], 16 * g, 0xffff));
            }
        }
        if rem > 0 {
            for k in 0..4 {
                acc[k] = _mm512_add_ps(acc[k], group(r[k], 16 * full, tail_mask));
            }
        }
        for k in 0..4 {
            out[i + k] = c0 + _mm512_reduce_add_ps(acc[k]);
        }
        i += 4;
    }
    super::table_dots_ref(&codes[i * row_bytes..n * row_bytes], row_bytes, t, c0, &mut out[i..n]);
}

/// 16 coordinates at a time: the code by binary search over the bounds
/// (a permute and a compare per bit), its level by a permute.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
pub unsafe fn stretch_fit(u: &[f32], bounds: &[f32], levels: &[f32]) -> (f32, f32) {
    let nl = levels.len();
    if nl > 32 || !nl.is_power_of_two() || bounds.len() + 1 != nl {
        return super::stretch_fit_ref(u, bounds, levels);
    }
    let mut bt = [f32::INFINITY; 32];
    bt[..bounds.len()].copy_from_slice(bounds);
    let mut lt = [0f32; 32];
    lt[..nl].copy_from_slice(levels);
    let (b0, b1) = (_mm512_loadu_ps(bt.as_ptr()), _mm512_loadu_ps(bt.as_ptr().add(16)));
    let (l0, l1) = (_mm512_loadu_ps(lt.as_ptr()), _mm512_loadu_ps(lt.as_ptr().add(16)));
    let (mut uc, mut cc) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let n = u.len() / 16 * 16;
    for chunk in u[..n].chunks_exact(16) {
        let v = _mm512_loadu_ps(chunk.as_ptr());
        let mut idx = _mm512_setzero_si512();
        let mut step = nl / 2;
        while step > 0 {
            let probe = _mm512_add_epi32(idx, _mm512_set1_epi32(step as i32 - 1));
            let m = _mm512_cmp_ps_mask(v, _mm512_permutex2var_ps(b0, probe, b1), _CMP_GT_OQ);
            idx = _mm512_mask_add_epi32(idx, m, idx, _mm512_set1_epi32(step as i32));
            step /= 2;
        }
        let l = _mm512_permutex2var_ps(l0, idx, l1);
        uc = _mm512_fmadd_ps(v, l, uc);
        cc = _mm512_fmadd_ps(l, l, cc);
    }
    let (tu, tc) = super::stretch_fit_ref(&u[n..], bounds, levels);
    (_mm512_reduce_add_ps(uc) + tu, _mm512_reduce_add_ps(cc) + tc)
}
