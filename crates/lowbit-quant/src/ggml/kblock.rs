//! The common shape of every k-quant super-block once unpacked: 256 small
//! integers, an integer scale and min per 16 elements, two float factors.
//! value[i] = d * scale[i/16] * q[i] - dmin * min[i/16].
//!
//! Decoding and the Q8_K dot product of every k-quant are written once over
//! this shape; this is the scalar reference the SIMD kernels are tested
//! against.

use crate::bytes::{get_f32, get_i16};

pub const QK_K: usize = 256;
/// Q8_K block: d:f32 | qs:i8[256] | bsums:i16[16].
pub const Q8K_BYTES: usize = 292;

pub struct KBlock {
    pub d: f32,
    pub dmin: f32,
    pub q: [i8; QK_K],
    pub scale: [i32; 16],
    pub min: [i32; 16],
}

impl KBlock {
    pub fn new(d: f32, dmin: f32) -> Self {
        KBlock { d, dmin, q: [0; QK_K], scale: [0; 16], min: [0; 16] }
    }

    pub fn decode(&self, y: &mut [f32]) {
        for (i, yi) in y.iter_mut().enumerate().take(QK_K) {
            let s = i / 16;
            *yi = self.d * self.scale[s] as f32 * self.q[i] as f32 - self.dmin * self.min[s] as f32;
        }
    }

    /// Dot with 256 floats: Σ_s d·scale_s·Σ q·x − dmin·min_s·Σ x.
    pub fn dot_f32(&self, x: &[f32]) -> f32 {
        let mut sum = 0f32;
        for s in 0..16 {
            let xs = &x[16 * s..16 * s + 16];
            let qx: f32 = xs.iter().zip(&self.q[16 * s..16 * s + 16]).map(|(v, &q)| v * q as f32).sum();
            let sx: f32 = xs.iter().sum();
            sum += self.d * self.scale[s] as f32 * qx - self.dmin * self.min[s] as f32 * sx;
        }
        sum
    }

    /// Dot with one Q8_K block.
    pub fn dot_q8k(&self, y: &[u8]) -> f32 {
        let yd = get_f32(y, 0);
        let mut isum = 0i32;
        let mut msum = 0i32;
        for s in 0..16 {
            let mut acc = 0i32;
            for i in 16 * s..16 * s + 16 {
                acc += self.q[i] as i32 * y[4 + i] as i8 as i32;
            }
            isum += acc * self.scale[s];
            msum += self.min[s] * get_i16(y, 260 + 2 * s) as i32;
        }
        yd * (self.d * isum as f32 - self.dmin * msum as f32)
    }
}

/// Decode every block of a k-quant through its unpacker.
pub fn decode_with(codes: &[u8], bytes: usize, out: &mut [f32], unpack: impl Fn(&[u8]) -> KBlock) {
    for (b, y) in codes.chunks_exact(bytes).zip(out.chunks_exact_mut(QK_K)) {
        unpack(b).decode(y);
    }
}

/// Dot every block of a k-quant with a Q8_K activation through its unpacker.
pub fn dot_with(codes: &[u8], bytes: usize, act: &[u8], unpack: impl Fn(&[u8]) -> KBlock) -> f32 {
    codes.chunks_exact(bytes).zip(act.chunks_exact(Q8K_BYTES)).map(|(b, y)| unpack(b).dot_q8k(y)).sum()
}

/// Importance weights of one super-block for the imatrix encoders:
/// `w[i] = imp[i] * sqrt(sigma2 + x[i]^2)`, with `sigma2 = factor * mean(x^2)`.
pub fn imatrix_weights(x: &[f32], imp: &[f32], factor: f32) -> [f32; QK_K] {
    let sum_x2: f32 = x.iter().map(|v| v * v).sum();
    let sigma2 = factor * sum_x2 / QK_K as f32;
    let mut w = [0f32; QK_K];
    for i in 0..QK_K {
        w[i] = imp[i] * (sigma2 + x[i] * x[i]).sqrt();
    }
    w
}
