//! Hugging Face checkpoints: a folder with config.json and one or more
//! *.safetensors files (f32 / f16 / bf16), Llama-family names
//! (`model.layers.N.self_attn.q_proj.weight`, …). Tensors stay in the
//! memory-mapped files in their stored precision. HF keeps q/k in the
//! half-split RoPE layout, so these models run with NeoX-style RoPE.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use lowbit_quant::Format;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use crate::config::Config;
use crate::error::{malformed, EngineError, Result};
use crate::matrix::{Bytes, QMatrix};
use crate::model::{assemble_layers, LayerNames, Model};

struct Entry {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
    format: Format,
    shape: Vec<usize>,
}

pub fn load(dir: &Path) -> Result<Model> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| EngineError::Io { path: p, source }
    };
    let cfg_path = dir.join("config.json");
    let cfg_text = std::fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
    let cfg: Value = serde_json::from_str(&cfg_text).map_err(|e| malformed(&cfg_path, e.to_string()))?;
    let arch = cfg["model_type"].as_str().unwrap_or("").to_string();
    if !["llama", "mistral", "qwen2"].contains(&arch.as_str()) {
        return Err(EngineError::UnsupportedArch { path: cfg_path, arch });
    }
    let num = |k: &str| cfg[k].as_u64().map(|v| v as usize).ok_or_else(|| malformed(&cfg_path, format!("`{k}` is missing")));
    let dim = num("hidden_size")?;
    let n_heads = num("num_attention_heads")?;
    let n_kv_heads = cfg["num_key_value_heads"].as_u64().map(|v| v as usize).unwrap_or(n_heads);
    if n_heads == 0 || dim % n_heads != 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
        return Err(malformed(&cfg_path, "inconsistent head counts"));
    }
    let config = Config {
        dim,
        hidden: num("intermediate_size")?,
        n_layers: num("num_hidden_layers")?,
        n_heads,
        n_kv_heads,
        vocab: num("vocab_size")?,
        max_seq: num("max_position_embeddings")?,
        rope_theta: cfg["rope_theta"].as_f64().unwrap_or(10000.0) as f32,
        rms_eps: cfg["rms_norm_eps"].as_f64().unwrap_or(1e-5) as f32,
        rope_neox: true,
    };

    let t = TensorTable::open(dir)?;
    let matrix = |name: &str, rows: usize, cols: usize| t.matrix(name, rows, cols);
    let vector = |name: &str, n: usize| t.vector(name, n);
    let entries = &t.entries;
    let optional = |name: &str, n: usize| -> Result<Option<Vec<f32>>> {
        if entries.contains_key(name) {
            vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    };
    let names = LayerNames {
        attn_norm: "input_layernorm.weight",
        wq: "self_attn.q_proj.weight",
        wk: "self_attn.k_proj.weight",
        wv: "self_attn.v_proj.weight",
        bq: "self_attn.q_proj.bias",
        bk: "self_attn.k_proj.bias",
        bv: "self_attn.v_proj.bias",
        wo: "self_attn.o_proj.weight",
        ffn_norm: "post_attention_layernorm.weight",
        gate: "mlp.gate_proj.weight",
        up: "mlp.up_proj.weight",
        down: "mlp.down_proj.weight",
    };
    let layers = assemble_layers(&config, |l| format!("model.layers.{l}."), &names, &matrix, &vector, &optional)?;
    let embed = matrix("model.embed_tokens.weight", config.vocab, dim)?;
    let output = if entries.contains_key("lm_head.weight") { matrix("lm_head.weight", config.vocab, dim)? } else { embed.clone() };
    let norm = vector("model.norm.weight", dim)?;
    Ok(Model { config, embed, layers, norm, output })
}

/// Every tensor of the *.safetensors files in a folder, memory-mapped.
pub struct TensorTable {
    dir: std::path::PathBuf,
    entries: HashMap<String, Entry>,
}

impl TensorTable {
    pub fn open(dir: &Path) -> Result<TensorTable> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| EngineError::Io { path: p, source }
        };
        let mut entries: HashMap<String, Entry> = HashMap::new();
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(malformed(dir, "no *.safetensors file beside config.json"));
        }
        for f in files {
            let file = std::fs::File::open(&f).map_err(io(&f))?;
            // SAFETY: read-only map of a model file lowbit never writes.
            let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(io(&f))?);
            let (header, meta) = SafeTensors::read_metadata(&map[..]).map_err(|e| malformed(&f, e.to_string()))?;
            let base = 8 + header;
            for (name, info) in meta.tensors() {
                let spec = match info.dtype {
                    Dtype::F32 => "f32",
                    Dtype::F16 => "f16",
                    Dtype::BF16 => "bf16",
                    // Integer buffers (e.g. BERT's position_ids) are not weights.
                    Dtype::I64 | Dtype::I32 => continue,
                    other => {
                        return Err(EngineError::UnsupportedDtype { path: f.clone(), name, dtype: format!("{other:?}") });
                    }
                };
                let (s, e) = info.data_offsets;
                if base + e > map.len() {
                    return Err(malformed(&f, format!("tensor `{name}` runs past the end of the file: truncated?")));
                }
                entries.insert(name, Entry { map: map.clone(), start: base + s, end: base + e, format: Format::parse(spec)?, shape: info.shape.clone() });
            }
        }
        Ok(TensorTable { dir: dir.to_path_buf(), entries })
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<&Entry> {
        let e = self.entries.get(name).ok_or_else(|| EngineError::MissingTensor { path: self.dir.clone(), name: name.into() })?;
        if e.shape != shape {
            return Err(EngineError::BadShape { path: self.dir.clone(), name: name.into(), got: e.shape.clone(), expected: shape.to_vec() });
        }
        Ok(e)
    }

    /// A 2-D tensor as a matrix over the mapped bytes (no copy).
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix> {
        let e = self.get(name, &[rows, cols])?;
        QMatrix::new(e.format.clone(), rows, cols, Bytes::Mapped(e.map.clone(), e.start..e.end))
    }

    /// A 1-D tensor decoded to f32.
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>> {
        let e = self.get(name, &[n])?;
        Ok(e.format.decode(&e.map[e.start..e.end], n)?)
    }
}
