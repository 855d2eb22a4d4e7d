//! `lowbit`: the command-line face of lowbit. Argument parsing and glue
//! only; the work lives in the library crates.

use clap::{Parser, Subcommand};

mod bench_attention;
mod bench_attention_cuda;
mod bench_model;
mod cuda_bench;
mod embed;
mod eval;
mod generate;
mod index_cmd;
mod kv_report;
mod model_args;
mod quant_bench;
mod real_weights;
mod timing;

#[derive(Parser)]
#[command(name = "lowbit", version, about = "Low-bit storage for LLM weights, KV caches and vectors")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Measure every format: encode/decode/dot throughput and error on
    /// N(0,1) data and on real model weights.
    QuantBench(quant_bench::Args),
    /// List the format table: spec syntax, presets, bits per element.
    Formats,
    /// Generate text from a prompt (default model: SmolLM2-135M-Instruct).
    Generate(generate::Args),
    /// Measure a model's quality.
    #[command(subcommand)]
    Eval(eval::Cmd),
    /// Prefill and decode speed of a model (`lowbit bench attention`:
    /// attention alone, per KV policy).
    Bench(BenchArgs),
    /// Memory of a KV-cache policy for a model: bytes per token per layer,
    /// bits per element, ratio against f16.
    KvReport(kv_report::Args),
    /// Sentence embeddings (all-MiniLM-L6-v2 by default) to .fvecs.
    Embed(embed::Args),
    /// Compressed vector search: build, search and benchmark indexes.
    #[command(subcommand)]
    Index(index_cmd::Cmd),
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BenchArgs {
    #[command(subcommand)]
    what: Option<BenchWhat>,
    #[command(flatten)]
    model: bench_model::Args,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// One decode step's attention for one layer, per KV policy and context.
    Attention(bench_attention::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Run on a pool thread, so the parallel sections of each decode step
    // start and end on a worker instead of waking a pool from outside (a
    // sleeping main thread costs a wake-up per section, hundreds per token).
    rayon::ThreadPoolBuilder::new().build()?.install(|| dispatch(cli))
}

fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::QuantBench(a) => quant_bench::run(a),
        Cmd::Generate(a) => generate::run(a),
        Cmd::Eval(c) => eval::run(c),
        Cmd::Bench(BenchArgs { what: Some(BenchWhat::Attention(a)), .. }) => bench_attention::run(a),
        Cmd::Bench(BenchArgs { model, .. }) => bench_model::run(model),
        Cmd::KvReport(a) => kv_report::run(a),
        Cmd::Index(c) => index_cmd::run(c),
        Cmd::Embed(a) => embed::run(a),
        Cmd::Formats => {
            use lowbit_quant::Caps;
            let flags = [
                (Caps::WEIGHTS, "weights"),
                (Caps::KV, "kv"),
                (Caps::IMPORTANCE, "imatrix"),
                (Caps::INT_DOT, "int-dot"),
                (Caps::GPU, "gpu"),
                (Caps::ACTIVATIONS, "activations"),
            ];
            println!("{:>4} {:<40} {:<12} {:>8} {:>7}  {:<32} about", "id", "syntax", "preset", "bits/el", "block", "use");
            for row in lowbit_quant::FORMATS {
                let uses: Vec<&str> = flags.iter().filter(|(c, _)| row.has(*c)).map(|(_, n)| *n).collect();
                for p in row.presets {
                    let f = lowbit_quant::Format::parse(p)?;
                    let (bits, block) = (f.bits_per_element(), f.block_elems());
                    println!("{:>4} {:<40} {:<12} {:>8.4} {:>7}  {:<32} {}", row.id.0, row.syntax, f.name(), bits, block, uses.join(","), row.about);
                }
            }
            Ok(())
        }
    }
}
