//! GGUF v2/v3 models of the Llama family (llama / SmolLM2, mistral, qwen2),
//! memory-mapped, every weight kept in its stored ggml format. The header is
//! read with candle-core's GGUF reader; tensor bytes are borrowed straight
//! from the map after their ranges are checked against the file size.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::{Content, Value};
use lowbit_quant::{Caps, Format, FormatId};
use memmap2::Mmap;

use crate::config::Config;
use crate::error::{malformed, EngineError, Result};
use crate::matrix::{Bytes, QMatrix};
use crate::model::{assemble_layers, LayerNames, Model};
use crate::tokenizer::{hf, Tokenizer};

pub struct GgufModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<String>,
    pub metadata: HashMap<String, Value>,
}

const ARCHS: [&str; 3] = ["llama", "mistral", "qwen2"];

/// The ggml type number of a tensor type candle's header reader parsed.
fn ggml_type(dtype: candle_core::quantized::GgmlDType) -> u32 {
    use candle_core::quantized::GgmlDType as T;
    match dtype {
        T::F32 => 0,
        T::F16 => 1,
        T::Q4_0 => 2,
        T::Q4_1 => 3,
        T::Q5_0 => 6,
        T::Q5_1 => 7,
        T::Q8_0 => 8,
        T::Q8_1 => 9,
        T::Q2K => 10,
        T::Q3K => 11,
        T::Q4K => 12,
        T::Q5K => 13,
        T::Q6K => 14,
        T::Q8K => 15,
        T::BF16 => 30,
    }
}

