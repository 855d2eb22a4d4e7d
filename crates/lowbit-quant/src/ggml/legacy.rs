//! ggml's 32-element formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
//!
//! Layouts (little-endian, bytes): Q4_0 = d:f16 | qs[16];
//! Q4_1 = d:f16 | m:f16 | qs[16]; Q5_0 = d:f16 | qh:u32 | qs[16];
//! Q5_1 = d:f16 | m:f16 | qh:u32 | qs[16]; Q8_0 = d:f16 | qs:i8[32].
//! Q8_1 = d:f16 | s:f16 | qs:i8[32] (activations only).
//! Nibble j holds element j (low) and j+16 (high). Q4_0/Q5_0/Q8_0 dot with
//! Q8_0; Q4_1/Q5_1 with Q8_1, whose stored d·Σq pays the min term, as in ggml.

use crate::bytes::{get_f16, put_f16};
use crate::codec::{Activation, Codec};
use crate::simd;

pub const QK: usize = 32;

fn absmax_signed(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for &v in x {
        min = min.min(v);
        max = max.max(v);
    }
    (min, max)
}

pub struct Q4_0;
impl Codec for Q4_0 {
    fn block_elems(&self) -> usize {
        QK
    }
    fn block_bytes(&self) -> usize {
        18
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        for (xs, b) in x.chunks_exact(QK).zip(out.chunks_exact_mut(18)) {
            let d = absmax_signed(xs) / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            put_f16(b, 0, d);
            for j in 0..16 {
                let q0 = ((xs[j] * id + 8.5) as u8).min(15);
                let q1 = ((xs[j + 16] * id + 8.5) as u8).min(15);
                b[2 + j] = q0 | (q1 << 4);
            }
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        for (b, y) in codes.chunks_exact(18).zip(out.chunks_exact_mut(QK)) {
            let d = get_f16(b, 0);
            for j in 0..16 {
                y[j] = ((b[2 + j] & 0xF) as i32 - 8) as f32 * d;
                y[j + 16] = ((b[2 + j] >> 4) as i32 - 8) as f32 * d;
            }
        }
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8_0)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        let mut sum = 0f32;
        for (b, y) in codes.chunks_exact(18).zip(act.chunks_exact(34)) {
            let mut s = 0i32;
            for j in 0..16 {
                s += ((b[2 + j] & 0xF) as i32 - 8) * y[2 + j] as i8 as i32;
                s += ((b[2 + j] >> 4) as i32 - 8) * y[18 + j] as i8 as i32;
            }
            sum += s as f32 * get_f16(b, 0) * get_f16(y, 0);
        }
        sum
    }
}

pub struct Q4_1;
impl Codec for Q4_1 {
    fn block_elems(&self) -> usize {
        QK
    }
    fn block_bytes(&self) -> usize {
        20
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        for (xs, b) in x.chunks_exact(QK).zip(out.chunks_exact_mut(20)) {
            let (min, max) = min_max(xs);
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            put_f16(b, 0, d);
            put_f16(b, 2, min);
            for j in 0..16 {
                let q0 = (((xs[j] - min) * id + 0.5) as u8).min(15);
                let q1 = (((xs[j + 16] - min) * id + 0.5) as u8).min(15);
                b[4 + j] = q0 | (q1 << 4);
            }
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        for (b, y) in codes.chunks_exact(20).zip(out.chunks_exact_mut(QK)) {
            let (d, m) = (get_f16(b, 0), get_f16(b, 2));
            for j in 0..16 {
                y[j] = (b[4 + j] & 0xF) as f32 * d + m;
                y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
            }
        }
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8_1)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        simd::dot_q4_1_q8_1(codes, act)
    }
    fn dot_q8_batch(&self, codes: &[u8], acts: &[&[u8]], out: &mut [f32]) {
        let mut i = 0;
        while i + 4 <= acts.len() {
            let r = simd::dot_q4_1_q8_1_x4(codes, [acts[i], acts[i + 1], acts[i + 2], acts[i + 3]]);
            out[i..i + 4].copy_from_slice(&r);
            i += 4;
        }
        for j in i..acts.len() {
            out[j] = simd::dot_q4_1_q8_1(codes, acts[j]);
        }
    }
    fn dot_q8_batch4(&self, rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
        simd::dot_q4_1_q8_1_4xn(rows, acts, out)
    }
}

