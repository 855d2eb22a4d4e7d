//! Q3_K: 3.4375 bits. Layout: hmask[32] (high bit) | qs[64] (low 2 bits) |
//! scales[12] (sixteen 6-bit signed scales) | d:f16 = 110 bytes per 256.

use super::kblock::{self, imatrix_weights, KBlock, QK_K};
use super::search::{make_q3_quants, make_qx_quants, nearest_int};
use crate::bytes::{get_f16, put_f16};
use crate::codec::{Activation, Codec};

const BYTES: usize = 110;
pub struct Q3K;

fn scale_at(sc: &[u8], j: usize) -> i32 {
    let lo = if j < 8 { sc[j] & 0xF } else { sc[j - 8] >> 4 };
    let hi = (sc[8 + j % 4] >> (2 * (j / 4))) & 3;
    (lo | (hi << 4)) as i32 - 32
}

fn put_scales(ls: &[i32; 16], sc: &mut [u8]) {
    sc[..12].fill(0);
    for (j, &l) in ls.iter().enumerate() {
        if j < 8 {
            sc[j] = (l & 0xF) as u8;
        } else {
            sc[j - 8] |= ((l & 0xF) << 4) as u8;
        }
        sc[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
    }
}

fn unpack(b: &[u8]) -> KBlock {
    let mut k = KBlock::new(get_f16(b, 108), 0.0);
    for s in 0..16 {
        k.scale[s] = scale_at(&b[96..108], s);
    }
    for n in 0..2 {
        for j in 0..4 {
            let m = 1u8 << (4 * n + j);
            for l in 0..32 {
                let low = ((b[32 + 32 * n + l] >> (2 * j)) & 3) as i8;
                k.q[128 * n + 32 * j + l] = low - if b[l] & m == 0 { 4 } else { 0 };
            }
        }
    }
    k
}

/// `l` holds the levels of the scale search (kept where a scale is zero).
fn finish(x: &[f32], b: &mut [u8], mut l: [i8; QK_K]) {
    let d_all = get_f16(b, 108);
    for j in 0..16 {
        let d = d_all * scale_at(&b[96..108], j) as f32;
        if d != 0.0 {
            for ii in 0..16 {
                l[16 * j + ii] = (nearest_int(x[16 * j + ii] / d).clamp(-4, 3) + 4) as i8;
            }
        }
    }
    b[..96].fill(0);
    for (i, li) in l.iter_mut().enumerate() {
        if *li > 3 {
            b[i % 32] |= 1 << (i / 32);
            *li -= 4;
        }
    }
    for n in 0..2 {
        let j = 128 * n;
        for ll in 0..32 {
            b[32 + 32 * n + ll] = (l[j + ll] | (l[j + ll + 32] << 2) | (l[j + ll + 64] << 4) | (l[j + ll + 96] << 6)) as u8;
        }
    }
}

impl Codec for Q3K {
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
            let mut ls = [0i32; 16];
            let mut l = [0i8; QK_K];
            match imp {
                None => {
                    for j in 0..16 {
                        scales[j] = make_q3_quants(&xs[16 * j..16 * j + 16], 4, true);
                    }
                    let mut max_scale = 0f32;
                    for &s in &scales {
                        if s.abs() > max_scale.abs() {
                            max_scale = s;
                        }
                    }
                    if max_scale != 0.0 {
                        let is = -32.0 / max_scale;
                        for j in 0..16 {
                            ls[j] = nearest_int(is * scales[j]).clamp(-32, 31) + 32;
                        }
                        put_f16(b, 108, 1.0 / is);
                    }
                }
                Some(imp) => {
                    let imp = &imp[bi * QK_K..(bi + 1) * QK_K];
                    let w = imatrix_weights(xs, imp, 2.0);
                    let mut sw = [0f32; 16];
                    for j in 0..16 {
                        let r = 16 * j..16 * j + 16;
                        sw[j] = w[r.clone()].iter().sum();
                        scales[j] = make_qx_quants(4, &xs[r.clone()], &mut l[r.clone()], 1, Some(&w[r]));
                    }
                    let mut lsi = [0i8; 16];
                    let d = make_qx_quants(32, &scales, &mut lsi, 1, Some(&sw));
                    put_f16(b, 108, d);
                    for j in 0..16 {
                        ls[j] = lsi[j] as i32;
                    }
                }
            }
            put_scales(&ls, &mut b[96..108]);
            finish(xs, b, l);
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
