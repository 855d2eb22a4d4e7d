//! The kernels compile with NVRTC where libnvrtc is found (no GPU needed);
//! without a GPU driver, opening the device is an error, never a panic.

use lowbit_cuda::{device, CudaError, Gpu};

#[test]
fn kernels_compile_for_hopper_where_nvrtc_is_found() {
    if !device::nvrtc_present() {
        eprintln!("SKIPPED: libnvrtc not found on this machine (put CUDA's lib folder on LD_LIBRARY_PATH to run this test)");
        assert!(matches!(device::compile("sm_90a"), Err(CudaError::NoNvrtc)));
        return;
    }
    for arch in ["sm_90a", "sm_80"] {
        let ptx = device::compile(arch).unwrap_or_else(|e| panic!("{e}"));
        let src = ptx.to_src();
        for k in ["attn_turbo4", "attn_turbo4_tc", "attn_turbo4_tc_w8", "attn_turbo3_tc", "attn_turbo2_tc", "attn_kivi2_tc", "attn_finish_tc", "attn_turbo3", "attn_turbo2", "attn_q8_0", "attn_f16", "attn_window_f16", "attn_combine", "quant_turbo4", "quant_q8_0", "attn_kivi2", "attn_kivi4", "quant_kivi2", "quant_kivi2_keys", "quant_kivi4_keys", "fill_normal", "launch_floor"] {
            assert!(src.contains(k), "{arch}: kernel {k} missing from the PTX");
        }
    }
}

#[test]
fn opening_without_a_driver_is_an_error() {
    match Gpu::open() {
        Ok(g) => eprintln!("a GPU is present here: {} ({})", g.name, g.arch),
        Err(e) => {
            eprintln!("no GPU here, as expected on CI: {e}");
            assert!(matches!(e, CudaError::NoDriver | CudaError::NoNvrtc | CudaError::Driver(_)));
        }
    }
}
