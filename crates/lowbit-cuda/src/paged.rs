//! A paged KV cache on the GPU in lowbit-kv's block layout
//! ([`lowbit_kv::KvLayout`]), filled by the quantize-on-append kernels and
//! read by the decode-attention kernels.
//!
//! A pool of blocks of 32 tokens; a block holds plane K then plane V, each
//! one region per KV head, each region as lowbit-kv's [`PlaneLayout`] for
//! the policy's codec says (f16 or q8_0 rows; turbo: f16 norm | packed
//! Lloyd–Max codes of the rotated unit vector; KIVI keys: 128 × (scale,
//! min) f16 per channel, then 32 rows of b-bit codes; KIVI values:
//! uniform{b}:g32:asym rows) — the bytes lowbit-kv's encoders write. Each
//! sequence has a block table into the pool; its newest tokens may sit in
//! an f16 window of the policy's `window` rows. Several table sets over one
//! pool hold independent caches side by side.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};
use lowbit_kv::codec::PlaneCodec;
use lowbit_kv::{KvLayout, KvShape, PlaneLayout, Policy, Side};

pub use crate::codec::{AttnKernel, KvCodec, TcShape, BLOCK_TOKENS, GROUP, HEAD_DIM};
use crate::codec::f16_fit;
use crate::device::Gpu;
use crate::error::{CudaError, Result};

const NT: u32 = 128;

