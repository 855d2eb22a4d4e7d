//! ggml's block formats, byte-identical to ggml's layouts (`ggml-common.h`)
//! and to candle-core's reference quantizers.

pub mod float;
pub mod iq4_nl;
pub mod kblock;
pub mod legacy;
pub mod q2_k;
pub mod q3_k;
pub mod q45_k;
pub mod q6_k;
pub mod q8_k;
pub mod search;
pub mod ternary;
