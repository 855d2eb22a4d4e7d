//! `lowbit bench attention`: one decode step's attention for one layer on
//! the CPU, per KV policy and context length, with the speed-up against the
//! f32 reference measured in the same run. Default shape: Llama-3-8B (32
//! query heads, 8 KV heads, head size 128).

use std::time::Instant;

use anyhow::Result;
use lowbit_kv::{new_cache, KvCache, KvShape, Policy};
use serde::Serialize;

use crate::timing::median;

/// KV policies the CPU bench runs when `--kv` is not given.
const CPU_DEFAULT_KV: &str = "f32;f16;q8_0;turbo4;turbo3;kivi2";

#[derive(clap::Args)]
pub struct Args {
    /// Context lengths (tokens in the cache), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "4096,16384,32768")]
    ctx: Vec<usize>,
    /// KV policies, separated by `;` (a policy itself may contain commas).
    /// Default on the CPU: f32;f16;q8_0;turbo4;turbo3;kivi2; on CUDA:
    /// f16;q8_0;turbo4;turbo3;turbo2;kivi4;kivi2.
    #[arg(long, value_delimiter = ';')]
    kv: Vec<String>,
    #[arg(long, default_value_t = 32)]
    heads: usize,
    #[arg(long, default_value_t = 8)]
    kv_heads: usize,
    #[arg(long, default_value_t = 128)]
    head_dim: usize,
    /// Timed attention calls per policy and context (median reported).
    #[arg(long, default_value_t = 15)]
    repeats: usize,
    #[arg(long)]
    json: bool,
    /// `cpu` (this table) or `cuda`: check every GPU kernel against the CPU
    /// reference, then time decode attention on the compressed cache for
    /// batch 1 and 8 at 4K, 32K and 128K tokens (see `--gpu-*` options).
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    gpu: crate::bench_attention_cuda::Args,
}

#[derive(Serialize)]
struct Row {
    ctx: usize,
    policy: String,
    micros: f64,
    speedup_vs_f32: f64,
    cache_mib: f64,
}

#[derive(Serialize)]
struct Report {
    threads: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    rows: Vec<Row>,
}

/// Deterministic rows with a few large channels, like real keys.
fn rows(n: usize, width: usize, seed: u64) -> Vec<f32> {
    let mut rng = lowbit_quant::rng::SplitMix64::new(seed);
    (0..n * width).map(|i| rng.normal() as f32 * if i % width % 37 == 0 { 6.0 } else { 1.0 }).collect()
}

pub fn run(a: Args) -> Result<()> {
    match a.device.as_str() {
        "cpu" => {}
        "cuda" => {
            let kv = if a.kv.is_empty() { crate::bench_attention_cuda::DEFAULT_KV.split(';').map(String::from).collect() } else { a.kv.clone() };
            return crate::bench_attention_cuda::run(&a.gpu, &kv, a.json);
        }
        d => anyhow::bail!("--device must be `cpu` or `cuda`, not `{d}`"),
    }
    let specs: Vec<String> = if a.kv.is_empty() { CPU_DEFAULT_KV.split(';').map(String::from).collect() } else { a.kv.clone() };
    let policies: Vec<Policy> = specs.iter().map(|p| Policy::parse(p)).collect::<Result<_, _>>()?;
    anyhow::ensure!(a.kv_heads > 0 && a.heads % a.kv_heads == 0, "--heads must be a multiple of --kv-heads");
    let mut out_rows = Vec::new();
    for &ctx in &a.ctx {
        let shape = KvShape { n_layers: 1, n_heads: a.heads, n_kv_heads: a.kv_heads, head_dim: a.head_dim, max_seq: ctx };
        let kvd = shape.kv_dim();
        let w = a.heads * a.head_dim;
        let q = rows(1, w, 3);
        let mut caches: Vec<Box<dyn KvCache>> = Vec::new();
        for p in &policies {
            let mut c = new_cache(shape, p)?;
            // Fill in slices so the f32 copies of K and V stay small.
            for t0 in (0..ctx).step_by(4096) {
                let n = 4096.min(ctx - t0);
                c.store(0, t0, &rows(n, kvd, 1 + t0 as u64), &rows(n, kvd, 2 + t0 as u64));
            }
            caches.push(c);
        }
        let mut times = vec![Vec::new(); policies.len()];
        let mut out = vec![0f32; w];
        // Alternate policies inside each repeat so drift hits all alike.
        for r in 0..=a.repeats {
            for (i, c) in caches.iter().enumerate() {
                let t = Instant::now();
                c.attend(0, ctx - 1, &q, &mut out);
                if r > 0 {
                    times[i].push(t.elapsed().as_secs_f64());
                }
            }
        }
        let med: Vec<f64> = times.into_iter().map(median).collect();
        let base = policies.iter().position(|p| p.f32_reference).map(|i| med[i]);
        for ((p, c), m) in policies.iter().zip(&caches).zip(&med) {
            out_rows.push(Row {
                ctx,
                policy: p.to_string(),
                micros: m * 1e6,
                speedup_vs_f32: base.map_or(f64::NAN, |b| b / m),
                cache_mib: c.bytes_for(ctx) as f64 / (1 << 20) as f64,
            });
        }
    }
    let r = Report { threads: rayon::current_num_threads(), heads: a.heads, kv_heads: a.kv_heads, head_dim: a.head_dim, rows: out_rows };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("decode attention, one layer, {} heads / {} KV heads / d {}, {} threads", r.heads, r.kv_heads, r.head_dim, r.threads);
    println!("{:>7} {:<22} {:>11} {:>10} {:>10}", "ctx", "policy", "µs", "vs f32", "cache MiB");
    for x in &r.rows {
        println!("{:>7} {:<22} {:>11.1} {:>9.2}x {:>10.2}", x.ctx, x.policy, x.micros, x.speedup_vs_f32, x.cache_mib);
    }
    Ok(())
}