/// Scalar reference: Q4_1 · Q8_1 (the min term uses the activation's stored d·Σq).
pub fn dot_q4_1_q8_1_ref(codes: &[u8], act: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in codes.chunks_exact(20).zip(act.chunks_exact(36)) {
        let mut s = 0i32;
        for j in 0..16 {
            s += (b[4 + j] & 0xF) as i32 * y[4 + j] as i8 as i32;
            s += (b[4 + j] >> 4) as i32 * y[20 + j] as i8 as i32;
        }
        sum += s as f32 * get_f16(b, 0) * get_f16(y, 0) + get_f16(b, 2) * get_f16(y, 2);
    }
    sum
}

#[inline(always)]
fn q5_levels(b: &[u8], qh_at: usize, qs_at: usize) -> [i32; 32] {
    let qh = u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
    let mut q = [0i32; 32];
    for j in 0..16 {
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        q[j] = ((b[qs_at + j] & 0xF) as u32 | h0) as i32;
        q[j + 16] = ((b[qs_at + j] >> 4) as u32 | h1) as i32;
    }
    q
}

#[inline(always)]
fn q5_pack(q: &[u8; 32], b: &mut [u8], qh_at: usize, qs_at: usize) {
    let mut qh = 0u32;
    for j in 0..16 {
        b[qs_at + j] = (q[j] & 0xF) | ((q[j + 16] & 0xF) << 4);
        qh |= ((q[j] as u32 & 0x10) >> 4) << j;
        qh |= ((q[j + 16] as u32 & 0x10) >> 4) << (j + 16);
    }
    b[qh_at..qh_at + 4].copy_from_slice(&qh.to_le_bytes());
}

pub struct Q5_0;
impl Codec for Q5_0 {
    fn block_elems(&self) -> usize {
        QK
    }
    fn block_bytes(&self) -> usize {
        22
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        for (xs, b) in x.chunks_exact(QK).zip(out.chunks_exact_mut(22)) {
            let d = absmax_signed(xs) / -16.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            put_f16(b, 0, d);
            let mut q = [0u8; 32];
            for (qj, &v) in q.iter_mut().zip(xs) {
                *qj = ((v * id + 16.5) as i8).min(31) as u8;
            }
            q5_pack(&q, b, 2, 6);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        for (b, y) in codes.chunks_exact(22).zip(out.chunks_exact_mut(QK)) {
            let d = get_f16(b, 0);
            for (yj, q) in y.iter_mut().zip(q5_levels(b, 2, 6)) {
                *yj = (q - 16) as f32 * d;
            }
        }
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8_0)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        let mut sum = 0f32;
        for (b, y) in codes.chunks_exact(22).zip(act.chunks_exact(34)) {
            let q = q5_levels(b, 2, 6);
            let s: i32 = (0..32).map(|j| (q[j] - 16) * y[2 + j] as i8 as i32).sum();
            sum += s as f32 * get_f16(b, 0) * get_f16(y, 0);
        }
        sum
    }
}

pub struct Q5_1;
impl Codec for Q5_1 {
    fn block_elems(&self) -> usize {
        QK
    }
    fn block_bytes(&self) -> usize {
        24
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        for (xs, b) in x.chunks_exact(QK).zip(out.chunks_exact_mut(24)) {
            let (min, max) = min_max(xs);
            let d = (max - min) / 31.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            put_f16(b, 0, d);
            put_f16(b, 2, min);
            let mut q = [0u8; 32];
            for (qj, &v) in q.iter_mut().zip(xs) {
                *qj = ((v - min) * id + 0.5) as u8;
            }
            q5_pack(&q, b, 4, 8);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        for (b, y) in codes.chunks_exact(24).zip(out.chunks_exact_mut(QK)) {
            let (d, m) = (get_f16(b, 0), get_f16(b, 2));
            for (yj, q) in y.iter_mut().zip(q5_levels(b, 4, 8)) {
                *yj = q as f32 * d + m;
            }
        }
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8_1)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        let mut sum = 0f32;
        for (b, y) in codes.chunks_exact(24).zip(act.chunks_exact(36)) {
            let q = q5_levels(b, 4, 8);
            let s: i32 = (0..32).map(|j| q[j] * y[4 + j] as i8 as i32).sum();
            sum += s as f32 * get_f16(b, 0) * get_f16(y, 0) + get_f16(b, 2) * get_f16(y, 2);
        }
        sum
    }
}

