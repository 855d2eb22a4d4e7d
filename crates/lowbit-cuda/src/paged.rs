//! A paged KV cache on the GPU in lowbit-kv's block layout, filled by the
//! quantize-on-append kernels and read by the decode-attention kernels.
//!
//! Pool of blocks of 32 tokens; a block holds plane K then plane V, each
//! one region per KV head of 32 token rows (f16, q8_0, or turbo: f16 norm |
//! packed Lloyd–Max codes of the rotated unit vector, the same bytes
//! lowbit-quant's `turbo{b}:d128` writes). KIVI (lowbit-kv's `kivi{b}:g32`):
//! a key region is 128 × (scale, min) f16 per channel, then 32 rows of
//! b-bit codes; value rows are lowbit-quant's `uniform{b}:g32:asym`. Each
//! sequence has a block table; its newest tokens may sit in an f16 window.

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};
use lowbit_quant::rng::SplitMix64;
use lowbit_quant::Format;

use crate::device::Gpu;
use crate::error::{CudaError, Result};

pub const HEAD_DIM: usize = 128;
/// Query heads per KV head the kernels are built for.
pub const GROUP: usize = 4;
pub const BLOCK_TOKENS: usize = 32;
const NT: u32 = 128;
/// Multiprocessors of an H100 SXM (split counts are tuned for it).
const SMS: usize = 132;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvCodec {
    F16,
    Q8_0,
    Turbo(u32),
    /// Keys per channel over the 32-token block, values per token.
    Kivi(u32),
}

impl KvCodec {
    pub fn parse(s: &str) -> Result<KvCodec> {
        match s {
            "f16" => Ok(KvCodec::F16),
            "q8_0" => Ok(KvCodec::Q8_0),
            "turbo2" => Ok(KvCodec::Turbo(2)),
            "turbo3" => Ok(KvCodec::Turbo(3)),
            "turbo4" => Ok(KvCodec::Turbo(4)),
            "kivi2" => Ok(KvCodec::Kivi(2)),
            "kivi4" => Ok(KvCodec::Kivi(4)),
            _ => Err(CudaError::Shape(format!("no CUDA kernels for KV codec `{s}`: expected f16, q8_0, turbo2, turbo3, turbo4, kivi2 or kivi4"))),
        }
    }
    pub fn name(self) -> String {
        match self {
            KvCodec::F16 => "f16".into(),
            KvCodec::Q8_0 => "q8_0".into(),
            KvCodec::Turbo(b) => format!("turbo{b}"),
            KvCodec::Kivi(b) => format!("kivi{b}"),
        }
    }
    /// Bytes of one token row of one KV head (values; keys too except KIVI,
    /// whose key rows are bare codes after a per-channel header).
    pub fn token_bytes(self) -> usize {
        match self {
            KvCodec::F16 => 2 * HEAD_DIM,
            KvCodec::Q8_0 => HEAD_DIM / 32 * 34,
            KvCodec::Turbo(b) => 2 + HEAD_DIM * b as usize / 8,
            KvCodec::Kivi(b) => HEAD_DIM / 32 * (4 + 32 * b as usize / 8),
        }
    }
    /// Bytes of one KV head's key and value regions in a block.
    pub fn head_block_bytes(self) -> usize {
        self.key_region_bytes() + self.value_region_bytes()
    }
    /// Bytes of one KV head's key region in a block.
    pub fn key_region_bytes(self) -> usize {
        match self {
            KvCodec::Kivi(b) => 4 * HEAD_DIM + BLOCK_TOKENS * HEAD_DIM * b as usize / 8,
            c => BLOCK_TOKENS * c.token_bytes(),
        }
    }
    /// Bytes of one KV head's value region in a block.
    pub fn value_region_bytes(self) -> usize {
        BLOCK_TOKENS * self.token_bytes()
    }
    /// The codecs attention_tc.cu has a tensor-core kernel for.
    pub const TENSOR_CORE: [KvCodec; 4] = [KvCodec::Turbo(2), KvCodec::Turbo(3), KvCodec::Turbo(4), KvCodec::Kivi(2)];

