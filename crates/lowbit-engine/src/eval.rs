//! Quality measurements: llama.cpp's perplexity protocol, KL divergence and
//! top-1 agreement against saved base logits, and mean NLL per document.

use crate::error::{EngineError, Result};
use crate::kv::KvCache;
use crate::model::Model;

/// log-softmax statistics of one logit row.
pub struct RowStats {
    pub max: f32,
    pub log_sum: f64,
}

pub fn row_stats(logits: &[f32]) -> RowStats {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    RowStats { max, log_sum: sum.ln() }
}

/// −log p(target) under `logits`.
pub fn nll(logits: &[f32], target: u32) -> f64 {
    let s = row_stats(logits);
    s.log_sum - (logits[target as usize] - s.max) as f64
}

/// KL(base ‖ test) for one position, from two logit rows.
pub fn kld(base: &[f32], test: &[f32]) -> f64 {
    let (b, t) = (row_stats(base), row_stats(test));
    let mut k = 0f64;
    for (&lb, &lt) in base.iter().zip(test) {
        let lpb = (lb - b.max) as f64 - b.log_sum;
        let lpt = (lt - t.max) as f64 - t.log_sum;
        k += lpb.exp() * (lpb - lpt);
    }
    k.max(0.0)
}

/// Result of [`perplexity`].
#[derive(Clone, Debug, Default)]
pub struct PplReport {
    pub chunks: usize,
    pub ctx: usize,
    pub scored_tokens: usize,
    pub mean_nll: f64,
    pub ppl: f64,
    /// Per-chunk running perplexity, as llama.cpp prints it.
    pub running: Vec<f64>,
}

/// llama.cpp's `perplexity` protocol: the text's tokens are cut into
/// non-overlapping windows of `ctx`; when the vocabulary adds BOS, the first
/// token of each window is replaced by BOS; only the second half of each
/// window is scored (predictions of tokens ctx/2+1 .. ctx−1 from their
/// prefixes). `on_chunk(i, logits_of_scored_rows, their_targets)` lets
/// callers save or compare logits; it may be called several times per
/// window (a window runs in pieces of [`crate::model::UBATCH`] tokens), with
/// consecutive rows in order.
pub fn perplexity(
    model: &Model,
    tokens: &[u32],
    ctx: usize,
    max_chunks: Option<usize>,
    bos: Option<u32>,
    new_cache: &dyn Fn() -> Result<Box<dyn KvCache>>,
    mut on_chunk: impl FnMut(usize, &[f32], &[u32]) -> Result<()>,
) -> Result<PplReport> {
    if ctx < 4 || ctx > model.config.max_seq {
        return Err(EngineError::ContextOverflow { tokens: ctx, ctx: model.config.max_seq });
    }
    let available = tokens.len() / ctx;
    let n = max_chunks.map_or(available, |m| m.min(available));
    if n == 0 {
        return Err(EngineError::Tokenizer(format!("the text has {} tokens, fewer than one window of {ctx}", tokens.len())));
    }
    let vocab = model.config.vocab;
    let first = ctx / 2;
    let mut total = 0f64;
    let mut count = 0usize;
    let mut rep = PplReport { chunks: n, ctx, ..Default::default() };
    for i in 0..n {
        let mut window = tokens[i * ctx..(i + 1) * ctx].to_vec();
        if let Some(b) = bos {
            window[0] = b;
        }
        let mut cache = new_cache()?;
        let base = i * ctx;
        // Scored: window positions first .. ctx − 2 (each predicts the next).
        model.forward_ubatched(&window, 0, cache.as_mut(), true, |start, rows| {
            let (lo, hi) = (first.max(start), (ctx - 1).min(start + rows.len() / vocab));
            if lo >= hi {
                return Ok(());
            }
            let scored = &rows[(lo - start) * vocab..(hi - start) * vocab];
            for (j, row) in scored.chunks_exact(vocab).enumerate() {
                total += nll(row, tokens[base + lo + j + 1]);
                count += 1;
            }
            on_chunk(i, scored, &tokens[base + lo + 1..base + hi + 1])
        })?;
        rep.running.push((total / count as f64).exp());
    }
    rep.scored_tokens = count;
    rep.mean_nll = total / count as f64;
    rep.ppl = rep.mean_nll.exp();
    Ok(rep)
}

/// Mean NLL per predicted token over documents (each starting with BOS).
/// A document longer than `ctx` is scored in windows of `ctx` with stride
/// ctx/2: later windows keep half a window of context, start with BOS in
/// place of their first token (as llama.cpp does), and score only the new
/// half.
pub fn documents_nll(model: &Model, docs: &[Vec<u32>], ctx: usize, bos: Option<u32>, new_cache: &dyn Fn() -> Result<Box<dyn KvCache>>) -> Result<(f64, usize)> {
    let vocab = model.config.vocab;
    let (mut total, mut count) = (0f64, 0usize);
    let stride = ctx / 2;
    for doc in docs {
        let mut start = 0usize;
        loop {
            let end = (start + ctx).min(doc.len());
            let mut w = doc[start..end].to_vec();
            if w.len() < 2 {
                break;
            }
            if start > 0 {
                if let Some(b) = bos {
                    w[0] = b;
                }
            }
            // Positions already scored by the previous window are skipped.
            let first = if start == 0 { 0 } else { ctx - stride - 1 };
            let mut cache = new_cache()?;
            model.forward_ubatched(&w, 0, cache.as_mut(), true, |start, rows| {
                for (k, row) in rows.chunks_exact(vocab).enumerate() {
                    let j = start + k;
                    if j >= first && j + 1 < w.len() {
                        total += nll(row, w[j + 1]);
                        count += 1;
                    }
                }
                Ok(())
            })?;
            if end == doc.len() {
                break;
            }
            start += stride;
        }
    }
    Ok((total / count.max(1) as f64, count))
}
