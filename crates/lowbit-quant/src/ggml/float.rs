//! Plain float storage: F32, F16, BF16 (block of one element).

use crate::bytes::{get_bf16, get_f16, get_f32, put_bf16, put_f16, put_f32};
use crate::codec::Codec;

macro_rules! float_codec {
    ($name:ident, $bytes:expr, $get:ident, $put:ident) => {
        float_codec!($name, $bytes, $get, $put, |codes: &[u8], x: &[f32]| x
            .iter()
            .enumerate()
            .map(|(i, v)| $get(codes, $bytes * i) * v)
            .sum());
    };
    ($name:ident, $bytes:expr, $get:ident, $put:ident, $dot:expr) => {
        pub struct $name;
        impl Codec for $name {
            fn block_elems(&self) -> usize {
                1
            }
            fn block_bytes(&self) -> usize {
                $bytes
            }
            fn encode(&self, x: &[f32], _: Option<&[f32]>, out: &mut [u8]) {
                for (i, &v) in x.iter().enumerate() {
                    $put(out, $bytes * i, v);
                }
            }
            fn decode(&self, codes: &[u8], out: &mut [f32]) {
                for (i, y) in out.iter_mut().enumerate() {
                    *y = $get(codes, $bytes * i);
                }
            }
            fn dot_f32(&self, codes: &[u8], x: &[f32]) -> f32 {
                ($dot)(codes, x)
            }
        }
    };
}

float_codec!(F32, 4, get_f32, put_f32, crate::simd::dot_f32_bytes);
float_codec!(F16, 2, get_f16, put_f16);
float_codec!(Bf16, 2, get_bf16, put_bf16);
