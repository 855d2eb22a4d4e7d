//! lowbit-quant: the codec library every other lowbit crate stands on.
//!
//! One table of quantization formats ([`registry::FORMATS`]) — ggml's block
//! formats bit for bit, and the rotation + codebook family (TurboQuant,
//! QJL, PolarQuant), uniform and pi-scaled grids — each with encode,
//! decode and dot kernels: a scalar reference plus AVX2/AVX-512 versions of
//! the hot ones, chosen at run time ([`simd`]). Users pick a format with a
//! spec string parsed in one place ([`Spec`]) and call it through the
//! checked [`Format`] handle, which turns bad input into a [`QuantError`].
//!
//! This crate knows nothing about models, KV caches or files.
//!
//! ```
//! let f = lowbit_quant::Format::parse("q4_k").unwrap();
//! let x: Vec<f32> = (0..256).map(|i| (i as f32 * 0.1).sin()).collect();
//! let codes = f.encode(&x).unwrap();
//! assert_eq!(codes.len(), 144);
//! let y = f.decode(&codes, x.len()).unwrap();
//! assert!((x[3] - y[3]).abs() < 0.05);
//! ```

pub mod bitpack;
mod bytes;
pub mod codec;
pub mod error;
pub mod ggml;
pub mod grid;
pub mod registry;
pub mod rng;
pub mod rot;
pub mod simd;
pub mod spec;

pub use codec::{act_format, Activation, Codec, Format};
pub use error::{QuantError, Result};
pub use registry::{Caps, FormatId, FORMATS};
pub use spec::Spec;
