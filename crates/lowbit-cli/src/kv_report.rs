//! `lowbit kv-report`: what a KV policy costs in memory for a model at a
//! context length — bytes per token per layer by part, bits per element
//! and the compression ratio against f16, every overhead counted.

use anyhow::Result;
use lowbit_kv::{PagedCache, Policy};
use serde::Serialize;

use crate::model_args::ModelArgs;

#[derive(clap::Args)]
#[command(after_help = lowbit_kv::policy::GRAMMAR)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// Context length the report is for.
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Layer {
    layer: usize,
    k: String,
    v: String,
    k_codes: f64,
    k_raw: f64,
    v_codes: f64,
    v_raw: f64,
    tables: f64,
    total: f64,
}

#[derive(Serialize)]
struct Report {
    policy: String,
    ctx: usize,
    block_tokens: usize,
    /// Per layer, bytes per token.
    layers: Vec<Layer>,
    bytes_per_token: f64,
    bits_per_element: f64,
    f16_bytes_per_token: f64,
    ratio_vs_f16: f64,
}

pub fn run(a: Args) -> Result<()> {
    let policy: Policy = a.model.policy()?;
    anyhow::ensure!(!policy.f32_reference, "kv-report describes paged policies; f32 is the plain reference ({} bytes per element)", 4);
    anyhow::ensure!(a.ctx > 0, "--ctx must be at least 1");
    let l = a.model.load()?;
    let shape = l.model.kv_shape(a.ctx);
    let cache = PagedCache::new(shape, &policy)?;
    let f16 = PagedCache::new(shape, &Policy::f16())?;
    let per_tok = |b: usize| b as f64 / a.ctx as f64;
    let layers: Vec<Layer> = (0..shape.n_layers)
        .map(|i| {
            let b = cache.layer_bytes_for(i, a.ctx);
            let (k, v) = policy.layer(i);
            Layer {
                layer: i,
                k: k.to_string(),
                v: v.to_string(),
                k_codes: per_tok(b.k_codes),
                k_raw: per_tok(b.k_raw),
                v_codes: per_tok(b.v_codes),
                v_raw: per_tok(b.v_raw),
                tables: per_tok(b.tables),
                total: per_tok(b.total()),
            }
        })
        .collect();
    let total = per_tok(cache.bytes_for(a.ctx));
    let f16_total = per_tok(f16.bytes_for(a.ctx));
    let elems = (2 * shape.n_layers * shape.kv_dim()) as f64;
    let r = Report {
        policy: policy.to_string(),
        ctx: a.ctx,
        block_tokens: cache.block_tokens(),
        layers,
        bytes_per_token: total,
        bits_per_element: total * 8.0 / elems,
        f16_bytes_per_token: f16_total,
        ratio_vs_f16: f16_total / total,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!("policy {}  ctx {}  blocks of {} tokens  (bytes per token)", r.policy, r.ctx, r.block_tokens);
    println!("{:>5} {:<14} {:<14} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9}", "layer", "k", "v", "k codes", "k raw", "v codes", "v raw", "tables", "total");
    for x in &r.layers {
        println!(
            "{:>5} {:<14} {:<14} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7.2} {:>9.1}",
            x.layer, x.k, x.v, x.k_codes, x.k_raw, x.v_codes, x.v_raw, x.tables, x.total
        );
    }
    println!(
        "total {:.1} bytes/token ({:.3} bits per KV element), f16 {:.1} bytes/token: {:.2}x smaller",
        r.bytes_per_token, r.bits_per_element, r.f16_bytes_per_token, r.ratio_vs_f16
    );
    Ok(())
}
