//! Q8_K: the 8-bit activation partner of the k-quants and ternary formats.
//! Layout: d:f32 | qs:i8[256] | bsums:i16[16] (sums of each 16 quants).

use super::kblock::{KBlock, Q8K_BYTES, QK_K};
use crate::bytes::{get_f32, put_f32, put_i16};
use crate::codec::{Activation, Codec};

pub struct Q8K;

fn unpack(b: &[u8]) -> KBlock {
    let mut k = KBlock::new(get_f32(b, 0), 0.0);
    for i in 0..QK_K {
        k.q[i] = b[4 + i] as i8;
    }
    k.scale = [1; 16];
    k
}

impl Codec for Q8K {
    fn block_elems(&self) -> usize {
        QK_K
    }
    fn block_bytes(&self) -> usize {
        Q8K_BYTES
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        for (xs, b) in x.chunks_exact(QK_K).zip(out.chunks_exact_mut(Q8K_BYTES)) {
            let (mut amax, mut max) = (0f32, 0f32);
            for &v in xs {
                if amax < v.abs() {
                    amax = v.abs();
                    max = v;
                }
            }
            b.fill(0);
            if amax == 0.0 {
                continue;
            }
            let iscale = -128.0 / max;
            for (j, &v) in xs.iter().enumerate() {
                b[4 + j] = (iscale * v).round().min(127.0) as i8 as u8;
            }
            for s in 0..16 {
                let sum: i32 = b[4 + 16 * s..4 + 16 * s + 16].iter().map(|&q| q as i8 as i32).sum();
                put_i16(b, 260 + 2 * s, sum as i16);
            }
            put_f32(b, 0, 1.0 / iscale);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        super::kblock::decode_with(codes, Q8K_BYTES, out, unpack)
    }
    fn activation(&self) -> Option<Activation> {
        Some(Activation::Q8K)
    }
    fn dot_q8(&self, codes: &[u8], act: &[u8]) -> f32 {
        super::kblock::dot_with(codes, Q8K_BYTES, act, unpack)
    }
}
