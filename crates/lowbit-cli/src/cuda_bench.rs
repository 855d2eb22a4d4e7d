//! The on-device check and benchmark behind `lowbit bench attention
//! --device cuda`: every kernel against lowbit-kv's CPU encoders and an
//! f64 reference on the same compressed bytes, then CUDA-event timings of
//! decode attention. The caches here are fixtures: block tables shuffled
//! over the pool (so reads really go through the table), several table
//! sets (timing rotates among them so the L2 cache does not hold the
//! data), random window rows.

use std::collections::HashMap;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaFunction, CudaSlice, LaunchConfig, PushKernelArg};
use lowbit_cuda::paged::{decode_region, AttnKernel, GpuKv, KvCodec, BLOCK_TOKENS, GROUP, HEAD_DIM};
use lowbit_cuda::{CudaError, Gpu, Result};
use lowbit_kv::{KvShape, Policy, Side};
use lowbit_quant::rng::SplitMix64;

/// KV heads of every benchmark cache (Llama-3-8B's 8, 4 query heads each).
const KV_HEADS: usize = 8;

/// A fixture cache: `batch` sequences of `n_comp` coded tokens and `n_win`
/// of `window` f16 rows (random), `sets` table sets, each a random
/// permutation of its share of the pool.
#[allow(clippy::too_many_arguments)]
pub fn fixture<'g>(gpu: &'g Gpu, codec: KvCodec, batch: usize, n_comp: usize, window: usize, n_win: usize, sets: usize, seed: u64) -> Result<GpuKv<'g>> {
    let policy = Policy::parse(&format!("{},window={window}", codec.name())).map_err(CudaError::Kv)?;
    let shape = KvShape { n_layers: 1, n_heads: KV_HEADS * GROUP, n_kv_heads: KV_HEADS, head_dim: HEAD_DIM, max_seq: n_comp + window };
    let max_blocks = n_comp.div_ceil(BLOCK_TOKENS).max(1);
    let nblocks = sets * batch * max_blocks;
    let mut perm: Vec<i32> = (0..nblocks as i32).collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..perm.len()).rev() {
        perm.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let mut kv = GpuKv::new(gpu, shape, &policy, batch, n_comp, n_win, nblocks, perm)?;
    let win: Vec<u16> = (0..batch * 2 * KV_HEADS * window * HEAD_DIM)
        .map(|i| half::f16::from_f64(SplitMix64::new(seed ^ 0x5749_4e44 ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).normal()).to_bits())
        .collect();
    kv.set_window(win)?;
    Ok(kv)
}

#[derive(Clone, Debug)]
pub struct Check {
    pub kernel: String,
    pub rel_err: f64,
    /// Share of identical code bytes (quantize checks).
    pub same_bytes: Option<f64>,
    /// Quantize checks: the GPU codes' squared reconstruction error of the
    /// input over the CPU codes' (1 = as good as the CPU encoder).
    pub error_ratio: Option<f64>,
    pub pass: bool,
}

#[derive(Clone, Debug)]
pub struct Timing {
    pub codec: String,
    pub micros: f64,
    pub bytes: usize,
    pub gbps: f64,
}

#[derive(Clone, Debug)]
pub struct QuantRate {
    pub codec: String,
    pub vectors_per_sec: f64,
}

pub const TOLERANCE: f64 = 1e-3;

