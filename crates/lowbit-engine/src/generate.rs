//! Text generation: batched prefill of the prompt, then one token at a time
//! until the token budget, the end-of-sequence token or the context ends.

use std::time::Instant;

use crate::error::{EngineError, Result};
use crate::kv::KvCache;
use crate::model::Model;
use crate::sample::Sampler;
use crate::tokenizer::Tokenizer;

#[derive(Clone, Debug, Default)]
pub struct GenStats {
    pub prompt_tokens: usize,
    pub generated: usize,
    pub prefill_secs: f64,
    pub decode_secs: f64,
}

impl GenStats {
    pub fn prefill_tps(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_secs.max(1e-9)
    }
    pub fn decode_tps(&self) -> f64 {
        // The first token comes from the prefill's logits.
        self.generated.saturating_sub(1) as f64 / self.decode_secs.max(1e-9)
    }
}

/// Generate after `prompt`, calling `on_piece` with each new token's bytes.
pub fn generate(
    model: &Model,
    tok: &Tokenizer,
    prompt: &[u32],
    max_tokens: usize,
    sampler: &mut Sampler,
    cache: &mut dyn KvCache,
    mut on_piece: impl FnMut(&[u8]),
) -> Result<(Vec<u32>, GenStats)> {
    if prompt.is_empty() {
        return Err(EngineError::Tokenizer("the prompt is empty".into()));
    }
    if prompt.len() >= cache.capacity() {
        return Err(EngineError::ContextOverflow { tokens: prompt.len(), ctx: cache.capacity() });
    }
    let mut stats = GenStats { prompt_tokens: prompt.len(), ..Default::default() };
    let t = Instant::now();
    let mut logits = model.prefill(prompt, 0, cache)?;
    stats.prefill_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut out = Vec::new();
    let mut prev = *prompt.last().expect("non-empty");
    while out.len() < max_tokens {
        let next = sampler.sample(&logits);
        if Some(next) == tok.eos() {
            break;
        }
        on_piece(&tok.piece(prev, next));
        out.push(next);
        prev = next;
        let pos = prompt.len() + out.len() - 1;
        if out.len() == max_tokens || pos + 1 >= cache.capacity() {
            break;
        }
        logits = model.forward(&[next], pos, cache, false)?;
    }
    stats.decode_secs = t.elapsed().as_secs_f64();
    stats.generated = out.len();
    Ok((out, stats))
}