pub struct GpuKv<'g> {
    gpu: &'g Gpu,
    pub codec: KvCodec,
    /// Run decode attention on tensor cores (turbo2/3/4, kivi2).
    pub tensor_cores: bool,
    pub batch: usize,
    pub kv_heads: usize,
    /// Block-table width (blocks per sequence).
    pub max_blocks: usize,
    /// Table sets: independent caches over one pool.
    pub sets: usize,
    /// Key and value regions of one KV head in a block.
    pub planes: [PlaneLayout; 2],
    /// lowbit-kv's encoders for the policy: the CPU reference (`None`: f16).
    pub reference: [Option<Arc<dyn PlaneCodec>>; 2],
    pub layout: KvLayout,
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
    /// A cache of `batch` sequences of `shape` (head size 128, 4 query
    /// heads per KV head: what the kernels are built for) coded as
    /// `policy` says, with `n_comp` tokens in blocks and `n_win` of the
    /// policy's `window` f16 rows each. `tables` holds `sets` table sets,
    /// each `batch` rows of `n_comp.div_ceil(32)` block ids below
    /// `pool_blocks`.
    pub fn new(gpu: &'g Gpu, shape: KvShape, policy: &Policy, batch: usize, n_comp: usize, n_win: usize, pool_blocks: usize, tables: Vec<i32>) -> Result<Self> {
        let codec = KvCodec::for_policy(policy)?;
        let layout = KvLayout::new(shape, policy)?;
        let (kv_heads, window) = (shape.n_kv_heads, policy.window);
        if shape.head_dim != HEAD_DIM || shape.group() != GROUP || layout.block != BLOCK_TOKENS {
            return Err(CudaError::Shape(format!(
                "the kernels are built for head size {HEAD_DIM}, {GROUP} query heads per KV head and blocks of {BLOCK_TOKENS} tokens, not {}, {} and {}",
                shape.head_dim,
                shape.group(),
                layout.block
            )));
        }
        if batch == 0 || kv_heads == 0 || n_win > window {
            return Err(CudaError::Shape(format!("bad cache shape: batch {batch}, kv heads {kv_heads}, window {n_win}/{window}")));
        }
        let max_blocks = n_comp.div_ceil(BLOCK_TOKENS).max(1);
        let sets = tables.len() / (batch * max_blocks);
        if sets == 0 || tables.len() != sets * batch * max_blocks || tables.iter().any(|&b| b < 0 || b as usize >= pool_blocks) {
            return Err(CudaError::Shape(format!("block tables: {} entries for sets of {batch} × {max_blocks} ids below {pool_blocks}", tables.len())));
        }
        if matches!(codec, KvCodec::Kivi(_)) && n_comp % BLOCK_TOKENS != 0 {
            return Err(CudaError::Shape(format!("KIVI keys are coded per full block of {BLOCK_TOKENS} tokens: {n_comp} tokens leave a partial block (it belongs in the f16 window)")));
        }
        let (k, v) = policy.layer(0);
        let reference = [lowbit_kv::codec::build(k, true, HEAD_DIM, BLOCK_TOKENS)?, lowbit_kv::codec::build(v, false, HEAD_DIM, BLOCK_TOKENS)?];
        let planes = [layout.plane(reference[0].as_deref()), layout.plane(reference[1].as_deref())];
        let block_bytes = kv_heads * (planes[0].region_bytes + planes[1].region_bytes);
        let s = &gpu.stream;
        let pool = s.alloc_zeros::<u8>(pool_blocks * block_bytes)?;
        let (signs, levels, bounds, mass) = match (codec, reference[1].as_ref().and_then(|c| c.rotation())) {
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
        let win_host = vec![0u16; batch * 2 * kv_heads * window * HEAD_DIM];
        Ok(GpuKv {
            gpu,
            codec,
            tensor_cores: false,
            batch,
            kv_heads,
            max_blocks,
            sets,
            planes,
            reference,
            layout,
            block_bytes,
            pool,
            table: s.clone_htod(&tables)?,
            table_host: tables,
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

    /// Set the f16 window rows ([batch][K, V][kv_heads][window][128] f16 bits).
    pub fn set_window(&mut self, rows: Vec<u16>) -> Result<()> {
        if rows.len() != self.win_host.len() {
            return Err(CudaError::Shape(format!("window: {} values, the cache holds {}", rows.len(), self.win_host.len())));
        }
        self.gpu.stream.memcpy_htod(&rows, &mut self.win)?;
        self.win_host = rows;
        Ok(())
    }

    /// Quantize `t` new rows per sequence ([batch][t][kv_heads][128] f32 on
    /// the device) into plane `side` of table set `set`, at positions
    /// `pos0`.. of every sequence.
    pub fn append(&mut self, set: usize, side: Side, x: &CudaSlice<f32>, t: usize, pos0: usize) -> Result<()> {
        let plane = side as i32;
        let rows = self.batch * t * self.kv_heads;
        if x.len() < rows * HEAD_DIM || pos0 + t > self.max_blocks * BLOCK_TOKENS || set >= self.sets {
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
        let table = self.table.slice(set * self.batch * self.max_blocks..);
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
    /// blocks per multiprocessor so memory latency is
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
            return (16 * self.gpu.sms).div_ceil(heads).clamp(1, most);
        }
        let warps = self.codec.tc_kernel(heads).1.warps as f64;
        let cost = |s: usize| (heads * s).div_ceil(self.gpu.sms) as f64 * (self.max_blocks.div_ceil(s) as f64 / warps + 2.0);
        (1..=most).fold(1, |best, s| if cost(s) < cost(best) { s } else { best })
    }

    /// Partial-state buffer size for [`GpuKv::attend`].
    pub fn part_len(&self) -> usize {
        let heads = self.kv_heads * GROUP;
        self.batch * heads * (self.splits() + 1) * (HEAD_DIM + 2)
    }

    /// Decode attention of `q` ([batch][kv_heads·4][128] f32) over table
    /// set `set` of the cache into `out` (same shape).
    pub fn attend(&self, set: usize, q: &CudaSlice<f32>, part: &mut CudaSlice<f32>, out: &mut CudaSlice<f32>) -> Result<()> {
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
        if set >= self.sets {
            return Err(CudaError::Shape(format!("table set {set} of {}", self.sets)));
        }
        let table = self.table.slice(set * self.batch * self.max_blocks..);
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
    /// plane `side`, table set `set`: the start of its row, or for a block
    /// codec (KIVI keys) the start of the block's region.
    pub fn row_at(&self, set: usize, b: usize, t: usize, h: usize, side: Side) -> usize {
        let blk = self.table_host[(set * self.batch + b) * self.max_blocks + t / BLOCK_TOKENS] as usize;
        let [k, v] = &self.planes;
        let region = blk * self.block_bytes + self.layout.region_offset(k, v, side, h);
        let p = &self.planes[side as usize];
        if p.per_token {
            region + p.row(t % BLOCK_TOKENS).start
        } else {
            region
        }
    }

    /// Decoded K and V rows of sequence `b`, KV head `h`, table set `set`
    /// (f32, compressed tokens then window rows), from the device bytes
    /// through lowbit-kv's decoders — the CPU reference reads the same data.
    pub fn decoded_rows(&self, pool_host: &[u8], set: usize, b: usize, h: usize) -> [Vec<f32>; 2] {
        let mut out = [Vec::new(), Vec::new()];
        for (side, rows) in Side::BOTH.into_iter().zip(out.iter_mut()) {
            let p = &self.planes[side as usize];
            for b0 in (0..self.n_comp).step_by(BLOCK_TOKENS) {
                let t1 = (b0 + BLOCK_TOKENS).min(self.n_comp);
                let first = self.row_at(set, b, b0, h, side) - if p.per_token { p.row(0).start } else { 0 };
                let region = &pool_host[first..first + p.region_bytes];
                rows.extend(decode_region(self.reference[side as usize].as_deref(), region, t1 - b0));
            }
            let w0 = ((b * 2 + side as usize) * self.kv_heads + h) * self.window * HEAD_DIM;
            rows.extend(self.win_host[w0..w0 + self.n_win * HEAD_DIM].iter().map(|&x| half::f16::from_bits(x).to_f32()));
        }
        out
    }
}

/// Rows 0..n of one KV head's region decoded by lowbit-kv's codec
/// (`None`: f16 rows), rotation undone.
pub fn decode_region(codec: Option<&dyn PlaneCodec>, region: &[u8], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * HEAD_DIM];
    match codec {
        None => {
            for (o, c) in out.iter_mut().zip(region.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        Some(c) => {
            c.decode(region, 0, n, &mut out);
            if let Some(r) = c.rotation() {
                out.chunks_exact_mut(HEAD_DIM).for_each(|row| r.inverse(row));
            }
        }
    }
    out
}