/// Fill `x` with the deterministic pseudo-normal data of `fill_normal`.
pub fn fill(gpu: &Gpu, x: &mut CudaSlice<f32>, seed: u32) -> Result<()> {
    let f = gpu.function("fill_normal")?;
    let n = x.len() as i64;
    let outlier = 37i32;
    let cfg = LaunchConfig { grid_dim: (1024, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
    let mut l = gpu.stream.launch_builder(&f);
    l.arg(&mut *x).arg(&n).arg(&seed).arg(&outlier);
    // SAFETY: matches fill_normal(float*, i64, u32, int).
    unsafe { l.launch(cfg) }?;
    Ok(())
}

/// Fill every table set of both planes with fresh data, `chunk` tokens at a time.
pub fn fill_cache(gpu: &Gpu, kv: &mut GpuKv, seed: u32) -> Result<()> {
    let chunk = kv.n_comp.clamp(1, 2048);
    let mut x = gpu.stream.alloc_zeros::<f32>(kv.batch * chunk * kv.kv_heads * HEAD_DIM)?;
    let mut s = seed;
    for set in 0..kv.sets {
        for side in Side::BOTH {
            let mut pos = 0;
            while pos < kv.n_comp {
                let t = chunk.min(kv.n_comp - pos);
                s = s.wrapping_add(1);
                fill(gpu, &mut x, s)?;
                kv.append(set, side, &x, t, pos)?;
                pos += t;
            }
        }
    }
    Ok(())
}

fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let (mut e, mut n) = (0f64, 0f64);
    for (g, w) in got.iter().zip(want) {
        if !g.is_finite() {
            return f64::INFINITY;
        }
        e += (*g as f64 - w).powi(2);
        n += w * w;
    }
    (e / n.max(1e-300)).sqrt()
}

/// f64 attention over decoded rows: out[hq] = softmax(q·Kᵀ/√d)·V.
fn reference(kv: &GpuKv, pool: &[u8], set: usize, q: &[f32]) -> Vec<f64> {
    let heads = kv.kv_heads * GROUP;
    let mut out = vec![0f64; kv.batch * heads * HEAD_DIM];
    for b in 0..kv.batch {
        for h in 0..kv.kv_heads {
            let [k, v] = kv.decoded_rows(pool, set, b, h);
            let n = k.len() / HEAD_DIM;
            for g in 0..GROUP {
                let hq = h * GROUP + g;
                let qv = &q[(b * heads + hq) * HEAD_DIM..][..HEAD_DIM];
                let s: Vec<f64> = (0..n).map(|t| k[t * HEAD_DIM..][..HEAD_DIM].iter().zip(qv).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() / (HEAD_DIM as f64).sqrt()).collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let p: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = p.iter().sum();
                let o = &mut out[(b * heads + hq) * HEAD_DIM..][..HEAD_DIM];
                for t in 0..n {
                    for (oi, vi) in o.iter_mut().zip(&v[t * HEAD_DIM..][..HEAD_DIM]) {
                        *oi += p[t] / z * *vi as f64;
                    }
                }
            }
        }
    }
    out
}

fn random_q(n: usize, seed: u64) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..n).map(|_| r.normal() as f32).collect()
}

