//! Print the PTX that NVRTC makes of lowbit's kernels, for reading the
//! machine code offline (no GPU needed, only libnvrtc):
//!
//! ```sh
//! cargo run --release -p lowbit-cuda --example dump_ptx -- sm_90a > k.ptx
//! ptxas -arch=sm_90a -v k.ptx -o k.cubin      # registers, spills
//! cuobjdump -sass -fun attn_turbo4_tc k.cubin  # SASS (needs nvdisasm)
//! ```
//!
//! (`ptxas`, `cuobjdump` and `nvdisasm` come in the PyPI wheels
//! nvidia-cuda-nvcc, nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm.)

fn main() -> Result<(), lowbit_cuda::CudaError> {
    let arch = std::env::args().nth(1).unwrap_or_else(|| "sm_90a".into());
    print!("{}", lowbit_cuda::device::compile(&arch)?.to_src());
    Ok(())
}