/// Q8_1: the activation partner of Q4_1/Q5_1 (never a weight format):
/// d:f16 | s:f16 (= d·Σq, so a min term needs no sum at dot time) | qs:i8[32].
pub struct Q8_1;
impl Codec for Q8_1 {
    fn block_elems(&self) -> usize {
        QK
    }
    fn block_bytes(&self) -> usize {
        36
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        for (xs, b) in x.chunks_exact(QK).zip(out.chunks_exact_mut(36)) {
            let (d, sum) = simd::q8_block(xs, &mut b[4..]);
            put_f16(b, 0, d);
            // As ggml's quantize_row_q8_1_ref: the unrounded d times the sum.
            put_f16(b, 2, sum as f32 * d);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        for (b, y) in codes.chunks_exact(36).zip(out.chunks_exact_mut(QK)) {
            let d = get_f16(b, 0);
            for (yj, &q) in y.iter_mut().zip(&b[4..]) {
                *yj = q as i8 as f32 * d;
            }
        }
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8_1)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        let mut sum = 0f32;
        for (b, y) in codes.chunks_exact(36).zip(act.chunks_exact(36)) {
            let s: i32 = b[4..].iter().zip(&y[4..]).map(|(&a, &c)| a as i8 as i32 * c as i8 as i32).sum();
            sum += s as f32 * get_f16(b, 0) * get_f16(y, 0);
        }
        sum
    }
}

pub struct Q8_0;
impl Codec for Q8_0 {
    fn block_elems(&self) -> usize {
        QK
    }
    fn block_bytes(&self) -> usize {
        34
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        for (xs, b) in x.chunks_exact(QK).zip(out.chunks_exact_mut(34)) {
            let (d, _) = simd::q8_block(xs, &mut b[2..]);
            put_f16(b, 0, d);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        simd::dequant_q8_0(codes, out)
    }
    fn dot_f32(&self, codes: &[u8], x: &[f32]) -> f32 {
        simd::dot_q8_0_f32(codes, x)
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8_0)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        simd::dot_q8_0_q8_0(codes, act)
    }
    fn dot_q8_batch4(&self, rows: [&[u8]; 4], acts: &[&[u8]], out: [&mut [f32]; 4]) {
        simd::dot_q8_0_q8_0_4xn(rows, acts, out)
    }
}

/// Scalar reference: Q8_0 dequantization.
pub fn dequant_q8_0_ref(codes: &[u8], out: &mut [f32]) {
    for (b, y) in codes.chunks_exact(34).zip(out.chunks_exact_mut(QK)) {
        let d = get_f16(b, 0);
        for (yj, &q) in y.iter_mut().zip(&b[2..]) {
            *yj = q as i8 as f32 * d;
        }
    }
}

/// Scalar reference: Q8_0 · Q8_0.
pub fn dot_q8_0_q8_0_ref(codes: &[u8], act: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in codes.chunks_exact(34).zip(act.chunks_exact(34)) {
        let s: i32 = b[2..].iter().zip(&y[2..]).map(|(&a, &c)| a as i8 as i32 * c as i8 as i32).sum();
        sum += s as f32 * get_f16(b, 0) * get_f16(y, 0);
    }
    sum
}

/// Scalar reference: Q8_0 · f32.
pub fn dot_q8_0_f32_ref(codes: &[u8], x: &[f32]) -> f32 {
    let mut sum = 0f32;
    for (b, xs) in codes.chunks_exact(34).zip(x.chunks_exact(QK)) {
        let s: f32 = b[2..].iter().zip(xs).map(|(&q, &v)| q as i8 as f32 * v).sum();
        sum += s * get_f16(b, 0);
    }
    sum
}