pub fn load(path: &Path) -> Result<GgufModel> {
    let io = |source| EngineError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only; lowbit never writes model files in place.
    let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?);
    if map.len() < 8 || &map[..4] != b"GGUF" {
        return Err(malformed(path, "not a GGUF file (bad magic)"));
    }
    let content = Content::read(&mut std::io::Cursor::new(&map[..])).map_err(|e| malformed(path, e.to_string()))?;
    let md = &content.metadata;
    let get = |k: &str| md.get(k);
    let arch = get("general.architecture").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    if !ARCHS.contains(&arch.as_str()) {
        return Err(EngineError::UnsupportedArch { path: path.to_path_buf(), arch });
    }
    let num = |k: &str| -> Result<u64> {
        let v = get(&format!("{arch}.{k}")).ok_or_else(|| malformed(path, format!("metadata `{arch}.{k}` is missing")))?;
        v.to_u64().or_else(|_| v.to_u32().map(u64::from)).map_err(|e| malformed(path, format!("`{arch}.{k}`: {e}")))
    };
    let fnum = |k: &str, default: f32| get(&format!("{arch}.{k}")).and_then(|v| v.to_f32().ok()).unwrap_or(default);

    let tensor = |name: &str| -> Result<(Format, Vec<usize>, Bytes)> {
        let info = content
            .tensor_infos
            .get(name)
            .ok_or_else(|| EngineError::MissingTensor { path: path.to_path_buf(), name: name.to_string() })?;
        let ty = ggml_type(info.ggml_dtype);
        let unsupported = || EngineError::UnsupportedDtype {
            path: path.to_path_buf(),
            name: name.to_string(),
            dtype: match FormatId::from_ggml(ty) {
                Some(r) => format!("{} (ggml type {ty}, not a weight format)", r.family),
                None => format!("ggml type {ty}"),
            },
        };
        let row = FormatId::from_ggml(ty).filter(|r| r.has(Caps::WEIGHTS)).ok_or_else(unsupported)?;
        let format = Format::parse(row.family).map_err(|_| unsupported())?;
        let dims = info.shape.dims().to_vec();
        let elems: usize = dims.iter().product();
        let len = format.encoded_len(elems)?;
        let start = (content.tensor_data_offset + info.offset) as usize;
        if start.checked_add(len).is_none_or(|end| end > map.len()) {
            return Err(malformed(path, format!("tensor `{name}` runs past the end of the file ({} bytes): truncated?", map.len())));
        }
        Ok((format, dims, Bytes::Mapped(map.clone(), start..start + len)))
    };
    let matrix = |name: &str, rows: usize, cols: usize| -> Result<QMatrix> {
        let (format, dims, bytes) = tensor(name)?;
        if dims != [rows, cols] {
            return Err(EngineError::BadShape { path: path.to_path_buf(), name: name.into(), got: dims, expected: vec![rows, cols] });
        }
        Ok(QMatrix::new(format, rows, cols, bytes)?)
    };
    let vector = |name: &str, n: usize| -> Result<Vec<f32>> {
        let (format, dims, bytes) = tensor(name)?;
        if dims.iter().product::<usize>() != n {
            return Err(EngineError::BadShape { path: path.to_path_buf(), name: name.into(), got: dims, expected: vec![n] });
        }
        Ok(format.decode(bytes.as_slice(), n)?)
    };
    let optional = |name: &str, n: usize| -> Result<Option<Vec<f32>>> {
        if content.tensor_infos.contains_key(name) {
            vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    };

    let dim = num("embedding_length")? as usize;
    let n_heads = num("attention.head_count")? as usize;
    let n_kv_heads = num("attention.head_count_kv").unwrap_or(n_heads as u64) as usize;
    if n_heads == 0 || dim % n_heads != 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
        return Err(malformed(path, format!("inconsistent heads: dim {dim}, {n_heads} heads, {n_kv_heads} kv heads")));
    }
    let embed_info = content
        .tensor_infos
        .get("token_embd.weight")
        .ok_or_else(|| EngineError::MissingTensor { path: path.to_path_buf(), name: "token_embd.weight".into() })?;
    let vocab = embed_info.shape.dims()[0];
    let config = Config {
        dim,
        hidden: num("feed_forward_length")? as usize,
        n_layers: num("block_count")? as usize,
        n_heads,
        n_kv_heads,
        vocab,
        max_seq: num("context_length")? as usize,
        rope_theta: fnum("rope.freq_base", 10000.0),
        rms_eps: fnum("attention.layer_norm_rms_epsilon", 1e-5),
        rope_neox: arch == "qwen2",
    };
    let names = LayerNames {
        attn_norm: "attn_norm.weight",
        wq: "attn_q.weight",
        wk: "attn_k.weight",
        wv: "attn_v.weight",
        bq: "attn_q.bias",
        bk: "attn_k.bias",
        bv: "attn_v.bias",
        wo: "attn_output.weight",
        ffn_norm: "ffn_norm.weight",
        gate: "ffn_gate.weight",
        up: "ffn_up.weight",
        down: "ffn_down.weight",
    };
    let layers = assemble_layers(&config, |l| format!("blk.{l}."), &names, &matrix, &vector, &optional)?;
    let embed = matrix("token_embd.weight", vocab, dim)?;
    let output = if content.tensor_infos.contains_key("output.weight") { matrix("output.weight", vocab, dim)? } else { embed.clone() };
    let model = Model { config, embed, layers, norm: vector("output_norm.weight", dim)?, output };
    let tok_model = md.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or("");
    let tokenizer = if tok_model == "llama" { spm_from_gguf(md) } else { hf::from_gguf(md).map(Tokenizer::Hf) }.map_err(|e| match e {
        EngineError::Tokenizer(m) => malformed(path, format!("tokenizer: {m}")),
        e => e,
    })?;
    let chat_template = get("tokenizer.chat_template").and_then(|v| v.to_string().ok()).cloned();
    Ok(GgufModel { model, tokenizer, chat_template, metadata: content.metadata })
}

/// SentencePiece-style vocabulary (`tokenizer.ggml.model = llama`).
fn spm_from_gguf(md: &HashMap<String, Value>) -> Result<Tokenizer> {
    let err = |m: String| EngineError::Tokenizer(m);
    let list = |k: &str| md.get(k).and_then(|v| v.to_vec().ok()).ok_or_else(|| err(format!("metadata `{k}` is missing")));
    let tokens: Vec<Vec<u8>> =
        list("tokenizer.ggml.tokens")?.iter().map(|v| v.to_string().map(|s| s.clone().into_bytes()).map_err(|e| err(e.to_string()))).collect::<Result<_>>()?;
    let scores: Vec<f32> = match list("tokenizer.ggml.scores") {
        Ok(v) => v.iter().map(|x| x.to_f32().unwrap_or(0.0)).collect(),
        Err(_) => vec![0.0; tokens.len()],
    };
    if scores.len() != tokens.len() {
        return Err(err(format!("{} tokens but {} scores", tokens.len(), scores.len())));
    }
    let id = |k: &str, d: u32| md.get(k).and_then(|v| v.to_u32().ok()).unwrap_or(d);
    let (bos, eos) = (id("tokenizer.ggml.bos_token_id", 1), id("tokenizer.ggml.eos_token_id", 2));
    Ok(Tokenizer::Llama2c(crate::tokenizer::llama2c::Llama2cTokenizer::from_parts(tokens, scores, "\u{2581}", bos, eos)))
}