/// Quantize both planes of table set 0 on the device and compare with
/// lowbit-kv's CPU encoders for the same policy (bytes and decoded values).
fn quant_check(gpu: &Gpu, kv: &mut GpuKv, out: &mut Vec<Check>) -> Result<()> {
    let (codec, batch, kvh, n_comp) = (kv.codec, kv.batch, kv.kv_heads, kv.n_comp);
    let mut x = gpu.stream.alloc_zeros::<f32>(batch * n_comp * kvh * HEAD_DIM)?;
    fill(gpu, &mut x, 11)?;
    kv.append(0, Side::Key, &x, n_comp, 0)?;
    kv.append(0, Side::Value, &x, n_comp, 0)?;
    let xh = gpu.stream.clone_dtoh(&x)?;
    let pool = gpu.stream.clone_dtoh(&kv.pool)?;
    let (mut same, mut total, mut bad) = (0usize, 0usize, 0usize);
    let (mut gpu_dec, mut cpu_dec) = (Vec::new(), Vec::new());
    let (mut gpu_err, mut cpu_err) = (0f64, 0f64);
    let row_of = |b: usize, t: usize, h: usize| &xh[((b * n_comp + t) * kvh + h) * HEAD_DIM..][..HEAD_DIM];
    for b in 0..batch {
        for t in 0..n_comp {
            for h in 0..kvh {
                for side in Side::BOTH {
                    let (layout, cpu_codec) = (kv.planes[side as usize], kv.reference[side as usize].as_deref());
                    // A block codec (KIVI keys) is compared region by region, at the block's first token.
                    if !layout.per_token && t % BLOCK_TOKENS != 0 {
                        continue;
                    }
                    let rows = if layout.per_token { 1 } else { BLOCK_TOKENS };
                    let input: Vec<f32> = (t..t + rows).flat_map(|tt| row_of(b, tt, h).to_vec()).collect();
                    let at = kv.row_at(0, b, t, h, side);
                    // The GPU's bytes and the CPU encoder's for the same input.
                    let (g, cpu): (Vec<u8>, Vec<u8>) = match cpu_codec {
                        None => (pool[at..at + layout.row_bytes].to_vec(), input.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()),
                        Some(c) if layout.per_token => {
                            let mut region = vec![0u8; layout.region_bytes];
                            c.encode(&input, 0, &mut region);
                            (pool[at..at + layout.row_bytes].to_vec(), region[layout.row(0)].to_vec())
                        }
                        Some(c) => {
                            let mut region = vec![0u8; layout.region_bytes];
                            c.encode(&input, 0, &mut region);
                            (pool[at..at + layout.region_bytes].to_vec(), region)
                        }
                    };
                    same += g.iter().zip(&cpu).filter(|(a, b)| a == b).count();
                    total += g.len();
                    // Decode both through lowbit-kv (a lone row sits first in a scratch region).
                    let decode = |bytes: &[u8]| {
                        let mut region = vec![0u8; layout.region_bytes];
                        region[..bytes.len()].copy_from_slice(bytes);
                        decode_region(cpu_codec, &region, rows)
                    };
                    let (gd, cd) = (decode(&g), decode(&cpu));
                    let sq = |d: &[f32]| d.iter().zip(&input).map(|(a, x)| (*a as f64 - *x as f64).powi(2)).sum::<f64>();
                    gpu_err += sq(&gd);
                    cpu_err += sq(&cd);
                    let cdf: Vec<f64> = cd.iter().map(|&v| v as f64).collect();
                    if rel_err(&gd, &cdf) > 1e-2 {
                        bad += 1;
                        if bad <= 3 {
                            eprintln!("{}: {side:?} b {b} t {t} h {h} differs: gpu {:?}… cpu {:?}…", codec.name(), &g[..12.min(g.len())], &cpu[..12.min(cpu.len())]);
                        }
                    }
                    gpu_dec.extend(gd);
                    cpu_dec.extend(cdf);
                }
            }
        }
    }
    let e = rel_err(&gpu_dec, &cpu_dec);
    if bad > 0 {
        eprintln!("{}: {bad} coded rows/regions differ by more than 1%", codec.name());
    }
    let same = same as f64 / total as f64;
    let ratio = gpu_err / cpu_err.max(1e-300);
    // The turbo encoders search codebook stretches (`:fit`): where two
    // stretches code a row almost equally well, last-bit differences in the
    // rotated input pick either — lowbit's own scalar, AVX2 and AVX-512
    // encoders differ on ~0.3% of rows (decoded relative difference 2e-3)
    // for that reason. There the GPU passes if its codes are as good as the
    // CPU's: nearly all bytes identical and the same reconstruction error.
    let near_ties = matches!(codec, KvCodec::Turbo(_)) && same >= 0.999 && ratio <= 1.0 + TOLERANCE;
    out.push(Check { kernel: format!("quant_{}", codec.name()), rel_err: e, same_bytes: Some(same), error_ratio: Some(ratio), pass: e <= TOLERANCE || near_ties });
    Ok(())
}

