//! Uniform group quantization (the KIVI building block): b ∈ 2..=8 bits,
//! one f16 scale per group of g (plus an f16 minimum when asymmetric).
//! Symmetric: levels −(2^(b−1)−1)..=2^(b−1)−1 times absmax/(2^(b−1)−1).
//! Asymmetric: levels 0..=2^b−1 times (max−min)/(2^b−1), plus min.
//! Block = one group: scale:f16 | [min:f16] | codes (b bits each, packed).
//! Whether groups run along tokens or channels is the caller's layout.

use crate::bitpack::{pack, packed_len, unpack};
use crate::bytes::{get_f16, put_f16, to_f16_f32};
use crate::codec::Codec;

pub struct Uniform {
    pub bits: u32,
    pub group: usize,
    pub asym: bool,
}

impl Uniform {
    fn header(&self) -> usize {
        if self.asym {
            4
        } else {
            2
        }
    }
}

impl Codec for Uniform {
    fn block_elems(&self) -> usize {
        self.group
    }
    fn block_bytes(&self) -> usize {
        self.header() + packed_len(self.group, self.bits)
    }
    fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
        let mut codes = vec![0u8; self.group];
        let h = self.header();
        for (xs, b) in x.chunks_exact(self.group).zip(out.chunks_exact_mut(self.block_bytes())) {
            if self.asym {
                let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
                for &v in xs {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
                let qmax = ((1u32 << self.bits) - 1) as f32;
                // Quantize against the stored (f16) scale and min so decode agrees.
                let d = to_f16_f32((hi - lo) / qmax);
                let m = to_f16_f32(lo);
                let id = if d > 0.0 { 1.0 / d } else { 0.0 };
                put_f16(b, 0, d);
                put_f16(b, 2, m);
                for (c, &v) in codes.iter_mut().zip(xs) {
                    *c = ((v - m) * id).round().clamp(0.0, qmax) as u8;
                }
            } else {
                let half = ((1u32 << (self.bits - 1)) - 1) as f32;
                let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = to_f16_f32(amax / half);
                let id = if d > 0.0 { 1.0 / d } else { 0.0 };
                put_f16(b, 0, d);
                for (c, &v) in codes.iter_mut().zip(xs) {
                    *c = ((v * id).round().clamp(-half, half) + half) as u8;
                }
            }
            pack(&codes, self.bits, &mut b[h..]);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        let h = self.header();
        let half = ((1u32 << (self.bits - 1)) - 1) as f32;
        if self.bits <= 4 {
            // Each group's ≤ 16 levels as a table: the SIMD codebook decode.
            let mut table = [0f32; 16];
            for (b, y) in codes.chunks_exact(self.block_bytes()).zip(out.chunks_exact_mut(self.group)) {
                let d = get_f16(b, 0);
                let (off, m) = if self.asym { (0.0, get_f16(b, 2)) } else { (half, 0.0) };
                for (k, t) in table.iter_mut().enumerate() {
                    *t = (k as f32 - off) * d + m;
                }
                crate::simd::levels_scaled(&b[h..], self.bits, &table[..1 << self.bits], 1.0, y);
            }
            return;
        }
        let mut c = vec![0u8; self.group];
        for (b, y) in codes.chunks_exact(self.block_bytes()).zip(out.chunks_exact_mut(self.group)) {
            unpack(&b[h..], self.bits, &mut c);
            let d = get_f16(b, 0);
            let (off, m) = if self.asym { (0.0, get_f16(b, 2)) } else { (half, 0.0) };
            for (yi, &ci) in y.iter_mut().zip(&c) {
                *yi = (ci as f32 - off) * d + m;
            }
        }
    }
}
