//! AVX-512 (F + BW) kernels. Callers guarantee the features are present.
use crate::ggml::legacy::{dequant_q8_0_ref, dot_q8_0_q8_0_ref};
use crate::ggml::q45_k::{dequant_q4k_ref, dot_q4k_q8k_ref};
use crate::rot::rht::fwht_ref;

pub unsafe fn fwht(x: &mut [f32]) {
    fwht_ref(x)
}
pub unsafe fn quantize_bounds(u: &[f32], bounds: &[f32], codes: &mut [u8]) {
    super::quantize_bounds_ref(u, bounds, codes)
}
pub unsafe fn dequant_q8_0(codes: &[u8], out: &mut [f32]) {
    dequant_q8_0_ref(codes, out)
}
pub unsafe fn dot_q8_0_q8_0(codes: &[u8], act: &[u8]) -> f32 {
    dot_q8_0_q8_0_ref(codes, act)
}
pub unsafe fn dequant_q4k(codes: &[u8], out: &mut [f32]) {
    dequant_q4k_ref(codes, out)
}
pub unsafe fn dot_q4k_q8k(codes: &[u8], act: &[u8]) -> f32 {
    dot_q4k_q8k_ref(codes, act)
}