/// Check quantize-on-append and decode attention of every codec against
/// the CPU on the same bytes: 2 sequences, 8 KV heads, scattered blocks,
/// 40 of 64 window rows. Quantize: 1000 compressed tokens (a partial last
/// block), once per codec. Attention: `tokens` compressed tokens (KIVI:
/// rounded down to whole blocks), the second of two calls on two copies;
/// where a codec has a tensor-core kernel for one sequence
/// ([`KvCodec::tc_kernel`]), also with 1 sequence.
pub fn check(gpu: &Gpu, kernels: &[AttnKernel], tokens: usize) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    let kvh = KV_HEADS;
    // A cache of n compressed tokens per sequence; KIVI keys are coded per
    // full block: whole blocks there.
    let cache = |codec: KvCodec, batch: usize, asked: usize| {
        let n = if matches!(codec, KvCodec::Kivi(_)) { asked / 32 * 32 } else { asked };
        if n == 0 {
            return Err(CudaError::Shape(format!("the check needs at least one compressed block ({asked} tokens)")));
        }
        fixture(gpu, codec, batch, n, 64, 40, 2, 7)
    };
    for (ki, &kernel) in kernels.iter().enumerate() {
        let codec = kernel.codec;
        if !kernels[..ki].iter().any(|k| k.codec == codec) {
            quant_check(gpu, &mut cache(codec, 2, 1000)?, &mut out)?;
        }
        let narrow = kernel.tensor_cores && codec.tc_kernels().len() > 1;
        for batch in if narrow { vec![2, 1] } else { vec![2] } {
            let mut kv = cache(codec, batch, tokens)?;
            kv.tensor_cores = kernel.tensor_cores;
            // Attention check on table set 1.
            fill_cache(gpu, &mut kv, 100)?;
            let heads = kvh * GROUP;
            let qh = random_q(batch * heads * HEAD_DIM, 5);
            let q = gpu.stream.clone_htod(&qh)?;
            let mut part = gpu.stream.alloc_zeros::<f32>(kv.part_len())?;
            let mut o = gpu.stream.alloc_zeros::<f32>(batch * heads * HEAD_DIM)?;
            // A call on set 0 first, so the checked call is a second one:
            // nothing a call leaves behind may change the next.
            kv.attend(0, &q, &mut part, &mut o)?;
            gpu.stream.memcpy_htod(&vec![f32::NAN; o.len()], &mut o)?;
            kv.attend(1, &q, &mut part, &mut o)?;
            let got = gpu.stream.clone_dtoh(&o)?;
            let pool = gpu.stream.clone_dtoh(&kv.pool)?;
            let want = reference(&kv, &pool, 1, &qh);
            let e = rel_err(&got, &want);
            let name = if kernel.tensor_cores { codec.tc_kernel(batch * kvh).0 } else { kernel.function() };
            out.push(Check { kernel: name, rel_err: e, same_bytes: None, error_ratio: None, pass: e <= TOLERANCE });
        }
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Time decode attention (all kernels of one call) with CUDA events:
/// warm-up, then `launches` calls rotating over enough copies of the cache
/// to exceed the L2 cache; the median per call.
pub fn time(gpu: &Gpu, kernel: AttnKernel, batch: usize, ctx: usize, window: usize, launches: usize) -> Result<Timing> {
    let (kvh, codec) = (KV_HEADS, kernel.codec);
    if ctx <= window || launches == 0 || (ctx - window) % 32 != 0 {
        return Err(CudaError::Shape(format!("timing needs ctx > window, (ctx − window) a multiple of 32 and ≥ 1 launch (ctx {ctx}, window {window}, launches {launches})")));
    }
    let n_comp = ctx - window;
    let per_copy = batch * n_comp.div_ceil(BLOCK_TOKENS) * kvh * codec.head_block_bytes();
    let copies = (512usize << 20).div_ceil(per_copy).clamp(1, 64);
    let mut kv = fixture(gpu, codec, batch, n_comp, window, window, copies, 3)?;
    kv.tensor_cores = kernel.tensor_cores;
    fill_cache(gpu, &mut kv, 1000)?;
    let heads = kvh * GROUP;
    let q = gpu.stream.clone_htod(&random_q(batch * heads * HEAD_DIM, 9))?;
    let mut part = gpu.stream.alloc_zeros::<f32>(kv.part_len())?;
    let mut out = gpu.stream.alloc_zeros::<f32>(batch * heads * HEAD_DIM)?;
    for i in 0..10 {
        kv.attend(i % copies, &q, &mut part, &mut out)?;
    }
    let micros = median_call_micros(gpu, launches, |i| kv.attend(i % copies, &q, &mut part, &mut out))?;
    let bytes = kv.bytes_read();
    Ok(Timing { codec: kernel.name(), micros, bytes, gbps: bytes as f64 / micros / 1e3 })
}

/// The launch floor in µs: an empty kernel timed as [`time`] times a call
/// (events around one launch, the median of `launches`), queued behind a
/// 5 ms busy launch so the GPU, not the host, sets the pace — the time a
/// timed call pays besides its kernels' work when the GPU runs calls back
/// to back. The copy bandwidth ([`copy_bandwidth`]) is measured over 1 GiB,
/// where this floor is under 1%; on a 60 µs call it is a few percent.
pub fn launch_floor(gpu: &Gpu, launches: usize) -> Result<f64> {
    let f = gpu.function("launch_floor")?;
    for _ in 0..10 {
        spin(gpu, &f, 0)?;
    }
    spin(gpu, &f, 5_000_000)?;
    median_call_micros(gpu, launches.max(1), |_| spin(gpu, &f, 0))
}

/// One launch of `f`, the `launch_floor` kernel: a single warp that spins
/// for `ns` nanoseconds (0: an empty kernel).
fn spin(gpu: &Gpu, f: &CudaFunction, ns: i64) -> Result<()> {
    let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (32, 1, 1), shared_mem_bytes: 0 };
    let mut l = gpu.stream.launch_builder(f);
    l.arg(&ns);
    // SAFETY: matches launch_floor(long long); it touches no memory.
    unsafe { l.launch(cfg) }?;
    Ok(())
}

