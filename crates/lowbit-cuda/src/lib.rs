//! lowbit-cuda: lowbit's NVIDIA backend.
//!
//! Kernels in `.cu` files (embedded with `include_str!`), compiled by NVRTC
//! for the device's architecture (sm_90a on Hopper) once per process:
//! quantize-on-append into a paged KV cache (f16, q8_0, turbo2/3/4,
//! kivi2/4) and split-K decode attention (CUDA cores; tensor cores for
//! turbo2/3/4 and kivi2) that reads the compressed blocks through each
//! sequence's block table, grouped-query heads, any batch, an f16 recent
//! window ([`paged::GpuKv`]). Built on cudarc with dynamic loading: the
//! binary builds without CUDA, and every entry point returns
//! [`CudaError::NoDriver`] / [`CudaError::NoNvrtc`] where the libraries are
//! missing instead of aborting.
//!
//! Takes lowbit-kv's KV policies and block layout, and its encoders as the
//! CPU reference; lowbit-quant's rotation and codebooks. Knows nothing
//! about models, and holds no benchmark or timing code (that lives in
//! lowbit-cli's `bench attention --device cuda`).

pub mod codec;
pub mod device;
pub mod error;
pub mod paged;

pub use device::Gpu;
pub use error::{CudaError, Result};
pub use paged::{AttnKernel, GpuKv, KvCodec, TcShape};
