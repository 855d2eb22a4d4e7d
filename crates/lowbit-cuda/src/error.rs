//! Typed errors of the CUDA backend.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CudaError {
    #[error("the CUDA driver library (libcuda.so) was not found: no NVIDIA GPU driver on this machine, or it is not on the library path")]
    NoDriver,
    #[error("the NVRTC library (libnvrtc.so) was not found: put CUDA's lib folder (e.g. site-packages/nvidia/cu13/lib) on LD_LIBRARY_PATH")]
    NoNvrtc,
    #[error("CUDA driver error: {0}")]
    Driver(String),
    #[error("NVRTC could not compile the kernels for {arch}: {log}")]
    Compile { arch: String, log: String },
    #[error("{0}")]
    Shape(String),
    #[error(transparent)]
    Quant(#[from] lowbit_quant::QuantError),
    #[error(transparent)]
    Kv(#[from] lowbit_kv::KvError),
}

impl From<cudarc::driver::DriverError> for CudaError {
    fn from(e: cudarc::driver::DriverError) -> Self {
        CudaError::Driver(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, CudaError>;
