//! The kernels compile with NVRTC where libnvrtc is found (no GPU needed);
//! without a GPU driver, opening the device is an error, never a panic.

use lowbit_cuda::{device, AttnKernel, CudaError, Gpu, KvCodec};

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

#[test]
fn codec_names_and_row_bytes() {
    assert_eq!(KvCodec::parse("turbo4").unwrap().token_bytes(), 66);
    assert_eq!(KvCodec::parse("turbo3").unwrap().token_bytes(), 50);
    assert_eq!(KvCodec::parse("q8_0").unwrap().token_bytes(), 136);
    assert_eq!(KvCodec::parse("f16").unwrap().token_bytes(), 256);
    assert!(KvCodec::parse("kivi3").unwrap_err().to_string().contains("kivi2"));
    // Tensor-core kernels: turbo4-tc, turbo3-tc, turbo2-tc and kivi2-tc; anything else is a named error.
    let k = AttnKernel::parse("turbo4-tc").unwrap();
    assert_eq!((k.codec, k.tensor_cores, k.function(), k.name()), (KvCodec::Turbo(4), true, "attn_turbo4_tc".into(), "turbo4-tc".into()));
    assert_eq!(AttnKernel::parse("turbo2-tc").unwrap().function(), "attn_turbo2_tc");
    assert_eq!(AttnKernel::parse("q8_0").unwrap().function(), "attn_q8_0");
    assert_eq!(AttnKernel::parse("turbo3-tc").unwrap().function(), "attn_turbo3_tc");
    assert_eq!(AttnKernel::parse("kivi2-tc").unwrap().function(), "attn_kivi2_tc");
    assert!(AttnKernel::parse("kivi4-tc").unwrap_err().to_string().contains("kivi2-tc"));
    // KIVI keys: 128 × (scale, min) f16 + 32 rows of 2-bit codes; values uniform2:g32:asym.
    let k = KvCodec::parse("kivi2").unwrap();
    assert_eq!((k.key_region_bytes(), k.value_region_bytes(), k.token_bytes()), (512 + 32 * 32, 32 * 48, 48));
    // The CPU format writes rows of exactly the bytes the kernels read.
    for c in ["f16", "q8_0", "turbo2", "turbo3", "turbo4", "kivi2", "kivi4"] {
        let c = KvCodec::parse(c).unwrap();
        assert_eq!(c.cpu_format().unwrap().encoded_len(128).unwrap(), c.token_bytes(), "{c:?}");
    }
}

#[test]
fn kivi_key_regions_round_trip_on_the_cpu() {
    use lowbit_cuda::paged::{kivi_key_region, kivi_key_row};
    let x: Vec<f32> = (0..32 * 128).map(|i| ((i * 7919 % 1013) as f32 / 500.0 - 1.0) * (1.0 + (i % 128) as f32 / 32.0)).collect();
    for (bits, tol) in [(2u32, 0.2f32), (4, 0.03)] {
        let r = kivi_key_region(&x, bits);
        assert_eq!(r.len(), 512 + 32 * 128 * bits as usize / 8);
        let mut err = 0f32;
        for t in 0..32 {
            for (a, b) in kivi_key_row(&r, t, bits).iter().zip(&x[t * 128..(t + 1) * 128]) {
                err = err.max((a - b).abs() / (1.0 + (t % 128) as f32 / 32.0));
            }
        }
        // Half a step of the per-channel grid (range ≤ 2·(1 + 127/32)).
        assert!(err < tol * 10.0, "kivi{bits}: max error {err}");
    }
}
