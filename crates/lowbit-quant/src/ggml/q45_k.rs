//! Q4_K (4.5 bits) and Q5_K (5.5 bits): eight sub-blocks of 32 with 6-bit
//! scales and mins. Layouts: Q4_K = d:f16 | dmin:f16 | scales[12] | qs[128];
//! Q5_K = d:f16 | dmin:f16 | scales[12] | qh[32] | qs[128].

use super::kblock::{self, imatrix_weights, KBlock, QK_K};
use super::search::{get_scale_min_k4, make_qkx1_quants, make_qkx3_quants, make_qp_quants, nearest_int, put_scale_min_k4};
use crate::bytes::{get_f16, put_f16};
use crate::codec::{Activation, Codec};
use crate::simd;

/// Shared scale/min selection; writes d, dmin and the 12 scale bytes.
/// Returns nothing; levels are computed by the caller from the stored scales.
fn choose_scales(xs: &[f32], imp: Option<&[f32]>, nmax: i32, b: &mut [u8]) {
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut ls, mut lm) = ([0u8; 8], [0u8; 8]);
    match imp {
        None => {
            for j in 0..8 {
                (scales[j], mins[j]) = make_qkx1_quants(nmax, 5, &xs[32 * j..32 * j + 32]);
            }
            let max_scale = scales.iter().fold(0f32, |m, &v| v.max(m));
            let max_min = mins.iter().fold(0f32, |m, &v| v.max(m));
            let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
            let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
            for j in 0..8 {
                ls[j] = nearest_int(inv_scale * scales[j]).min(63) as u8;
                lm[j] = nearest_int(inv_min * mins[j]).min(63) as u8;
            }
            put_f16(b, 0, max_scale / 63.0);
            put_f16(b, 2, max_min / 63.0);
        }
        Some(imp) => {
            let w = imatrix_weights(xs, imp, 2.0);
            let mut sw = [0f32; 8];
            for j in 0..8 {
                let r = 32 * j..32 * j + 32;
                sw[j] = w[r.clone()].iter().sum();
                (scales[j], mins[j]) = make_qkx3_quants(nmax, &xs[r.clone()], &w[r], -0.9, 0.05, 36);
            }
            let d = make_qp_quants(63, &scales, &mut ls, &sw);
            let m = make_qp_quants(63, &mins, &mut lm, &sw);
            for j in 0..8 {
                ls[j] = ls[j].min(63);
                lm[j] = lm[j].min(63);
            }
            put_f16(b, 0, d);
            put_f16(b, 2, m);
        }
    }
    put_scale_min_k4(&ls, &lm, &mut b[4..16]);
}

/// Levels 0..=nmax from the stored scales.
fn levels(xs: &[f32], b: &[u8], nmax: i32) -> [u8; QK_K] {
    let (d, dmin) = (get_f16(b, 0), get_f16(b, 2));
    let mut l = [0u8; QK_K];
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &b[4..16]);
        let dj = d * sc as f32;
        if dj != 0.0 {
            let dm = dmin * m as f32;
            for ii in 0..32 {
                l[32 * j + ii] = nearest_int((xs[32 * j + ii] + dm) / dj).clamp(0, nmax) as u8;
            }
        }
    }
    l
}

fn unpack_scales(b: &[u8], k: &mut KBlock) {
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, &b[4..16]);
        k.scale[2 * j] = sc as i32;
        k.scale[2 * j + 1] = sc as i32;
        k.min[2 * j] = m as i32;
        k.min[2 * j + 1] = m as i32;
    }
}

pub const Q4K_BYTES: usize = 144;
pub struct Q4K;

pub fn unpack_q4k(b: &[u8]) -> KBlock {
    let mut k = KBlock::new(get_f16(b, 0), get_f16(b, 2));
    unpack_scales(b, &mut k);
    for n in 0..4 {
        for l in 0..32 {
            let q = b[16 + 32 * n + l];
            k.q[64 * n + l] = (q & 0xF) as i8;
            k.q[64 * n + 32 + l] = (q >> 4) as i8;
        }
    }
    k
}

