//! Q2_K: 2.625 bits. Layout: scales[16] (low nibble scale, high nibble min)
//! | qs[64] (2-bit, 4 per byte) | d:f16 | dmin:f16 = 84 bytes per 256.

use super::kblock::{self, imatrix_weights, KBlock, QK_K};
use super::search::{make_qkx1_quants, make_qkx3_quants, make_qp_quants, nearest_int};
use crate::bytes::{get_f16, put_f16};
use crate::codec::{Activation, Codec};

const BYTES: usize = 84;
pub struct Q2K;

fn unpack(b: &[u8]) -> KBlock {
    let mut k = KBlock::new(get_f16(b, 80), get_f16(b, 82));
    for s in 0..16 {
        k.scale[s] = (b[s] & 0xF) as i32;
        k.min[s] = (b[s] >> 4) as i32;
    }
    for n in 0..2 {
        for j in 0..4 {
            for l in 0..32 {
                k.q[128 * n + 32 * j + l] = ((b[16 + 32 * n + l] >> (2 * j)) & 3) as i8;
            }
        }
    }
    k
}

/// Quantize levels from the stored scales and pack them.
fn finish(x: &[f32], b: &mut [u8]) {
    let (d, dmin) = (get_f16(b, 80), get_f16(b, 82));
    let mut l = [0u8; QK_K];
    for j in 0..16 {
        let dj = d * (b[j] & 0xF) as f32;
        if dj == 0.0 {
            continue;
        }
        let dm = dmin * (b[j] >> 4) as f32;
        for ii in 0..16 {
            l[16 * j + ii] = nearest_int((x[16 * j + ii] + dm) / dj).clamp(0, 3) as u8;
        }
    }
    for n in 0..2 {
        for ll in 0..32 {
            let j = 128 * n;
            b[16 + 32 * n + ll] = l[j + ll] | (l[j + ll + 32] << 2) | (l[j + ll + 64] << 4) | (l[j + ll + 96] << 6);
        }
    }
}

impl Codec for Q2K {
    fn block_elems(&self) -> usize {
        QK_K
    }
    fn block_bytes(&self) -> usize {
        BYTES
    }
    fn supports_importance(&self) -> bool {
        true
    }
    fn encode(&self, x: &[f32], imp: Option<&[f32]>, out: &mut [u8]) {
        for (bi, (xs, b)) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(BYTES)).enumerate() {
            b.fill(0);
            let mut scales = [0f32; 16];
            let mut mins = [0f32; 16];
            match imp {
                None => {
                    for j in 0..16 {
                        (scales[j], mins[j]) = make_qkx1_quants(3, 5, &xs[16 * j..16 * j + 16]);
                    }
                    let max_scale = scales.iter().fold(0f32, |m, &v| v.max(m));
                    let max_min = mins.iter().fold(0f32, |m, &v| v.max(m));
                    if max_scale > 0.0 {
                        let is = 15.0 / max_scale;
                        for j in 0..16 {
                            b[j] = nearest_int(is * scales[j]) as u8;
                        }
                        put_f16(b, 80, max_scale / 15.0);
                    }
                    if max_min > 0.0 {
                        let is = 15.0 / max_min;
                        for j in 0..16 {
                            b[j] |= (nearest_int(is * mins[j]) as u8) << 4;
                        }
                        put_f16(b, 82, max_min / 15.0);
                    }
                }
                Some(imp) => {
                    let imp = &imp[bi * QK_K..(bi + 1) * QK_K];
                    let w = imatrix_weights(xs, imp, 1.0);
                    let mut sw = [0f32; 16];
                    for j in 0..16 {
                        let r = 16 * j..16 * j + 16;
                        sw[j] = w[r.clone()].iter().sum();
                        (scales[j], mins[j]) = make_qkx3_quants(3, &xs[r.clone()], &w[r], -0.9, 0.05, 36);
                    }
                    let (mut ls, mut lm) = ([0u8; 16], [0u8; 16]);
                    let d = make_qp_quants(15, &scales, &mut ls, &sw);
                    let m = make_qp_quants(15, &mins, &mut lm, &sw);
                    put_f16(b, 80, d);
                    put_f16(b, 82, m);
                    for j in 0..16 {
                        b[j] = ls[j] | (lm[j] << 4);
                    }
                }
            }
            finish(xs, b);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        kblock::decode_with(codes, BYTES, out, unpack)
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8K)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        kblock::dot_with(codes, BYTES, act, unpack)
    }
}
