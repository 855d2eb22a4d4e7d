//! What the kernels implement: the KV codecs they read and write (taken
//! from a lowbit-kv [`Policy`], laid out as lowbit-kv's [`PlaneLayout`]s
//! say), the attention kernels per codec, and how the tensor-core kernels
//! are compiled.

use lowbit_kv::{CodecSpec, PlaneLayout, Policy};
use lowbit_quant::FormatId;

use crate::error::{CudaError, Result};

/// Head size the kernels are compiled for.
pub const HEAD_DIM: usize = 128;
/// Query heads per KV head the kernels are built for.
pub const GROUP: usize = 4;
/// Tokens per cache block the kernels are compiled for.
pub const BLOCK_TOKENS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvCodec {
    F16,
    Q8_0,
    Turbo(u32),
    /// Keys per channel over the 32-token block, values per token.
    Kivi(u32),
}

impl KvCodec {
    /// The kernels' codec for a KV policy (the `--kv` grammar of
    /// lowbit-kv): one codec on the keys and values of every layer — f16,
    /// q8_0, turbo2/3/4 or kivi2/4 (group 32) — without +rht, +center,
    /// tiers or a sink. `window=R` is the f16 window's size.
    pub fn for_policy(policy: &Policy) -> Result<KvCodec> {
        let refuse = |why: &str| {
            Err(CudaError::Shape(format!(
                "no CUDA kernels for KV policy `{policy}`: {why}; the GPU backend runs one codec on keys and values: \
                 f16, q8_0, turbo2, turbo3, turbo4, kivi2 or kivi4 (g32), with an optional window=R"
            )))
        };
        if policy.f32_reference || !policy.overrides.is_empty() || !policy.tiers.is_empty() || policy.sink > 0 {
            return refuse("per-layer overrides, tiers, sinks and the f32 reference are CPU-only");
        }
        let one = |c: &CodecSpec| -> Option<KvCodec> {
            match c {
                CodecSpec::F16 => Some(KvCodec::F16),
                CodecSpec::Kivi { bits, group: 32, rht: false } if [2, 4].contains(bits) => Some(KvCodec::Kivi(*bits)),
                CodecSpec::Quant { spec, rht: false, center: false } => {
                    let default = lowbit_quant::spec::Params::default();
                    match spec.row.id {
                        FormatId::Q8_0 => Some(KvCodec::Q8_0),
                        FormatId::TURBO if (2..=4).contains(&spec.params.bits) && spec.params.seed == default.seed => Some(KvCodec::Turbo(spec.params.bits)),
                        _ => None,
                    }
                }
                _ => None,
            }
        };
        let (k, v) = policy.layer(0);
        match (one(k), one(v)) {
            (Some(a), Some(b)) if a == b => Ok(a),
            (Some(_), Some(_)) => refuse("keys and values use different codecs"),
            _ => refuse("a codec without a kernel"),
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

    /// The KV policy this codec implements (its CPU reference).
    pub fn policy(self) -> Policy {
        Policy::parse(&self.name()).unwrap_or_else(|_| Policy::f16())
    }

    /// Where keys and values sit in one KV head's regions of a block: the
    /// layout lowbit-kv's encoders write for this codec at head size 128.
    pub fn planes(self) -> [PlaneLayout; 2] {
        let p = self.policy();
        let (k, v) = p.layer(0);
        let at = |c: &CodecSpec, is_key| match lowbit_kv::codec::build(c, is_key, HEAD_DIM, BLOCK_TOKENS) {
            Ok(Some(codec)) => codec.layout(),
            _ => PlaneLayout::f16(HEAD_DIM, BLOCK_TOKENS),
        };
        [at(k, true), at(v, false)]
    }

    /// Bytes of one KV head's key and value regions in a block.
    pub fn head_block_bytes(self) -> usize {
        self.planes().iter().map(|p| p.region_bytes).sum()
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
    /// The kernel for a KV policy, on tensor cores or CUDA cores.
    pub fn for_policy(policy: &Policy, tensor_cores: bool) -> Result<AttnKernel> {
        let codec = KvCodec::for_policy(policy)?;
        if tensor_cores && !codec.has_tensor_core_kernel() {
            return Err(CudaError::Shape(format!("no tensor-core kernel for `{}` (turbo4, turbo3, turbo2 and kivi2 have one)", codec.name())));
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

/// The factor in [1, 2) that the tensor-core kernels multiply the levels
/// by before rounding them to f16 (and divide out of their sums), from a
/// grid of 65,536: the one minimizing the largest relative rounding error
/// plus 1024 × the mean rounding error under the codebook's own level
/// probabilities `mass` (relative to the levels' rms). The mean error is a
/// bias shared by every token, so it does not average out over a long
/// context as the random part does: with the largest-error fit alone it
/// was 2–3e-5 and the attention error grew from 2.6e-4 at 1K tokens to
/// 1.2e-3 (turbo4) and 2e-3 (turbo3, turbo2) at 64K.
pub(crate) fn f16_fit(levels: &[f32], mass: &[f64]) -> f32 {
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

#[cfg(test)]
mod policy_tests {
    use super::*;

    #[test]
    fn policies_map_to_kernels_and_layouts() {
        let k = |s: &str| KvCodec::for_policy(&Policy::parse(s).unwrap());
        assert_eq!(k("turbo4").unwrap(), KvCodec::Turbo(4));
        assert_eq!(k("kivi2,window=64").unwrap(), KvCodec::Kivi(2));
        assert_eq!(k("k=q8_0,v=q8_0").unwrap(), KvCodec::Q8_0);
        for bad in ["k=turbo4,v=turbo3", "turbo5", "kivi3", "turbo4+center", "turbo4,sink=4", "q4_0", "kivi2:g64", "turbo4,tiers=4@64,2"] {
            let e = k(bad).unwrap_err().to_string();
            assert!(e.contains("no CUDA kernels") && e.contains("turbo4"), "{bad}: {e}");
        }
        // Row bytes of lowbit-kv's layouts: turbo4 = f16 norm + 64 B of codes, q8_0 = 4 × 34, f16 = 256.
        assert_eq!(KvCodec::Turbo(4).planes()[1].row_bytes, 66);
        assert_eq!(KvCodec::Turbo(3).planes()[0].row_bytes, 50);
        assert_eq!(KvCodec::Q8_0.planes()[0].row_bytes, 136);
        assert_eq!(KvCodec::F16.planes()[1].row_bytes, 256);
        // KIVI keys: 128 × (scale, min) f16, then 32 rows of 2-bit codes; values uniform2:g32:asym.
        let [kk, kv] = KvCodec::Kivi(2).planes();
        assert_eq!((kk.header_bytes, kk.region_bytes, kk.per_token), (512, 512 + 32 * 32, false));
        assert_eq!((kv.region_bytes, kv.row_bytes), (32 * 48, 48));
        let t = AttnKernel::for_policy(&Policy::parse("turbo4").unwrap(), true).unwrap();
        assert_eq!((t.function(), t.name()), ("attn_turbo4_tc".into(), "turbo4-tc".into()));
        assert!(AttnKernel::for_policy(&Policy::parse("kivi4").unwrap(), true).unwrap_err().to_string().contains("kivi2"));
    }
}
