//! `lowbit bench attention --device cuda`: glue over lowbit-cuda's check
//! and timings, with an optional baseline (torch SDPA, from
//! `scripts/sdpa_baseline.py`) for speed-ups measured on the same machine.

use anyhow::{Context, Result};
use crate::cuda_bench::{self as bench, Baseline};
use lowbit_cuda::{AttnKernel, Gpu, KvCodec};
use lowbit_kv::Policy;
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    /// Which attention kernels of each `--kv` policy run on the GPU
    /// (comma-separated): `tc` (tensor cores, where the codec has a kernel:
    /// turbo2/3/4, kivi2) and `cuda` (CUDA cores).
    #[arg(long, value_delimiter = ',', default_value = "tc,cuda")]
    gpu_kernels: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    gpu_batch: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "4096,32768,131072")]
    gpu_ctx: Vec<usize>,
    /// f16 recent-window tokens per sequence (the rest sits in blocks).
    #[arg(long, default_value_t = 64)]
    gpu_window: usize,
    /// Timed launches per configuration (median reported).
    #[arg(long, default_value_t = 60)]
    gpu_launches: usize,
    /// Compressed tokens per sequence in the attention check against the
    /// CPU reference (2 sequences; the tensor-core kernels' error depends on
    /// the context — docs/benchmarks.md).
    #[arg(long, default_value_t = 20_010)]
    check_tokens: usize,
    /// JSON from scripts/sdpa_baseline.py: rows with batch, ctx, micros.
    #[arg(long)]
    baseline: Option<std::path::PathBuf>,
}

#[derive(Serialize)]
struct Row {
    codec: String,
    batch: usize,
    ctx: usize,
    micros: f64,
    bytes_read: usize,
    gbps: f64,
    share_of_copy_bandwidth: f64,
    /// A device-to-device copy call moving `bytes_read` (half read, half
    /// written), timed as this row is (µs, launch floor included).
    copy_call_us: f64,
    /// `copy_call_us / micros`: this call's pace against a copy call of its size.
    share_of_copy_call: f64,
    speedup_vs_baseline: Option<f64>,
    speedup_vs_our_f16: Option<f64>,
}

#[derive(Serialize)]
struct Check {
    kernel: String,
    rel_err: f64,
    same_bytes: Option<f64>,
    error_ratio: Option<f64>,
    pass: bool,
}

#[derive(Serialize)]
struct Report {
    device: String,
    arch: String,
    copy_gbps: f64,
    /// An empty kernel timed as each row is (µs): part of every row's time.
    launch_floor_us: f64,
    tolerance: f64,
    checks: Vec<Check>,
    quantize_vectors_per_sec: Vec<(String, f64)>,
    rows: Vec<Row>,
    kernel_registers: Vec<(String, i32, i32)>,
}

fn read_baseline(p: &std::path::Path) -> Result<Baseline> {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)?;
    let mut b = Baseline::new();
    for r in v["rows"].as_array().context("baseline JSON needs a `rows` array")? {
        let get = |k: &str| r[k].as_f64().with_context(|| format!("baseline row without `{k}`"));
        b.insert((get("batch")? as usize, get("ctx")? as usize), get("micros")?);
    }
    Ok(b)
}

/// KV policies the GPU bench runs when `--kv` is not given.
pub const DEFAULT_KV: &str = "f16;q8_0;turbo4;turbo3;turbo2;kivi4;kivi2";

/// The kernels to check and time: per policy, its tensor-core kernel
/// (where one exists and `tc` is asked for), then its CUDA-core kernel.
fn kernels(policies: &[String], which: &[String]) -> Result<Vec<AttnKernel>> {
    for w in which {
        anyhow::ensure!(w == "tc" || w == "cuda", "--gpu-kernels: unknown kernel family `{w}` (expected tc, cuda)");
    }
    let mut out = Vec::new();
    for p in policies {
        let policy = Policy::parse(p).with_context(|| format!("--kv {p}"))?;
        let codec = KvCodec::for_policy(&policy)?;
        if which.iter().any(|w| w == "tc") && codec.has_tensor_core_kernel() {
            out.push(AttnKernel::for_policy(&policy, true)?);
        }
        if which.iter().any(|w| w == "cuda") {
            out.push(AttnKernel::for_policy(&policy, false)?);
        }
    }
    anyhow::ensure!(!out.is_empty(), "no GPU kernel to run for --kv {} and --gpu-kernels {}", policies.join(";"), which.join(","));
    Ok(out)
}