    /// Whether attention_tc.cu has a tensor-core kernel for this codec.
    pub fn has_tensor_core_kernel(self) -> bool {
        Self::TENSOR_CORE.contains(&self)
    }
    /// The tensor-core kernels compiled for this codec, by PTX name; the
    /// first serves most launches ([`KvCodec::tc_kernel`]). Measured on
    /// the H100 (docs/cuda_notes.md): turbo4's loop streams at the DRAM's
    /// pace, and with 2 stages the pipeline drains one block sooner at the
    /// end (v28: −3.5 µs at batch 1 × 128K); prefetching the next block
    /// into L2 keeps more bytes in flight (v35: −6% at batch 8 × 128K).
    /// For one sequence (≤ 8 (sequence, KV head) pairs) turbo4 has its own
    /// kernel of 8 warps, 3 stages and no prefetch (v37: 61.8–62.1 µs at
    /// 1 × 128K against 63.1–63.8; 9–10% slower at batch 8). The compute-bound
    /// turbo3 and turbo2 loops keep 3 stages and lost 2–9% with prefetch;
    /// kivi2 (no table lookups, v33) is ~1 µs faster with 2 stages.
    pub fn tc_kernels(self) -> Vec<(String, TcShape)> {
        let name = AttnKernel { codec: self, tensor_cores: true }.function();
        let shape = |warps, stages, prefetch| TcShape { warps, stages, prefetch };
        match self {
            KvCodec::Turbo(4) => vec![(name.clone(), shape(12, 2, 1)), (format!("{name}_w8"), shape(8, 3, 0))],
            KvCodec::Kivi(2) => vec![(name, shape(12, 2, 0))],
            _ => vec![(name, shape(12, 3, 0))],
        }
    }
    /// The tensor-core kernel for a launch over `pairs` (sequence, KV
    /// head) pairs.
    pub fn tc_kernel(self, pairs: usize) -> (String, TcShape) {
        let mut k = self.tc_kernels();
        if k.len() > 1 && pairs <= 8 { k.swap_remove(1) } else { k.swap_remove(0) }
    }
    /// The lowbit-quant format of a (value) row: the CPU reference.
    pub fn cpu_format(self) -> Result<Format> {
        let spec = match self {
            // As lowbit-kv codes turbo tokens (and quantize.cu does).
            KvCodec::Turbo(b) => format!("turbo{b}:d{HEAD_DIM}:fit"),
            KvCodec::Kivi(b) => format!("uniform{b}:g32:asym"),
            c => c.name(),
        };
        Ok(Format::parse(&spec)?)
    }
}

/// How a tensor-core attention kernel is compiled (NVRTC defines per
/// kernel): warps per thread block, cache blocks each warp holds in
/// shared memory (`stages - 1` copies in flight while one is used), and
/// blocks each warp prefetches into L2 past its newest copy (0 = none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcShape {
    pub warps: u32,
    pub stages: u32,
    pub prefetch: u32,
}

impl TcShape {
    /// Dynamic shared memory for blocks of `kv_bytes` of K + V per head:
    /// the lane-private code table (256 rows of 256 B, placed on the first
    /// 64 KB boundary) and each warp's stages (+ 16 B each), below the
    /// table where they fit, else above it. Enough for any start of the
    /// region: one stage of slack for the alignment, and never less than
    /// the table's worst-case end (64 KB - 1 + 64 KB) when every stage fits
    /// below it.
    pub fn shared_bytes(self, kv_bytes: u32) -> u32 {
        (256 * 256 + (self.warps * self.stages + 1) * (kv_bytes + 16)).max(2 * 256 * 256)
    }
}

/// A decode-attention kernel: the codec it reads and whether it runs the
/// products on tensor cores (`turbo4-tc`, `turbo3-tc`, `turbo2-tc`,
/// `kivi2-tc`) or on CUDA cores (`turbo4`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnKernel {
    pub codec: KvCodec,
    pub tensor_cores: bool,
}

impl AttnKernel {
    pub fn parse(s: &str) -> Result<AttnKernel> {
        let (c, tensor_cores) = match s.strip_suffix("-tc") {
            Some(c) => (c, true),
            None => (s, false),
        };
        let codec = KvCodec::parse(c)?;
        if tensor_cores && !codec.has_tensor_core_kernel() {
            return Err(CudaError::Shape(format!("no tensor-core kernel for `{c}` (turbo4-tc, turbo3-tc, turbo2-tc and kivi2-tc exist)")));
        }
        Ok(AttnKernel { codec, tensor_cores })
    }
    pub fn name(self) -> String {
        format!("{}{}", self.codec.name(), if self.tensor_cores { "-tc" } else { "" })
    }
    /// The kernel's name in the PTX.
    pub fn function(self) -> String {
        format!("attn_{}{}", self.codec.name(), if self.tensor_cores { "_tc" } else { "" })
    }
}

