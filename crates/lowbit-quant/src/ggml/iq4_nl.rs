//! IQ4_NL: 4.5 bits, 32-element blocks on a fixed non-linear 16-level grid.
//! Layout: d:f16 | qs[16] (element j low nibble, j+16 high nibble).
//! Encoding follows ggml's `quantize_iq4_nl` (the llama-quantize path,
//! ntry = 7 scale trials, optional importance weights).

use crate::bytes::{get_f16, put_f16};
use crate::codec::{Activation, Codec};

pub const KVALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
const NTRY: i32 = 7;

/// Nearest grid index (ties toward the upper level), as ggml's `best_index_int8`.
pub fn best_index(x: f32) -> usize {
    let v = &KVALUES;
    if x <= v[0] as f32 {
        return 0;
    }
    if x >= v[15] as f32 {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < v[mav] as f32 {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - (v[mu - 1] as f32) < (v[mu] as f32) - x {
        mu - 1
    } else {
        mu
    }
}

pub struct Iq4Nl;

fn encode_block(x: &[f32], qw: Option<&[f32]>, b: &mut [u8]) {
    let mut sigma2: f32 = x.iter().map(|v| v * v).sum();
    sigma2 *= 2.0 / 32.0;
    let mut w = [0f32; 32];
    for j in 0..32 {
        w[j] = match qw {
            Some(q) => q[j] * (sigma2 + x[j] * x[j]).sqrt(),
            None => x[j] * x[j],
        };
    }
    b.fill(0);
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < 1e-15 {
        return;
    }
    let v0 = KVALUES[0] as f32;
    let fit = |id: f32| {
        let (mut sqx, mut sq2) = (0f32, 0f32);
        for j in 0..32 {
            let q = KVALUES[best_index(id * x[j])] as f32;
            sqx += w[j] * q * x[j];
            sq2 += w[j] * q * q;
        }
        (sqx, sq2)
    };
    let (sqx, sq2) = fit(-v0 / max);
    let mut d = sqx / sq2;
    let mut best = d * sqx;
    for itry in -NTRY..=NTRY {
        let id = (itry as f32 + v0) / max;
        let (sqx, sq2) = fit(id);
        if sq2 > 0.0 && sqx * sqx > best * sq2 {
            d = sqx / sq2;
            best = d * sqx;
        }
    }
    put_f16(b, 0, d);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for j in 0..16 {
        b[2 + j] = best_index(id * x[j]) as u8 | ((best_index(id * x[j + 16]) as u8) << 4);
    }
}

impl Codec for Iq4Nl {
    fn block_elems(&self) -> usize {
        32
    }
    fn block_bytes(&self) -> usize {
        18
    }
    fn supports_importance(&self) -> bool {
        true
    }
    fn encode(&self, x: &[f32], imp: Option<&[f32]>, out: &mut [u8]) {
        for (i, (xs, b)) in x.chunks_exact(32).zip(out.chunks_exact_mut(18)).enumerate() {
            encode_block(xs, imp.map(|w| &w[32 * i..32 * i + 32]), b);
        }
    }
    fn decode(&self, codes: &[u8], out: &mut [f32]) {
        for (b, y) in codes.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
            let d = get_f16(b, 0);
            for j in 0..16 {
                y[j] = d * KVALUES[(b[2 + j] & 0xF) as usize] as f32;
                y[j + 16] = d * KVALUES[(b[2 + j] >> 4) as usize] as f32;
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
                s += KVALUES[(b[2 + j] & 0xF) as usize] as i32 * y[2 + j] as i8 as i32;
                s += KVALUES[(b[2 + j] >> 4) as usize] as i32 * y[18 + j] as i8 as i32;
            }
            sum += s as f32 * get_f16(b, 0) * get_f16(y, 0);
        }
        sum
    }
}
