//! The device: library checks, context, stream, and the kernels compiled
//! once per architecture by NVRTC (sources embedded with `include_str!`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::error::{CudaError, Result};
use crate::paged::{KvCodec, TcShape};
use lowbit_quant::rot::turbo::{REFINE, STRETCHES, STRETCH_MARGIN};

/// Every kernel source, in dependency order.
pub const SOURCE: [&str; 4] = [include_str!("kernels/common.cuh"), include_str!("kernels/attention.cu"), include_str!("kernels/attention_tc.cu"), include_str!("kernels/quantize.cu")];

/// attn_finish_tc's dynamic shared memory: 64 window rows of K and V
/// (f16), 64 scores and 3 softmax values per head.
pub const FINISH_SHARED: u32 = 64 * 128 * 2 * 2 + 4 * (64 + 3) * 4;

/// Each tensor-core attention kernel's name, codec and shape (passed to
/// NVRTC as `-DNW_<name>`, `-DSTAGES_<name>`, `-DPF_<name>`).
fn tc_kernels() -> impl Iterator<Item = (String, KvCodec, TcShape)> {
    KvCodec::TENSOR_CORE.into_iter().flat_map(|codec| codec.tc_kernels().into_iter().map(move |(name, shape)| (name, codec, shape)))
}

/// The tensor-core kernels' names and dynamic shared memory, and the finish
/// kernel's: the kernels that take more than the default 48 KB.
fn dynamic_shared() -> Vec<(String, u32)> {
    tc_kernels()
        .map(|(name, codec, shape)| (name, shape.shared_bytes(codec.head_block_bytes() as u32)))
        .chain([("attn_finish_tc".to_string(), FINISH_SHARED)]).collect()
}

/// Whether libnvrtc can be loaded (checked before any NVRTC call, which
/// would otherwise abort the process).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to open the shared library.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether libcuda (the driver) can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the shared library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// NVRTC's architecture name for a compute capability: the `a` variant on
/// Hopper (sm_90a), plain otherwise.
pub fn arch_for(major: i32, minor: i32) -> String {
    format!("sm_{major}{minor}{}", if major == 9 { "a" } else { "" })
}

/// Compile all kernels for `arch` (cached for the process).
pub fn compile(arch: &str) -> Result<Ptx> {
    static CACHE: OnceLock<Mutex<HashMap<String, Ptx>>> = OnceLock::new();
    if !nvrtc_present() {
        return Err(CudaError::NoNvrtc);
    }
    let cache = CACHE.get_or_init(Default::default);
    if let Some(p) = cache.lock().unwrap().get(arch) {
        return Ok(p.clone());
    }
    let opts = CompileOptions {
        arch: Some(Box::leak(arch.to_string().into_boxed_str())),
        options: vec![
            "--std=c++17".into(),
            // The turbo encoder's stretch search, as lowbit-quant's.
            format!("-DTURBO_STRETCHES={}", STRETCHES.iter().map(|a| format!("{a:?}f")).collect::<Vec<_>>().join(",")),
            format!("-DTURBO_REFINE={:?}f", REFINE),
            format!("-DTURBO_MARGIN={:?}f", STRETCH_MARGIN),
        ]
        .into_iter()
        .chain(tc_kernels().flat_map(|(name, _, s)| [format!("-DNW_{name}={}", s.warps), format!("-DSTAGES_{name}={}", s.stages), format!("-DPF_{name}={}", s.prefetch)]))
        .collect(),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(SOURCE.concat(), opts).map_err(|e| CudaError::Compile { arch: arch.to_string(), log: e.to_string() })?;
    cache.lock().unwrap().insert(arch.to_string(), ptx.clone());
    Ok(ptx)
}

pub struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    module: Arc<CudaModule>,
    pub name: String,
    pub arch: String,
    /// Multiprocessors (split counts are chosen for them).
    pub sms: usize,
}

impl Gpu {
    /// Open device 0 and load the kernels; an error (never a panic) when
    /// the driver, NVRTC or a GPU is missing.
    pub fn open() -> Result<Gpu> {
        if !driver_present() {
            return Err(CudaError::NoDriver);
        }
        if !nvrtc_present() {
            return Err(CudaError::NoNvrtc);
        }
        let ctx = CudaContext::new(0)?;
        // One stream: cudarc's cross-stream event tracking is not needed.
        unsafe { ctx.disable_event_tracking() };
        let (major, minor) = ctx.compute_capability()?;
        let arch = arch_for(major, minor);
        let module = ctx.load_module(compile(&arch)?)?;
        for (name, bytes) in dynamic_shared() {
            // With the static shared memory this passes the default 48 KB limit.
            module.load_function(&name)?.set_attribute(cudarc::driver::sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes as i32)?;
        }
        let sms = ctx.attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as usize;
        Ok(Gpu { stream: ctx.default_stream(), name: ctx.name()?, ctx, module, arch, sms })
    }

    pub fn function(&self, name: &str) -> Result<CudaFunction> {
        Ok(self.module.load_function(name)?)
    }

    /// Launch `f` as the programmatic dependent of the kernel before it on
    /// the stream (CUDA's programmatic dependent launch, sm_90+): its
    /// blocks may start once every block of that kernel has executed
    /// `griddepcontrol.launch_dependents`, and must execute
    /// `griddepcontrol.wait` before reading what that kernel writes.
    ///
    /// # Safety
    /// `args` match the kernel's parameters one for one, in type and order,
    /// and every pointer is a live device allocation of the size the kernel
    /// uses.
    pub unsafe fn launch_dependent(&self, f: &CudaFunction, cfg: cudarc::driver::LaunchConfig, args: &[Arg]) -> Result<()> {
        use cudarc::driver::sys;
        let mut values = args.to_vec();
        let mut ptrs: Vec<*mut std::ffi::c_void> = values
            .iter_mut()
            .map(|a| match a {
                Arg::Ptr(v) => v as *mut u64 as *mut _,
                Arg::I32(v) => v as *mut i32 as *mut _,
                Arg::F32(v) => v as *mut f32 as *mut _,
            })
            .collect();
        let mut attr: sys::CUlaunchAttribute = std::mem::zeroed();
        attr.id = sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: cfg.grid_dim.0,
            gridDimY: cfg.grid_dim.1,
            gridDimZ: cfg.grid_dim.2,
            blockDimX: cfg.block_dim.0,
            blockDimY: cfg.block_dim.1,
            blockDimZ: cfg.block_dim.2,
            sharedMemBytes: cfg.shared_mem_bytes,
            hStream: self.stream.cu_stream(),
            attrs: &mut attr,
            numAttrs: 1,
        };
        self.ctx.bind_to_thread()?;
        sys::cuLaunchKernelEx(&config, f.cu_function(), ptrs.as_mut_ptr(), std::ptr::null_mut()).result()?;
        Ok(())
    }
}

/// A kernel parameter for [`Gpu::launch_dependent`]: a device pointer or a
/// scalar, by value.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    Ptr(u64),
    I32(i32),
    F32(f32),
}
