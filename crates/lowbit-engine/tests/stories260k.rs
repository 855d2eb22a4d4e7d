//! stories260K (llama2.c checkpoint): exact greedy continuation and the
//! validation loss.

use lowbit_engine::sample::Sampler;
use lowbit_engine::tokenizer::{llama2c::Llama2cTokenizer, Tokenizer};
use lowbit_engine::{Model, Policy};

fn load() -> Option<(Model, Tokenizer)> {
    let (m, t) = match (lowbit_assets::data_file("models/stories260K.bin"), lowbit_assets::data_file("models/tok512.bin")) {
        (Ok(m), Ok(t)) => (m, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("SKIPPED: {e}");
            return None;
        }
    };
    let model = lowbit_engine::llama2c::load(&m).unwrap();
    let tok = Tokenizer::Llama2c(Llama2cTokenizer::load(&t, model.config.vocab).unwrap());
    Some((model, tok))
}

const REFERENCE: [u32; 69] = [
    1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292,
    411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337,
    335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13, 438, 310, 439, 419, 357, 336,
];

#[test]
fn greedy_continuation_matches_llama2c_reference() {
    let Some((model, tok)) = load() else { return };
    let prompt = tok.encode("Once upon a time", true).unwrap();
    assert_eq!(prompt, REFERENCE[..5]);
    let mut cache = model.new_cache(&Policy::f32(), model.config.max_seq).unwrap();
    let mut logits = model.forward(&prompt, 0, cache.as_mut(), false).unwrap();
    let mut out = prompt.clone();
    let mut s = Sampler::greedy();
    for _ in 0..64 {
        let t = s.sample(&logits);
        out.push(t);
        logits = model.forward(&[t], out.len() - 1, cache.as_mut(), false).unwrap();
    }
    assert_eq!(out, REFERENCE);
    let text = tok.decode(&out);
    assert!(text.starts_with("Once upon a time, there was a little girl named Lily."), "{text}");
    assert!(text.ends_with("Lily's mom said"), "{text}");
}

/// The published loss (≈ 1.30) holds on the first 400 stories of the file
/// (all plain ASCII): measured 1.334. Stories 400–999 are of a different
/// style and carry non-ASCII punctuation this 512-token vocabulary spells
/// byte by byte; there the model's NLL is 1.4–1.6 (ASCII stories) and
/// 2.5–2.9 (the others), giving 1.518 over the whole file. The forward pass
/// itself is pinned exactly by the greedy reference above. Both figures are
/// asserted so a regression in either shows.
#[test]
fn validation_nll() {
    let Some((model, tok)) = load() else { return };
    let text = match lowbit_assets::data_file("text/tinystories-valid-1000.txt") {
        Ok(p) => std::fs::read_to_string(p).unwrap(),
        Err(e) => return eprintln!("SKIPPED: {e}"),
    };
    let docs: Vec<Vec<u32>> = text
        .split("<|endoftext|>")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| tok.encode(s, true).unwrap())
        .collect();
    assert_eq!(docs.len(), 1000);
    let ctx = model.config.max_seq;
    let nll = |d: &[Vec<u32>]| {
        lowbit_engine::eval::documents_nll(&model, d, ctx, tok.bos(), &|| model.new_cache(&Policy::f32(), ctx)).unwrap()
    };
    let (head, n_head) = nll(&docs[..400]);
    let (rest, n_rest) = nll(&docs[400..]);
    let all = (head * n_head as f64 + rest * n_rest as f64) / (n_head + n_rest) as f64;
    eprintln!("stories260K mean NLL: first 400 stories {head:.4} ({n_head} tokens), all 1000 {all:.4} ({} tokens)", n_head + n_rest);
    assert!((head - 1.30).abs() / 1.30 <= 0.03, "first 400 stories: {head}");
    assert!((all - 1.518).abs() / 1.518 <= 0.01, "whole file: {all}");
}
