//! `lowbit generate`: stream a continuation (or a chat answer).

use std::io::Write;

use anyhow::Result;
use lowbit_engine::chat::{self, Message};
use lowbit_engine::generate::generate;
use lowbit_engine::sample::Sampler;

use crate::model_args::{mib, peak_rss, ModelArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt.
    #[arg(long, default_value = "What is the capital of France? Answer in one sentence.")]
    prompt: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Wrap the prompt in the model's chat template (from the GGUF).
    #[arg(long)]
    chat: bool,
    /// Context length to allocate (default: prompt + max tokens, capped by the model).
    #[arg(long)]
    ctx: Option<usize>,
}

pub fn run(a: Args) -> Result<()> {
    let l = a.model.load()?;
    let text = if a.chat {
        let template = l.chat_template.as_deref().ok_or_else(|| anyhow::anyhow!("--chat: this model has no chat template"))?;
        let bos = l.tokenizer.bos().map(|b| l.tokenizer.decode(&[b])).unwrap_or_default();
        chat::render(template, &[Message { role: "user".into(), content: a.prompt.clone() }], &bos, "")?
    } else {
        a.prompt.clone()
    };
    let prompt = l.tokenizer.encode(&text, l.tokenizer.adds_bos())?;
    let ctx = a.ctx.unwrap_or(prompt.len() + a.max_tokens + 1).min(l.model.config.max_seq);
    let mut cache = l.model.new_cache(&a.model.policy()?, ctx)?;
    let mut sampler = Sampler::new(a.temperature, a.top_p, a.seed);
    if !a.chat {
        print!("{}", a.prompt);
    }
    let mut out = std::io::stdout().lock();
    let (_, stats) = generate(&l.model, &l.tokenizer, &prompt, a.max_tokens, &mut sampler, cache.as_mut(), |piece| {
        let _ = out.write_all(piece);
        let _ = out.flush();
    })?;
    drop(out);
    println!();
    eprintln!(
        "lowbit: prompt {} tokens at {:.1} tok/s, generated {} tokens at {:.1} tok/s, peak memory {:.1} MiB",
        stats.prompt_tokens,
        stats.prefill_tps(),
        stats.generated,
        stats.decode_tps(),
        peak_rss().map(mib).unwrap_or(f64::NAN)
    );
    Ok(())
}
