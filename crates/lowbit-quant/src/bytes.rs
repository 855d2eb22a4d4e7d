//! Little-endian field access inside packed blocks.

use half::{bf16, f16};

#[inline(always)]
pub fn get_f16(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

#[inline(always)]
pub fn put_f16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
}

/// Round-trips through f16 the way a stored scale does.
#[inline(always)]
pub fn to_f16_f32(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

#[inline(always)]
pub fn get_bf16(b: &[u8], at: usize) -> f32 {
    bf16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

#[inline(always)]
pub fn put_bf16(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 2].copy_from_slice(&bf16::from_f32(v).to_le_bytes());
}

#[inline(always)]
pub fn get_f32(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline(always)]
pub fn put_f32(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[inline(always)]
pub fn get_i16(b: &[u8], at: usize) -> i16 {
    i16::from_le_bytes([b[at], b[at + 1]])
}

#[inline(always)]
pub fn put_i16(b: &mut [u8], at: usize, v: i16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