/// A device-to-device copy call that moves `bytes` (half read, half
/// written), timed as [`time`] times an attention call that reads `bytes`:
/// events around each call, the median of `launches`, GPU-paced (queued
/// behind a busy launch), rotating over enough buffer to exceed the L2
/// cache. What a call that only moves those bytes takes, floor included.
pub fn copy_call_micros(gpu: &Gpu, bytes: usize, launches: usize) -> Result<f64> {
    let n = (bytes / 2).div_ceil(256) * 256;
    if n == 0 || launches == 0 {
        return Err(CudaError::Shape(format!("a copy call needs bytes > 0 and ≥ 1 launch (bytes {bytes}, launches {launches})")));
    }
    let chunks = (512usize << 20).div_ceil(n).clamp(1, 64);
    let a = gpu.stream.alloc_zeros::<u8>(n * chunks)?;
    let mut b = gpu.stream.alloc_zeros::<u8>(n * chunks)?;
    let mut copy = |i: usize| -> Result<()> {
        let r = (i % chunks) * n..(i % chunks + 1) * n;
        gpu.stream.memcpy_dtod(&a.slice(r.clone()), &mut b.slice_mut(r))?;
        Ok(())
    };
    for i in 0..3 {
        copy(i)?;
    }
    spin(gpu, &gpu.function("launch_floor")?, 5_000_000)?;
    median_call_micros(gpu, launches, copy)
}

/// `call(i)` for i in 0..`launches`, each between two CUDA events, queued
/// without waiting; the median of the event times, in µs.
fn median_call_micros(gpu: &Gpu, launches: usize, mut call: impl FnMut(usize) -> Result<()>) -> Result<f64> {
    let mut events = Vec::with_capacity(launches);
    for i in 0..launches {
        let e0 = gpu.stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        call(i)?;
        let e1 = gpu.stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        events.push((e0, e1));
    }
    gpu.stream.synchronize()?;
    let ms: Vec<f64> = events.iter().map(|(a, b)| a.elapsed_ms(b).map(|v| v as f64)).collect::<std::result::Result<_, _>>()?;
    Ok(median(ms) * 1e3)
}

/// Quantize-on-append rate: 8 sequences × 2048 tokens × 8 KV heads of one
/// plane per call, median of 20 calls.
pub fn quant_rate(gpu: &Gpu, codec: KvCodec) -> Result<QuantRate> {
    let (batch, kvh, t) = (8, KV_HEADS, 2048);
    let mut kv = fixture(gpu, codec, batch, t, 0, 0, 1, 5)?;
    let mut x = gpu.stream.alloc_zeros::<f32>(batch * t * kvh * HEAD_DIM)?;
    fill(gpu, &mut x, 3)?;
    for _ in 0..3 {
        kv.append(0, Side::Key, &x, t, 0)?;
    }
    let mut ms = Vec::new();
    for _ in 0..20 {
        let e0 = gpu.stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        kv.append(0, Side::Key, &x, t, 0)?;
        let e1 = gpu.stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        e1.synchronize()?;
        ms.push(e0.elapsed_ms(&e1)? as f64);
    }
    Ok(QuantRate { codec: codec.name(), vectors_per_sec: (batch * t * kvh) as f64 / (median(ms) / 1e3) })
}

/// Device-to-device copy bandwidth (bytes read + written per second) of a
/// 1 GiB buffer, median of 20 copies.
pub fn copy_bandwidth(gpu: &Gpu) -> Result<f64> {
    let n = 1usize << 30;
    let a = gpu.stream.alloc_zeros::<u8>(n)?;
    let mut b = gpu.stream.alloc_zeros::<u8>(n)?;
    let mut ms = Vec::new();
    for i in 0..23 {
        let e0 = gpu.stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        gpu.stream.memcpy_dtod(&a, &mut b)?;
        let e1 = gpu.stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?;
        e1.synchronize()?;
        if i >= 3 {
            ms.push(e0.elapsed_ms(&e1)? as f64);
        }
    }
    Ok(2.0 * n as f64 / (median(ms) / 1e3))
}

/// Baseline timings keyed by (batch, ctx), e.g. torch SDPA's µs.
pub type Baseline = HashMap<(usize, usize), f64>;