impl Codec for Q4K {
    fn block_elems(&self) -> usize {
        QK_K
    }
    fn block_bytes(&self) -> usize {
        Q4K_BYTES
    }
    fn supports_importance(&self) -> bool {
        true
    }
    fn encode(&self, x: &[f32], imp: Option<&[f32]>, out: &mut [u8]) {
        for (bi, (xs, b)) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q4K_BYTES)).enumerate() {
            b.fill(0);
            choose_scales(xs, imp.map(|w| &w[bi * QK_K..(bi + 1) * QK_K]), 15, b);
            let l = levels(xs, b, 15);
            for n in 0..4 {
                for i in 0..32 {
                    b[16 + 32 * n + i] = l[64 * n + i] | (l[64 * n + 32 + i] << 4);
                }
            }
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        simd::dequant_q4k(codes, out)
    }
    fn dot_f32(&self, codes: &[u8], x: &[f32]) -> f32 {
        simd::dot_q4k_f32(codes, x)
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8K)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        simd::dot_q4k_q8k(codes, act)
    }
}

/// Scalar reference for Q4_K dequantization.
pub fn dequant_q4k_ref(codes: &[u8], out: &mut [f32]) {
    kblock::decode_with(codes, Q4K_BYTES, out, unpack_q4k)
}

/// Scalar reference for Q4_K · f32.
pub fn dot_q4k_f32_ref(codes: &[u8], x: &[f32]) -> f32 {
    codes.chunks_exact(Q4K_BYTES).zip(x.chunks_exact(QK_K)).map(|(b, xs)| unpack_q4k(b).dot_f32(xs)).sum()
}

/// Scalar reference for Q4_K · Q8_K.
pub fn dot_q4k_q8k_ref(codes: &[u8], act: &[u8]) -> f32 {
    kblock::dot_with(codes, Q4K_BYTES, act, unpack_q4k)
}

const Q5K_BYTES: usize = 176;
pub struct Q5K;

fn unpack_q5k(b: &[u8]) -> KBlock {
    let mut k = KBlock::new(get_f16(b, 0), get_f16(b, 2));
    unpack_scales(b, &mut k);
    for n in 0..4 {
        for l in 0..32 {
            let q = b[48 + 32 * n + l];
            let h = b[16 + l];
            k.q[64 * n + l] = ((q & 0xF) | (((h >> (2 * n)) & 1) << 4)) as i8;
            k.q[64 * n + 32 + l] = ((q >> 4) | (((h >> (2 * n + 1)) & 1) << 4)) as i8;
        }
    }
    k
}

impl Codec for Q5K {
    fn block_elems(&self) -> usize {
        QK_K
    }
    fn block_bytes(&self) -> usize {
        Q5K_BYTES
    }
    fn supports_importance(&self) -> bool {
        true
    }
    fn encode(&self, x: &[f32], imp: Option<&[f32]>, out: &mut [u8]) {
        for (bi, (xs, b)) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q5K_BYTES)).enumerate() {
            b.fill(0);
            choose_scales(xs, imp.map(|w| &w[bi * QK_K..(bi + 1) * QK_K]), 31, b);
            let l = levels(xs, b, 31);
            for n in 0..4 {
                for i in 0..32 {
                    let (l1, l2) = (l[64 * n + i], l[64 * n + 32 + i]);
                    b[16 + i] |= ((l1 >> 4) << (2 * n)) | ((l2 >> 4) << (2 * n + 1));
                    b[48 + 32 * n + i] = (l1 & 0xF) | ((l2 & 0xF) << 4);
                }
            }
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        kblock::decode_with(codes, Q5K_BYTES, out, unpack_q5k)
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8K)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        kblock::dot_with(codes, Q5K_BYTES, act, unpack_q5k)
    }
}
