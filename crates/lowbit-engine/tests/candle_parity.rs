//! Logit parity with candle-transformers' quantized llama (a peer
//! implementation) on the same SmolLM2 GGUF: last-token logits of the
//! issue's three prompts and nine more.
//!
//! Both engines quantize activations to 8 bits before the integer dot
//! products (Q8_1 for these Q4_1 weights, as ggml does; candle rounds the
//! stored d·Σq through f16 arithmetic, lowbit through one f16 rounding), so
//! both approximate the same weights run with f32 activations — and that
//! rounding makes logits sensitive to float summation order: a block whose
//! activations hold an outlier flips codes of its small values on ulp-sized
//! differences upstream. Measured (session 5): per prompt, lowbit vs candle
//! 0.9933–0.99996 (first prompt 0.9935), median 0.99977; lowbit vs the
//! f32-activation reference median 0.99979, candle vs it 0.99971. The test
//! asserts medians (lowbit vs candle ≥ 0.999; lowbit no further from the
//! reference than candle, within 2e-4), every prompt ≥ 0.99, and the same
//! top-1 token on all prompts but at most one.

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use lowbit_engine::gguf;
use lowbit_engine::Policy;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn last_token_logits_match_candle_transformers() {
    let path = match lowbit_assets::smollm2_gguf() {
        Ok(p) => p,
        Err(e) => return eprintln!("SKIPPED: SmolLM2 unavailable: {e}"),
    };
    let ours = gguf::load(&path).unwrap();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut theirs = ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap();
    // The same weights with f32 activations: what both quantized-activation
    // engines approximate.
    let exact = ours.model.requantized(&lowbit_quant::Format::parse("f32").unwrap()).unwrap().0;
    // The three prompts, then more text of different kinds. The
    // rounding noise of 8-bit activations is heavy-tailed across prompts
    // (float summation order alone moves the first prompt's cosine to the
    // f32-activation logits between 0.9973 and 0.9990), so the assertions
    // are on medians; the per-prompt figures are printed.
    let prompts = [
        "The capital of France is",
        "In 1905, Albert Einstein published four papers that",
        "def fibonacci(n):\n    if n < 2:\n        return n\n",
        "Once upon a time, in a small village by the sea,",
        "The mitochondria is the powerhouse of the cell because",
        "SELECT name, COUNT(*) FROM orders GROUP BY",
        "Translate to French: The weather is nice today.",
        "1, 1, 2, 3, 5, 8, 13, 21,",
        "The Treaty of Versailles was signed in",
        "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
        "Photosynthesis converts light energy into",
        "fn main() {\n    let v: Vec<i32> = (0..10).collect();\n",
    ];
    let (mut ac, mut ae, mut be, mut same_top) = (Vec::new(), Vec::new(), Vec::new(), 0usize);
    for p in prompts {
        let ids = ours.tokenizer.encode(p, false).unwrap();
        let mut cache = ours.model.new_cache(&Policy::f32(), 64).unwrap();
        let a = ours.model.forward(&ids, 0, cache.as_mut(), false).unwrap();
        let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let b: Vec<f32> = theirs.forward(&input, 0).unwrap().squeeze(0).unwrap().to_vec1().unwrap();
        let mut cache = exact.new_cache(&Policy::f32(), 64).unwrap();
        let e = exact.forward(&ids, 0, cache.as_mut(), false).unwrap();
        let c = cosine(&a, &b);
        let (ta, tb) = (lowbit_engine::sample::argmax(&a), lowbit_engine::sample::argmax(&b));
        eprintln!(
            "{p:?}: cosine lowbit/candle {c:.6} (lowbit/f32-activations {:.6}, candle/f32-activations {:.6}), top-1 lowbit {ta} candle {tb}",
            cosine(&a, &e),
            cosine(&b, &e)
        );
        ac.push(c);
        ae.push(cosine(&a, &e));
        be.push(cosine(&b, &e));
        same_top += (ta == tb) as usize;
        // A wrong kernel or layout costs far more than rounding noise.
        assert!(c >= 0.99, "{p:?}: lowbit vs candle {c}");
    }
    let (ac, ae, be) = (median(ac), median(ae), median(be));
    eprintln!("median over {} prompts: lowbit/candle {ac:.6}, lowbit/f32-activations {ae:.6}, candle/f32-activations {be:.6}; same top-1 on {same_top}", prompts.len());
    assert!(ac >= 0.999, "median cosine lowbit vs candle {ac}");
    // lowbit's 8-bit activations are no noisier than the peer's.
    assert!(ae >= be - 2e-4, "median cosine lowbit vs f32 activations {ae}, candle's {be}");
    assert!(same_top + 1 >= prompts.len(), "top-1 differs on {} of {} prompts", prompts.len() - same_top, prompts.len());
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}
