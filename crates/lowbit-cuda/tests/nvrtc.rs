//! The kernels compile with NVRTC where libnvrtc is found (no GPU needed);
//! without a GPU driver, opening the device is an error, never a panic.

use lowbit_cuda::{device, CudaError, Gpu, KvCodec};

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
        for k in ["attn_turbo4", "attn_turbo3", "attn_turbo2", "attn_q8_0", "attn_f16", "attn_window_f16", "attn_combine", "quant_turbo4", "quant_q8_0", "fill_normal"] {
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

#[test]
fn codec_names_and_row_bytes() {
    assert_eq!(KvCodec::parse("turbo4").unwrap().token_bytes(), 66);
    assert_eq!(KvCodec::parse("turbo3").unwrap().token_bytes(), 50);
    assert_eq!(KvCodec::parse("q8_0").unwrap().token_bytes(), 136);
    assert_eq!(KvCodec::parse("f16").unwrap().token_bytes(), 256);
    assert!(KvCodec::parse("kivi2").unwrap_err().to_string().contains("turbo4"));
    // The CPU format writes rows of exactly the bytes the kernels read.
    for c in ["f16", "q8_0", "turbo2", "turbo3", "turbo4"] {
        let c = KvCodec::parse(c).unwrap();
        assert_eq!(c.cpu_format().unwrap().encoded_len(128).unwrap(), c.token_bytes(), "{c:?}");
    }
}