pub struct GpuKv<'g> {
    gpu: &'g Gpu,
    pub codec: KvCodec,
    /// Run decode attention on tensor cores (turbo2/3/4, kivi2).
    pub tensor_cores: bool,
    pub batch: usize,
    pub kv_heads: usize,
    /// Block-table width (blocks per sequence).
    pub max_blocks: usize,
    /// Independent copies of the whole cache (timing rotates among them so
    /// the L2 cache does not hold the data).
    pub copies: usize,
    pub block_bytes: usize,
    pub pool: CudaSlice<u8>,
    pub table_host: Vec<i32>,
    table: CudaSlice<i32>,
    pub n_comp: usize,
    n_comp_dev: CudaSlice<i32>,
    pub window: usize,
    pub n_win: usize,
    pub win_host: Vec<u16>,
    win: CudaSlice<u16>,
    n_win_dev: CudaSlice<i32>,
    pub signs: Vec<f32>,
    signs_dev: CudaSlice<f32>,
    levels_dev: CudaSlice<f32>,
    /// The levels × `tc_scale` for the tensor-core kernels, which round them
    /// to f16: the scale that makes them closest to f16 values.
    levels_tc_dev: CudaSlice<f32>,
    tc_scale: f32,
    bounds_dev: CudaSlice<f32>,
}

