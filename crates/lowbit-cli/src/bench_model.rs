//! `lowbit bench`: prefill and decode speed of a model, medians of repeats,
//! and peak memory.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::model_args::{mib, peak_rss, ModelArgs};
use crate::timing::median;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Prompt tokens processed in one batch (llama-bench's pp).
    #[arg(long, default_value_t = 512)]
    prefill: usize,
    /// Tokens generated one at a time (llama-bench's tg).
    #[arg(long, default_value_t = 128)]
    decode: usize,
    /// Tokens already in the KV cache before each test (llama-bench's -d):
    /// prefill and decode are timed at that context depth (the depth
    /// itself is filled untimed, once per test).
    #[arg(long, default_value_t = 0)]
    depth: usize,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    threads: usize,
    prefill_tokens: usize,
    decode_tokens: usize,
    depth: usize,
    prefill_tok_s: f64,
    decode_tok_s: f64,
    weight_mib: f64,
    peak_rss_mib: f64,
}

pub fn run(a: Args) -> Result<()> {
    let l = a.model.load()?;
    let m = &l.model;
    let policy = a.model.policy()?;
    anyhow::ensure!(a.prefill > 0 && a.decode > 0, "--prefill and --decode need at least one token each");
    let ctx = a.depth + a.prefill + a.decode + 1;
    anyhow::ensure!(ctx <= m.config.max_seq, "depth + prefill + decode = {} exceeds the model's context {}", ctx - 1, m.config.max_seq);
    // Deterministic pseudo-random tokens, as llama-bench uses.
    let mut rng = lowbit_quant::rng::SplitMix64::new(1);
    let mut random = |n: usize| -> Vec<u32> { (0..n).map(|_| (rng.next_u64() % m.config.vocab as u64) as u32).collect() };
    let (context, tokens) = (random(a.depth), random(a.prefill));
    let filled = || -> Result<Box<dyn lowbit_engine::kv::KvCache>> {
        let mut cache = m.new_cache(&policy, ctx)?;
        if a.depth > 0 {
            m.prefill(&context, 0, cache.as_mut())?;
        }
        Ok(cache)
    };
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for _ in 0..a.repeats.max(1) {
        let mut cache = filled()?;
        let t = Instant::now();
        m.prefill(&tokens, a.depth, cache.as_mut())?;
        pp.push(a.prefill as f64 / t.elapsed().as_secs_f64());
        let mut cache = filled()?;
        let t = Instant::now();
        for i in 0..a.decode {
            m.forward(&tokens[i % tokens.len()..i % tokens.len() + 1], a.depth + i, cache.as_mut(), false)?;
        }
        tg.push(a.decode as f64 / t.elapsed().as_secs_f64());
    }
    let r = Report {
        threads: rayon::current_num_threads(),
        prefill_tokens: a.prefill,
        decode_tokens: a.decode,
        depth: a.depth,
        prefill_tok_s: median(pp),
        decode_tok_s: median(tg),
        weight_mib: l.weight_bytes as f64 / (1 << 20) as f64,
        peak_rss_mib: peak_rss().map(mib).unwrap_or(f64::NAN),
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let at = if r.depth > 0 { format!(" @ d{}", r.depth) } else { String::new() };
        println!(
            "pp{}{at}: {:.1} tok/s   tg{}{at}: {:.1} tok/s   ({} threads, weights {:.1} MiB, peak RSS {:.1} MiB, median of {})",
            r.prefill_tokens, r.prefill_tok_s, r.decode_tokens, r.decode_tok_s, r.threads, r.weight_mib, r.peak_rss_mib, a.repeats
        );
    }
    Ok(())
}
