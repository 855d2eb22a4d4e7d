//! Q6_K: 6.5625 bits. Layout: ql[128] (low 4 bits) | qh[64] (high 2 bits) |
//! scales:i8[16] | d:f16 = 210 bytes per 256.

use super::kblock::{self, KBlock, QK_K};
use super::search::{make_qx_quants, nearest_int};
use crate::bytes::{get_f16, put_f16};
use crate::codec::{Activation, Codec};

const BYTES: usize = 210;
pub struct Q6K;

fn unpack(b: &[u8]) -> KBlock {
    let mut k = KBlock::new(get_f16(b, 208), 0.0);
    for s in 0..16 {
        k.scale[s] = b[192 + s] as i8 as i32;
    }
    for n in 0..2 {
        let (ql, qh) = (&b[64 * n..], &b[128 + 32 * n..]);
        for l in 0..32 {
            let e = 128 * n + l;
            k.q[e] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            k.q[e + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            k.q[e + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            k.q[e + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    k
}

impl Codec for Q6K {
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
        let mut l = [0i8; QK_K];
        for (bi, (xs, b)) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(BYTES)).enumerate() {
            let mut scales = [0f32; 16];
            let (mut max_scale, mut max_abs) = (0f32, 0f32);
            for ib in 0..16 {
                let r = 16 * ib..16 * ib + 16;
                let qw = imp.map(|w| &w[bi * QK_K + r.start..bi * QK_K + r.end]);
                let s = make_qx_quants(32, &xs[r.clone()], &mut l[r], 1, qw);
                scales[ib] = s;
                if s.abs() > max_abs {
                    max_abs = s.abs();
                    max_scale = s;
                }
            }
            let iscale = -128.0 / max_scale;
            put_f16(b, 208, 1.0 / iscale);
            for ib in 0..16 {
                b[192 + ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
            }
            let d_all = get_f16(b, 208);
            for j in 0..16 {
                let d = d_all * b[192 + j] as i8 as f32;
                if d == 0.0 {
                    continue;
                }
                for ii in 0..16 {
                    l[16 * j + ii] = (nearest_int(xs[16 * j + ii] / d).clamp(-32, 31) + 32) as i8;
                }
            }
            for n in 0..2 {
                let j = 128 * n;
                for i in 0..32 {
                    let (q1, q2, q3, q4) = (l[j + i], l[j + i + 32], l[j + i + 64], l[j + i + 96]);
                    b[64 * n + i] = ((q1 & 0xF) | ((q3 & 0xF) << 4)) as u8;
                    b[64 * n + i + 32] = ((q2 & 0xF) | ((q4 & 0xF) << 4)) as u8;
                    b[128 + 32 * n + i] = ((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6)) as u8;
                }
            }
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