impl<'g> GpuKv<'g> {
    /// A cache of `batch` sequences with `n_comp` tokens in blocks and
    /// `n_win` of `window` f16 window rows each; block tables are a random
    /// permutation of the pool (so reads really go through the table).
    pub fn new(gpu: &'g Gpu, codec: KvCodec, batch: usize, kv_heads: usize, n_comp: usize, window: usize, n_win: usize, copies: usize, seed: u64) -> Result<Self> {
        if batch == 0 || kv_heads == 0 || copies == 0 || n_win > window {
            return Err(CudaError::Shape(format!("bad cache shape: batch {batch}, kv heads {kv_heads}, copies {copies}, window {n_win}/{window}")));
        }
        if matches!(codec, KvCodec::Kivi(_)) && n_comp % BLOCK_TOKENS != 0 {
            return Err(CudaError::Shape(format!("KIVI keys are coded per full block of {BLOCK_TOKENS} tokens: {n_comp} tokens leave a partial block (it belongs in the f16 window)")));
        }
        let max_blocks = n_comp.div_ceil(BLOCK_TOKENS).max(1);
        let block_bytes = kv_heads * codec.head_block_bytes();
        let nblocks = copies * batch * max_blocks;
        let s = &gpu.stream;
        let pool = s.alloc_zeros::<u8>(nblocks * block_bytes)?;
        let mut perm: Vec<i32> = (0..nblocks as i32).collect();
        let mut rng = SplitMix64::new(seed);
        for i in (1..perm.len()).rev() {
            perm.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        let fmt = codec.cpu_format()?;
        let (signs, levels, bounds, mass) = match (codec, fmt.codec().rotation()) {
            (KvCodec::Turbo(b), Some(r)) => {
                let cb = lowbit_quant::rot::lloyd_max::codebook(lowbit_quant::rot::lloyd_max::Law::UnitSphere(HEAD_DIM), b);
                let signs = r.pow2_signs().ok_or_else(|| CudaError::Shape("turbo rotation is not one power-of-two block".into()))?.to_vec();
                (signs, cb.levels.clone(), cb.bounds.clone(), cb.mass.clone())
            }
            // KIVI: the codes themselves (no kernel reads them: kivi2-tc makes its f16 operands by integer ops).
            (KvCodec::Kivi(_), _) => (vec![1.0; HEAD_DIM], (0..16).map(|c| c as f32).collect(), vec![0.0; 15], vec![]),
            _ => (vec![1.0; HEAD_DIM], vec![0.0; 16], vec![0.0; 15], vec![]),
        };
        let tc_scale = if matches!(codec, KvCodec::Turbo(_)) { f16_fit(&levels, &mass) } else { 1.0 };
        let mut win_host = vec![0u16; batch * 2 * kv_heads * window * HEAD_DIM];
        for (i, w) in win_host.iter_mut().enumerate() {
            *w = half::f16::from_f64(SplitMix64::new(seed ^ 0x5749_4e44 ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).normal()).to_bits();
        }
        Ok(GpuKv {
            gpu,
            codec,
            tensor_cores: false,
            batch,
            kv_heads,
            max_blocks,
            copies,
            block_bytes,
            pool,
            table: s.clone_htod(&perm)?,
            table_host: perm,
            n_comp,
            n_comp_dev: s.clone_htod(&vec![n_comp as i32; batch])?,
            window,
            n_win,
            win: s.clone_htod(&win_host)?,
            win_host,
            n_win_dev: s.clone_htod(&vec![n_win as i32; batch])?,
            signs_dev: s.clone_htod(&signs)?,
            signs,
            levels_dev: s.clone_htod(&levels)?,
            levels_tc_dev: s.clone_htod(&levels.iter().map(|l| l * tc_scale).collect::<Vec<f32>>())?,
            tc_scale,
            bounds_dev: s.clone_htod(&bounds)?,
        })
    }

    /// Quantize `t` new rows per sequence ([batch][t][kv_heads][128] f32 on
    /// the device) into plane `plane` (0 = K, 1 = V) of copy `copy`, at
    /// positions `pos0`.. of every sequence.
    pub fn append(&mut self, copy: usize, plane: i32, x: &CudaSlice<f32>, t: usize, pos0: usize) -> Result<()> {
        let rows = self.batch * t * self.kv_heads;
        if x.len() < rows * HEAD_DIM || pos0 + t > self.max_blocks * BLOCK_TOKENS || copy >= self.copies {
            return Err(CudaError::Shape(format!("append of {t} tokens at {pos0} does not fit the cache")));
        }
        let kivi_keys = matches!(self.codec, KvCodec::Kivi(_)) && plane == 0;
        if kivi_keys && (pos0 % BLOCK_TOKENS != 0 || t % BLOCK_TOKENS != 0) {
            return Err(CudaError::Shape(format!("KIVI keys are appended in whole blocks of {BLOCK_TOKENS} tokens (got {t} at {pos0})")));
        }
        let name = if kivi_keys { format!("quant_{}_keys", self.codec.name()) } else { format!("quant_{}", self.codec.name()) };
        let f = self.gpu.function(&name)?;
        let s = &self.gpu.stream;
        let pos = s.clone_htod(&vec![pos0 as i32; self.batch])?;
        let table = self.table.slice(copy * self.batch * self.max_blocks..);
        let (b, tt, kvh, mb, bb) = (self.batch as i32, t as i32, self.kv_heads as i32, self.max_blocks as i32, self.block_bytes as i64);
        let cfg = if kivi_keys {
            // One thread block per (appended block, KV head, sequence), a thread per channel.
            LaunchConfig { grid_dim: ((t / BLOCK_TOKENS) as u32, self.kv_heads as u32, self.batch as u32), block_dim: (HEAD_DIM as u32, 1, 1), shared_mem_bytes: 0 }
        } else {
            LaunchConfig { grid_dim: (rows.div_ceil(4) as u32, 1, 1), block_dim: (NT, 1, 1), shared_mem_bytes: 0 }
        };
        let mut l = s.launch_builder(&f);
        l.arg(x).arg(&b).arg(&tt).arg(&kvh).arg(&pos).arg(&table).arg(&mb).arg(&mut self.pool).arg(&bb).arg(&plane).arg(&self.signs_dev).arg(&self.bounds_dev).arg(&self.levels_dev);
        // SAFETY: argument list matches quant_* in quantize.cu; sizes checked above.
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// Splits of the block range per (sequence, KV head): about 16 thread
    /// blocks per multiprocessor of an H100 (132) so memory latency is
    /// hidden, but at least 8 cache blocks per split so the merge stays
    /// cheap (measured on the H100: 4-block splits ran slower at batch 1,
    /// 8 blocks per multiprocessor slower at batch 8).
    /// The tensor-core kernel runs one thread block ([`KvCodec::tc_kernel`]) per
    /// multiprocessor; its split count minimizes waves × (cache blocks per
    /// warp + a fixed cost of about 2 for the table, q and the pipeline
    /// start), with ≥ 32 cache blocks per split.
    pub fn splits(&self) -> usize {
        let heads = self.batch * self.kv_heads;
        let most = self.max_blocks.div_ceil(if self.tensor_cores { 32 } else { 8 }).max(1);
        if !self.tensor_cores {
            return (16 * 132usize).div_ceil(heads).clamp(1, most);
        }
        let warps = self.codec.tc_kernel(heads).1.warps as f64;
        let cost = |s: usize| (heads * s).div_ceil(SMS) as f64 * (self.max_blocks.div_ceil(s) as f64 / warps + 2.0);
        (1..=most).fold(1, |best, s| if cost(s) < cost(best) { s } else { best })
    }

    /// Partial-state buffer size for [`GpuKv::attend`].
    pub fn part_len(&self) -> usize {
        let heads = self.kv_heads * GROUP;
        self.batch * heads * (self.splits() + 1) * (HEAD_DIM + 2)
    }

    /// Decode attention of `q` ([batch][kv_heads·4][128] f32) over copy
    /// `copy` of the cache into `out` (same shape).
    pub fn attend(&self, copy: usize, q: &CudaSlice<f32>, part: &mut CudaSlice<f32>, out: &mut CudaSlice<f32>) -> Result<()> {
        let heads = self.kv_heads * GROUP;
        let nsplit = self.splits();
        let bps = self.max_blocks.div_ceil(nsplit) as i32;
        let nparts = nsplit as i32 + 1;
        if q.len() < self.batch * heads * HEAD_DIM || out.len() < self.batch * heads * HEAD_DIM || part.len() < self.part_len() {
            return Err(CudaError::Shape("attention buffers are too small".into()));
        }
        let s = &self.gpu.stream;
        let scale = 1.0 / (HEAD_DIM as f32).sqrt();
        let (kvh, mb, bb) = (self.kv_heads as i32, self.max_blocks as i32, self.block_bytes as i64);
        let table = self.table.slice(copy * self.batch * self.max_blocks..);
        if self.tensor_cores {
            return self.attend_tc(table, nsplit, q, part, out);
        }
        let f = self.gpu.function(&AttnKernel { codec: self.codec, tensor_cores: false }.function())?;
        let cfg = LaunchConfig { grid_dim: (nsplit as u32, self.kv_heads as u32, self.batch as u32), block_dim: (NT, 1, 1), shared_mem_bytes: 0 };
        let mut l = s.launch_builder(&f);
        l.arg(q).arg(&self.pool).arg(&table).arg(&mb).arg(&self.n_comp_dev).arg(&kvh).arg(&bb).arg(&bps).arg(&nparts).arg(&self.levels_dev).arg(&self.signs_dev).arg(&mut *part).arg(&scale);
        // SAFETY: argument list matches attn_* in attention.cu; buffer sizes checked above.
        unsafe { l.launch(cfg) }?;
        let f = self.gpu.function("attn_window_f16")?;
        let r = self.window as i32;
        let cfg = LaunchConfig { grid_dim: (1, self.kv_heads as u32, self.batch as u32), block_dim: (NT, 1, 1), shared_mem_bytes: 0 };
        let mut l = s.launch_builder(&f);
        l.arg(q).arg(&self.win).arg(&self.n_win_dev).arg(&r).arg(&kvh).arg(&nparts).arg(&mut *part).arg(&scale);
        // SAFETY: argument list matches attn_window_f16.
        unsafe { l.launch(cfg) }?;
        let f = self.gpu.function("attn_combine")?;
        let cfg = LaunchConfig { grid_dim: (heads as u32, self.batch as u32, 1), block_dim: (NT, 1, 1), shared_mem_bytes: 0 };
        let turbo = matches!(self.codec, KvCodec::Turbo(_));
        let mut l = s.launch_builder(&f);
        let null: u64 = 0;
        l.arg(&*part).arg(&nparts);
        if turbo {
            l.arg(&self.signs_dev);
        } else {
            l.arg(&null);
        }
        l.arg(out);
        // SAFETY: argument list matches attn_combine (a null signs pointer = no rotation).
        unsafe { l.launch(cfg) }?;
        Ok(())
    }

    /// The tensor-core path: the splits ([`KvCodec::tc_kernel`], `nsplit`
    /// partial states per head), then one kernel for the window and the merge.
    fn attend_tc(&self, table: cudarc::driver::CudaView<i32>, nsplit: usize, q: &CudaSlice<f32>, part: &mut CudaSlice<f32>, out: &mut CudaSlice<f32>) -> Result<()> {
        let s = &self.gpu.stream;
        let scale = 1.0 / (HEAD_DIM as f32).sqrt();
        let (kvh, mb, bb, ns, r) = (self.kv_heads as i32, self.max_blocks as i32, self.block_bytes as i64, nsplit as i32, self.window as i32);
        let bps = self.max_blocks.div_ceil(nsplit) as i32;
        if !self.codec.has_tensor_core_kernel() {
            return Err(CudaError::Shape(format!("no tensor-core attention for {}", self.codec.name())));
        }
        // KIVI is not rotated: no signs (a null pointer), for the finish kernel too.
        let (sp, _gs) = self.signs_dev.device_ptr(s);
        let sp = if matches!(self.codec, KvCodec::Kivi(_)) { 0 } else { sp };
        let (name, shape) = self.codec.tc_kernel(self.batch * self.kv_heads);
        let f = self.gpu.function(&name)?;
        let kv = self.codec.head_block_bytes() as u32;
        let cfg = LaunchConfig { grid_dim: (nsplit as u32, self.kv_heads as u32, self.batch as u32), block_dim: (32 * shape.warps, 1, 1), shared_mem_bytes: shape.shared_bytes(kv) };
        let mut l = s.launch_builder(&f);
        l.arg(q).arg(&self.pool).arg(&table).arg(&mb).arg(&self.n_comp_dev).arg(&kvh).arg(&bb).arg(&bps).arg(&ns).arg(&self.levels_tc_dev).arg(&sp).arg(&mut *part).arg(&scale).arg(&self.tc_scale);
        // SAFETY: argument list matches attn_{turbo2,turbo3,turbo4,kivi2}_tc in attention_tc.cu; the caller checked the buffer sizes.
        unsafe { l.launch(cfg) }?;
        let f = self.gpu.function("attn_finish_tc")?;
        let cfg = LaunchConfig { grid_dim: (self.kv_heads as u32, self.batch as u32, 1), block_dim: ((GROUP * HEAD_DIM) as u32, 1, 1), shared_mem_bytes: crate::device::FINISH_SHARED };
        // The programmatic dependent of the attention kernel: its window
        // part overlaps the splits (attention_tc.cu).
        use crate::device::Arg::{F32, I32, Ptr};
        let (qp, _gq) = q.device_ptr(s);
        let (pp, _gp) = part.device_ptr(s);
        let (wp, _gw) = self.win.device_ptr(s);
        let (np, _gn) = self.n_win_dev.device_ptr(s);
        let (op, _go) = out.device_ptr_mut(s);
        let args = [Ptr(qp), Ptr(pp), I32(ns), Ptr(sp), Ptr(wp), Ptr(np), I32(r), F32(scale), Ptr(op)];
        // SAFETY: matches attn_finish_tc (const float* q, const float* part,
        // int nsplit, const float* signs, const u16* win, const int* n_win,
        // int R, float attn_scale, float* out); the caller checked the sizes.
        unsafe { self.gpu.launch_dependent(&f, cfg, &args) }?;
        Ok(())
    }

    /// Bytes the attention kernels read per call: every block region of
    /// both planes (partial last blocks included), the window rows, q.
    pub fn bytes_read(&self) -> usize {
        let nblk = self.n_comp.div_ceil(BLOCK_TOKENS);
        self.batch * (nblk * self.block_bytes + 2 * self.kv_heads * self.n_win * 2 * HEAD_DIM + self.kv_heads * GROUP * HEAD_DIM * 4 + nblk * 4)
    }

    /// Byte offset in the pool of token `t` of sequence `b`, KV head `h`,
    /// plane `plane` (0 = K, 1 = V), copy `copy`: the start of its row, or
    /// for KIVI keys (coded per block) the start of the block's key region.
    pub fn row_at(&self, copy: usize, b: usize, t: usize, h: usize, plane: usize) -> usize {
        let blk = self.table_host[(copy * self.batch + b) * self.max_blocks + t / BLOCK_TOKENS] as usize;
        let (rk, rv) = (self.codec.key_region_bytes(), self.codec.value_region_bytes());
        let base = blk * self.block_bytes;
        match (self.codec, plane) {
            (KvCodec::Kivi(_), 0) => base + h * rk,
            (_, 0) => base + h * rk + (t % BLOCK_TOKENS) * self.codec.token_bytes(),
            _ => base + self.kv_heads * rk + h * rv + (t % BLOCK_TOKENS) * self.codec.token_bytes(),
        }
    }

    /// Decoded K and V rows of sequence `b`, KV head `h`, copy `copy` (f32,
    /// compressed tokens then window rows), from the device bytes through
    /// lowbit-quant's decoder — the CPU reference reads the same data.
    pub fn decoded_rows(&self, pool_host: &[u8], copy: usize, b: usize, h: usize) -> Result<[Vec<f32>; 2]> {
        let fmt = self.codec.cpu_format()?;
        let (tb, rk) = (self.codec.token_bytes(), self.codec.key_region_bytes());
        let mut out = [Vec::new(), Vec::new()];
        for (p, rows) in out.iter_mut().enumerate() {
            for t in 0..self.n_comp {
                let at = self.row_at(copy, b, t, h, p);
                match (self.codec, p) {
                    (KvCodec::Kivi(bits), 0) => rows.extend(kivi_key_row(&pool_host[at..at + rk], t % BLOCK_TOKENS, bits)),
                    _ => rows.extend(fmt.decode(&pool_host[at..at + tb], HEAD_DIM)?),
                }
            }
            let w0 = ((b * 2 + p) * self.kv_heads + h) * self.window * HEAD_DIM;
            rows.extend(self.win_host[w0..w0 + self.n_win * HEAD_DIM].iter().map(|&x| half::f16::from_bits(x).to_f32()));
        }
        Ok(out)
    }
}

/// Row `t` of a KIVI key region decoded (code · scale + min per channel,
/// f16 constants): the layout lowbit-kv's KIVI keys write.
pub fn kivi_key_row(region: &[u8], t: usize, bits: u32) -> Vec<f32> {
    let f16_at = |i: usize| half::f16::from_le_bytes([region[i], region[i + 1]]).to_f32();
    let rb = HEAD_DIM * bits as usize / 8;
    let row = &region[4 * HEAD_DIM + t * rb..][..rb];
    let mut codes = vec![0u8; HEAD_DIM];
    lowbit_quant::bitpack::unpack(row, bits, &mut codes);
    codes.iter().enumerate().map(|(c, &k)| k as f32 * f16_at(4 * c) + f16_at(4 * c + 2)).collect()
}

/// A KIVI key region coded on the CPU (as lowbit-kv's KIVI keys do):
/// per channel s = f16((max − min)/(2^b − 1)), m = f16(min), code =
/// round((x − m)/s); `x` holds 32 rows of 128.
pub fn kivi_key_region(x: &[f32], bits: u32) -> Vec<u8> {
    let qmax = ((1u32 << bits) - 1) as f32;
    let rb = HEAD_DIM * bits as usize / 8;
    let mut out = vec![0u8; 4 * HEAD_DIM + BLOCK_TOKENS * rb];
    let mut codes = vec![0u8; BLOCK_TOKENS * HEAD_DIM];
    for c in 0..HEAD_DIM {
        let col = x.chunks_exact(HEAD_DIM).map(|r| r[c]);
        let (lo, hi) = col.fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        let s = half::f16::from_f32((hi - lo) / qmax);
        let m = half::f16::from_f32(lo);
        out[4 * c..4 * c + 2].copy_from_slice(&s.to_le_bytes());
        out[4 * c + 2..4 * c + 4].copy_from_slice(&m.to_le_bytes());
        let (sf, mf) = (s.to_f32(), m.to_f32());
        for t in 0..BLOCK_TOKENS {
            let q = if sf > 0.0 { ((x[t * HEAD_DIM + c] - mf) / sf).round() } else { 0.0 };
            codes[t * HEAD_DIM + c] = q.clamp(0.0, qmax) as u8;
        }
    }
    for (t, row) in out[4 * HEAD_DIM..].chunks_exact_mut(rb).enumerate() {
        lowbit_quant::bitpack::pack(&codes[t * HEAD_DIM..(t + 1) * HEAD_DIM], bits, row);
    }
    out
}

/// The factor in [1, 2) that the tensor-core kernels multiply the levels
/// by before rounding them to f16 (and divide out of their sums), from a
/// grid of 65,536: the one minimizing the largest relative rounding error
/// plus 1024 × the mean rounding error under the codebook's own level
/// probabilities `mass` (relative to the levels' rms). The mean error is a
/// bias shared by every token, so it does not average out over a long
/// context as the random part does: with the largest-error fit alone it
/// was 2–3e-5 and the attention error grew from 2.6e-4 at 1K tokens to
/// 1.2e-3 (turbo4) and 2e-3 (turbo3, turbo2) at 64K (cuda_notes.md, v32).
fn f16_fit(levels: &[f32], mass: &[f64]) -> f32 {
    let rms = level_rms(levels, mass);
    let cost = |s: f32| f16_rounding(levels, s) as f64 + 1024.0 * f16_bias(levels, mass, s).abs() / rms;
    (0..1u32 << 16).map(|m| 1.0 + m as f32 / 65536.0).map(|s| (s, cost(s))).fold((1.0, f64::INFINITY), |best, x| if x.1 < best.1 { x } else { best }).0
}

/// The rms of `levels` under their probabilities `mass`.
fn level_rms(levels: &[f32], mass: &[f64]) -> f64 {
    levels.iter().zip(mass).map(|(&l, m)| m * (l as f64).powi(2)).sum::<f64>().sqrt()
}

/// The mean error of rounding `levels`·s to f16 (divided by s), weighted by `mass`.
fn f16_bias(levels: &[f32], mass: &[f64], s: f32) -> f64 {
    levels.iter().zip(mass).map(|(&l, m)| m * (half::f16::from_f32(l * s).to_f32() as f64 / s as f64 - l as f64)).sum()
}

/// The largest relative error of rounding `levels`·s to f16 (zero levels aside).
fn f16_rounding(levels: &[f32], s: f32) -> f32 {
    levels.iter().filter(|l| **l != 0.0).map(|&l| ((half::f16::from_f32(l * s).to_f32() - l * s) / (l * s)).abs()).fold(0f32, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lowbit_quant::rot::lloyd_max::{codebook, Law};

    #[test]
    fn level_scale_keeps_the_f16_levels_close_and_unbiased() {
        for bits in [2, 3, 4] {
            let cb = codebook(Law::UnitSphere(HEAD_DIM), bits);
            let rms = level_rms(&cb.levels, &cb.mass);
            let s = f16_fit(&cb.levels, &cb.mass);
            let (err, bias) = (f16_rounding(&cb.levels, s), f16_bias(&cb.levels, &cb.mass, s) / rms);
            let (err1, bias1) = (f16_rounding(&cb.levels, 1.0), f16_bias(&cb.levels, &cb.mass, 1.0) / rms);
            eprintln!("turbo{bits}: scale {s}, largest f16 rounding error {err1:.2e} → {err:.2e}, mean {bias1:+.2e} → {bias:+.2e}");
            assert!((1.0..2.0).contains(&s));
            assert!(err < 4e-4 && bias.abs() < 1e-6, "turbo{bits}: {err} {bias}");
        }
    }

    #[test]
    fn tensor_core_shared_memory_fits_the_layout_wherever_it_starts() {
        // attention_tc.cu: the table at the first 64 KB boundary, `below`
        // bytes in; as many stage slots as fit below it, the rest above.
        for codec in KvCodec::TENSOR_CORE {
            let kv = codec.head_block_bytes() as u32;
            for warps in [4, 8, 12, 16] {
                for stages in 1..=4 {
                    let shape = TcShape { warps, stages, prefetch: 0 };
                    let (alloc, slot, slots) = (shape.shared_bytes(kv), kv + 16, warps * stages);
                    for below in (0..65536).step_by(16) {
                        let above = slots.saturating_sub(below / slot);
                        assert!(below + 65536 + above * slot <= alloc, "{codec:?}, {warps} warps, {stages} stages, table {below} B in");
                    }
                }
            }
        }
    }
}
