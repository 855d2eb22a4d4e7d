//! Ternary formats (BitNet b1.58 / TriLM): weights in {-1, 0, +1} times one
//! f16 absmax scale per 256. TQ1_0 packs 5 trits per byte (1.6875 bits):
//! qs[48] | qh[4] | d:f16. TQ2_0 packs 2 bits per trit (2.0625 bits):
//! qs[64] | d:f16. Both dot with Q8_K without multiplications by weights.

use super::kblock::{Q8K_BYTES, QK_K};
use crate::bytes::{get_f16, get_f32, put_f16};
use crate::codec::{Activation, Codec};

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

fn absmax(x: &[f32]) -> f32 {
    x.iter().fold(0f32, |a, v| a.max(v.abs()))
}

/// Trit 0..=2 for value `v` at inverse scale `id` (C's lroundf + 1).
#[inline(always)]
fn trit(v: f32, id: f32) -> u8 {
    ((v * id).round() as i32 + 1) as u8
}

/// Pack 5 (or 4, then shifted) trits, most significant first, into a byte
/// holding ceil(value * 256 / 243).
#[inline(always)]
fn pack_trits(t: impl Iterator<Item = u8>) -> u8 {
    let q = t.fold(0u16, |q, x| q * 3 + x as u16);
    ((q * 256 + 242) / 243) as u8
}

#[inline(always)]
fn unpack_trit(byte: u8, n: usize) -> i8 {
    let q = byte.wrapping_mul(POW3[n]);
    (((q as u16) * 3) >> 8) as i8 - 1
}

/// Element order of TQ1_0: (byte index in qs/qh, trit position) per element.
fn tq1_trits(b: &[u8], t: &mut [i8; QK_K]) {
    let mut e = 0;
    for n in 0..5 {
        for m in 0..32 {
            t[e] = unpack_trit(b[m], n);
            e += 1;
        }
    }
    for n in 0..5 {
        for m in 0..16 {
            t[e] = unpack_trit(b[32 + m], n);
            e += 1;
        }
    }
    for n in 0..4 {
        for j in 0..4 {
            t[e] = unpack_trit(b[48 + j], n);
            e += 1;
        }
    }
}

pub struct Tq1_0;
impl Codec for Tq1_0 {
    fn block_elems(&self) -> usize {
        QK_K
    }
    fn block_bytes(&self) -> usize {
        54
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        for (xs, b) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(54)) {
            let d = absmax(xs);
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            put_f16(b, 52, d);
            for m in 0..32 {
                b[m] = pack_trits((0..5).map(|n| trit(xs[m + 32 * n], id)));
            }
            let x2 = &xs[160..];
            for m in 0..16 {
                b[32 + m] = pack_trits((0..5).map(|n| trit(x2[m + 16 * n], id)));
            }
            let x3 = &xs[240..];
            for j in 0..4 {
                b[48 + j] = pack_trits((0..4).map(|m| trit(x3[j + 4 * m], id)).chain(std::iter::once(0)));
            }
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        let mut t = [0i8; QK_K];
        for (b, y) in codes.chunks_exact(54).zip(out.chunks_exact_mut(QK_K)) {
            let d = get_f16(b, 52);
            tq1_trits(b, &mut t);
            for (yi, &ti) in y.iter_mut().zip(&t) {
                *yi = ti as f32 * d;
            }
        }
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8K)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        let mut t = [0i8; QK_K];
        let mut sum = 0f32;
        for (b, y) in codes.chunks_exact(54).zip(act.chunks_exact(Q8K_BYTES)) {
            tq1_trits(b, &mut t);
            sum += ternary_dot(&t, y) as f32 * get_f16(b, 52) * get_f32(y, 0);
        }
        sum
    }
}

/// Multiplication-free: add where the trit is +1, subtract where -1.
#[inline(always)]
fn ternary_dot(t: &[i8; QK_K], y: &[u8]) -> i32 {
    let mut s = 0i32;
    for (i, &ti) in t.iter().enumerate() {
        let v = y[4 + i] as i8 as i32;
        s += match ti {
            1 => v,
            -1 => -v,
            _ => 0,
        };
    }
    s
}

fn tq2_trits(b: &[u8], t: &mut [i8; QK_K]) {
    for j in 0..2 {
        for l in 0..4 {
            for m in 0..32 {
                t[128 * j + 32 * l + m] = ((b[32 * j + m] >> (2 * l)) & 3) as i8 - 1;
            }
        }
    }
}

pub struct Tq2_0;
impl Codec for Tq2_0 {
    fn block_elems(&self) -> usize {
        QK_K
    }
    fn block_bytes(&self) -> usize {
        66
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        for (xs, b) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(66)) {
            let d = absmax(xs);
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            put_f16(b, 64, d);
            for j in 0..2 {
                for m in 0..32 {
                    let mut q = 0u8;
                    for n in 0..4 {
                        q += (trit(xs[128 * j + m + 32 * n], id) & 3) << (2 * n);
                    }
                    b[32 * j + m] = q;
                }
            }
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        let mut t = [0i8; QK_K];
        for (b, y) in codes.chunks_exact(66).zip(out.chunks_exact_mut(QK_K)) {
            let d = get_f16(b, 64);
            tq2_trits(b, &mut t);
            for (yi, &ti) in y.iter_mut().zip(&t) {
                *yi = ti as f32 * d;
            }
        }
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8K)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        let mut t = [0i8; QK_K];
        let mut sum = 0f32;
        for (b, y) in codes.chunks_exact(66).zip(act.chunks_exact(Q8K_BYTES)) {
            tq2_trits(b, &mut t);
            sum += ternary_dot(&t, y) as f32 * get_f16(b, 64) * get_f32(y, 0);
        }
        sum
    }
}
