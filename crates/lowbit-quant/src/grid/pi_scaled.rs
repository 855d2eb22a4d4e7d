//! Pi-scaled quantization: a symmetric mid-rise grid whose step is α·π/k
//! (k = 2^(b−1)), with α stored per group of g as f16 and chosen so the
//! outermost level lands on the group's absmax. Values are
//! (q − k + ½)·α·π/k for q in 0..2k. The 3-bit form packs 8 weights in 3
//! bytes. The claimed advantage over a plain uniform grid is a hypothesis
//! that `lowbit quant-bench` measures. Block: α:f16 | codes.

use std::f32::consts::PI;

use crate::bitpack::{pack, packed_len, unpack};
use crate::bytes::{get_f16, put_f16, to_f16_f32};
use crate::codec::Codec;

pub struct PiScaled {
    pub bits: u32,
    pub group: usize,
}

impl PiScaled {
    fn k(&self) -> f32 {
        (1u32 << (self.bits - 1)) as f32
    }
}

impl Codec for PiScaled {
    fn block_elems(&self) -> usize {
        self.group
    }
    fn block_bytes(&self) -> usize {
        2 + packed_len(self.group, self.bits)
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        let k = self.k();
        let mut codes = vec![0u8; self.group];
        for (xs, b) in x.chunks_exact(self.group).zip(out.chunks_exact_mut(self.block_bytes())) {
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            let alpha = to_f16_f32(amax * k / (PI * (k - 0.5)));
            put_f16(b, 0, alpha);
            let step = alpha * PI / k;
            let inv = if step > 0.0 { 1.0 / step } else { 0.0 };
            for (c, &v) in codes.iter_mut().zip(xs) {
                *c = (v * inv + k - 0.5).round().clamp(0.0, 2.0 * k - 1.0) as u8;
            }
            pack(&codes, self.bits, &mut b[2..]);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        let k = self.k();
        let mut c = vec![0u8; self.group];
        for (b, y) in codes.chunks_exact(self.block_bytes()).zip(out.chunks_exact_mut(self.group)) {
            unpack(&b[2..], self.bits, &mut c);
            let step = get_f16(b, 0) * PI / k;
            for (yi, &ci) in y.iter_mut().zip(&c) {
                *yi = (ci as f32 - k + 0.5) * step;
            }
        }
    }
}
