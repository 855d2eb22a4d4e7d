//! A GGUF with a SentencePiece-style `llama` vocabulary: stories260K is
//! written as GGUF (f32 tensors, GGUF names, tok512 as tokens/scores with
//! '▁' for spaces) with candle's writer, loaded by lowbit's GGUF loader, and
//! must tokenize and generate exactly like the llama2.c checkpoint.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use lowbit_engine::sample::Sampler;
use lowbit_engine::{gguf, Policy};

const REFERENCE: [u32; 69] = [
    1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337, 410, 408, 419, 292,
    411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338, 391, 266, 267, 337,
    335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415, 426, 13, 438, 310, 439, 419, 357, 336,
];

fn tok512(path: &std::path::Path) -> (Vec<String>, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    let (mut at, mut toks, mut scores) = (4, vec![], vec![]);
    for _ in 0..512 {
        scores.push(f32::from_le_bytes(b[at..at + 4].try_into().unwrap()));
        let n = i32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        toks.push(String::from_utf8(b[at + 8..at + 8 + n].to_vec()).unwrap().replace(' ', "\u{2581}"));
        at += 8 + n;
    }
    (toks, scores)
}

#[test]
fn sentencepiece_gguf_matches_the_llama2c_checkpoint() {
    let (Ok(ckpt), Ok(tok)) = (lowbit_assets::data_file("models/stories260K.bin"), lowbit_assets::data_file("models/tok512.bin")) else {
        return eprintln!("SKIPPED: stories260K unavailable");
    };
    let m = lowbit_engine::llama2c::load(&ckpt).unwrap();
    let c = m.config.clone();
    let q = |w: Vec<f32>, shape: &[usize]| QTensor::quantize(&Tensor::from_vec(w, shape, &Device::Cpu).unwrap(), GgmlDType::F32).unwrap();
    let dense = |x: &lowbit_engine::matrix::QMatrix| {
        let mut w = vec![0f32; x.rows * x.cols];
        for r in 0..x.rows {
            x.row_f32(r, &mut w[r * x.cols..(r + 1) * x.cols]);
        }
        q(w, &[x.rows, x.cols])
    };
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), dense(&m.embed)),
        ("output_norm.weight".into(), q(m.norm.clone(), &[c.dim])),
    ];
    for (l, layer) in m.layers.iter().enumerate() {
        let n = |s: &str| format!("blk.{l}.{s}");
        tensors.push((n("attn_norm.weight"), q(layer.attn_norm.clone(), &[c.dim])));
        tensors.push((n("ffn_norm.weight"), q(layer.ffn_norm.clone(), &[c.dim])));
        tensors.push((n("attn_q.weight"), dense(&layer.wq)));
        tensors.push((n("attn_k.weight"), dense(&layer.wk)));
        tensors.push((n("attn_v.weight"), dense(&layer.wv)));
        tensors.push((n("attn_output.weight"), dense(&layer.wo)));
        tensors.push((n("ffn_gate.weight"), dense(&layer.w_gate)));
        tensors.push((n("ffn_up.weight"), dense(&layer.w_up)));
        tensors.push((n("ffn_down.weight"), dense(&layer.w_down)));
    }
    let (toks, scores) = tok512(&tok);
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.embedding_length", Value::U32(c.dim as u32)),
        ("llama.feed_forward_length", Value::U32(c.hidden as u32)),
        ("llama.block_count", Value::U32(c.n_layers as u32)),
        ("llama.attention.head_count", Value::U32(c.n_heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(c.n_kv_heads as u32)),
        ("llama.context_length", Value::U32(c.max_seq as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", Value::Array(toks.into_iter().map(Value::String).collect())),
        ("tokenizer.ggml.scores", Value::Array(scores.into_iter().map(Value::F32).collect())),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
    ];
    let path = std::env::temp_dir().join(format!("lowbit-spm-{}.gguf", std::process::id()));
    {
        let mut f = std::fs::File::create(&path).unwrap();
        let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
        let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
    }
    let g = gguf::load(&path).unwrap();
    let prompt = g.tokenizer.encode("Once upon a time", true).unwrap();
    assert_eq!(prompt, REFERENCE[..5]);
    let mut cache = g.model.new_cache(&Policy::f32(), 128).unwrap();
    let mut s = Sampler::greedy();
    let (out, _) = lowbit_engine::generate::generate(&g.model, &g.tokenizer, &prompt, 64, &mut s, cache.as_mut(), |_| {}).unwrap();
    let all: Vec<u32> = prompt.into_iter().chain(out).collect();
    assert_eq!(all, REFERENCE);
    let text = g.tokenizer.decode(&all);
    assert!(text.starts_with("Once upon a time, there was a little girl named Lily."), "{text}");
    let _ = std::fs::remove_file(&path);
}