pub fn run(a: &Args, policies: &[String], json: bool) -> Result<()> {
    let codecs = kernels(policies, &a.gpu_kernels)?;
    let baseline = a.baseline.as_deref().map(read_baseline).transpose()?;
    let gpu = Gpu::open()?;
    eprintln!("{} ({}): checking kernels against the CPU reference ...", gpu.name, gpu.arch);
    // Each codec's quantize kernel once, however many attention kernels read it.
    let mut quantized: Vec<KvCodec> = Vec::new();
    for c in codecs.iter().map(|k| k.codec) {
        if !quantized.contains(&c) {
            quantized.push(c);
        }
    }
    let mut kernel_registers = Vec::new();
    // Every compiled kernel of the chosen ones (turbo4-tc has one for a single sequence too).
    let attn = codecs.iter().flat_map(|k| if k.tensor_cores { k.codec.tc_kernels().into_iter().map(|(name, _)| name).collect() } else { vec![k.function()] });
    for k in attn.chain(quantized.iter().map(|c| format!("quant_{}", c.name()))) {
        let f = gpu.function(&k)?;
        kernel_registers.push((k, f.num_regs()?, f.local_size_bytes()?));
    }
    let checks = bench::check(&gpu, &codecs, a.check_tokens)?;
    let copy = bench::copy_bandwidth(&gpu)?;
    let floor = bench::launch_floor(&gpu, a.gpu_launches)?;
    let mut quant = Vec::new();
    for &c in &quantized {
        let r = bench::quant_rate(&gpu, c)?;
        quant.push((r.codec, r.vectors_per_sec));
    }
    let mut rows = Vec::new();
    for &batch in &a.gpu_batch {
        for &ctx in &a.gpu_ctx {
            let mut f16 = None;
            for &c in &codecs {
                eprintln!("timing {} batch {batch} ctx {ctx} ...", c.name());
                let t = bench::time(&gpu, c, batch, ctx, a.gpu_window, a.gpu_launches)?;
                if c.codec == KvCodec::F16 {
                    f16 = Some(t.micros);
                }
                let copy_call = bench::copy_call_micros(&gpu, t.bytes, a.gpu_launches)?;
                rows.push(Row {
                    codec: t.codec,
                    batch,
                    ctx,
                    micros: t.micros,
                    bytes_read: t.bytes,
                    gbps: t.gbps,
                    share_of_copy_bandwidth: t.gbps * 1e9 / copy,
                    copy_call_us: copy_call,
                    share_of_copy_call: copy_call / t.micros,
                    speedup_vs_baseline: baseline.as_ref().and_then(|b| b.get(&(batch, ctx))).map(|b| b / t.micros),
                    speedup_vs_our_f16: f16.map(|f| f / t.micros),
                });
            }
        }
    }
    let failed = checks.iter().filter(|c| !c.pass).count();
    let report = Report {
        device: gpu.name.clone(),
        arch: gpu.arch.clone(),
        copy_gbps: copy / 1e9,
        launch_floor_us: floor,
        tolerance: bench::TOLERANCE,
        checks: checks.into_iter().map(|c| Check { kernel: c.kernel, rel_err: c.rel_err, same_bytes: c.same_bytes, error_ratio: c.error_ratio, pass: c.pass }).collect(),
        quantize_vectors_per_sec: quant,
        rows,
        kernel_registers,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{} ({}), device-to-device copy {:.0} GB/s (read + write, 1 GiB)", report.device, report.arch, report.copy_gbps);
        println!("launch floor: an empty kernel timed like each row below takes {:.1} µs", report.launch_floor_us);
        println!("checks against the CPU reference (relative error ≤ {}):", report.tolerance);
        for c in &report.checks {
            let mut same = c.same_bytes.map_or(String::new(), |s| format!(", identical bytes {:.4}%", 100.0 * s));
            if let Some(r) = c.error_ratio {
                same += &format!(", error vs input {r:.5}x the CPU's");
            }
            println!("  {:<16} {:.2e}{same} {}", c.kernel, c.rel_err, if c.pass { "ok" } else { "FAIL" });
        }
        println!("registers / local bytes: {:?}", report.kernel_registers);
        for (c, v) in &report.quantize_vectors_per_sec {
            println!("  quantize-on-append {c:<7} {:.1} M vectors/s", v / 1e6);
        }
        println!("\"of copy\": of the 1 GiB copy bandwidth; \"copy call\": a copy moving the row's bytes, timed as the row (µs, and the row's pace against it)");
        println!("{:<7} {:>5} {:>7} {:>10} {:>9} {:>8} {:>10} {:>8} {:>11} {:>9}", "codec", "batch", "ctx", "µs", "GB/s", "of copy", "copy call", "of it", "vs baseline", "vs f16");
        for r in &report.rows {
            let sb = r.speedup_vs_baseline.map_or("—".into(), |s| format!("{s:.2}x"));
            let sf = r.speedup_vs_our_f16.map_or("—".into(), |s| format!("{s:.2}x"));
            println!("{:<7} {:>5} {:>7} {:>10.1} {:>9.0} {:>7.0}% {:>10.1} {:>7.0}% {:>11} {:>9}", r.codec, r.batch, r.ctx, r.micros, r.gbps, 100.0 * r.share_of_copy_bandwidth, r.copy_call_us, 100.0 * r.share_of_copy_call, sb, sf);
        }
    }
    anyhow::ensure!(failed == 0, "{failed} kernel check(s) failed");
    Ok(())
}
