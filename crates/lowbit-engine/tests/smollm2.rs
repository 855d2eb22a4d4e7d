//! SmolLM2-135M-Instruct (GGUF, Q4_1 weights): tokenizer round trip and a
//! factual greedy completion.

use lowbit_engine::gguf::{self, GgufModel};
use lowbit_engine::sample::Sampler;
use lowbit_engine::CacheKind;

fn load() -> Option<GgufModel> {
    match lowbit_assets::smollm2_gguf() {
        Ok(p) => Some(gguf::load(&p).unwrap()),
        Err(e) => {
            eprintln!("SKIPPED: SmolLM2 unavailable: {e}");
            None
        }
    }
}

#[test]
fn tokenizer_round_trips_real_text() {
    let Some(g) = load() else { return };
    let text = match lowbit_assets::data_file("text/wikitext-2-raw-test.txt") {
        Ok(p) => std::fs::read_to_string(p).unwrap(),
        Err(e) => return eprintln!("SKIPPED: {e}"),
    };
    let sample: String = text.chars().take(20_000).collect();
    let ids = g.tokenizer.encode(&sample, false).unwrap();
    assert_eq!(g.tokenizer.decode(&ids), sample);
    assert!(ids.len() > 3000 && ids.len() < 8000, "{} tokens", ids.len());
    // Digits are split one by one (the `smollm` pre-tokenizer), specials stay whole.
    let d = g.tokenizer.encode("<|im_start|>1234", false).unwrap();
    assert_eq!(d.len(), 5, "{d:?}");
    assert_eq!(d[0], 1);
}

#[test]
fn greedy_capital_of_france() {
    let Some(g) = load() else { return };
    let m = &g.model;
    let prompt = g.tokenizer.encode("The capital of France is", false).unwrap();
    let mut cache = m.new_cache(CacheKind::F32, 256);
    let mut logits = m.forward(&prompt, 0, cache.as_mut(), false).unwrap();
    let mut out = Vec::new();
    let mut s = Sampler::greedy();
    for _ in 0..12 {
        let t = s.sample(&logits);
        out.push(t);
        logits = m.forward(&[t], prompt.len() + out.len() - 1, cache.as_mut(), false).unwrap();
    }
    let text = g.tokenizer.decode(&out);
    eprintln!("The capital of France is{text}");
    assert!(text.contains("Paris"), "{text}");
}
