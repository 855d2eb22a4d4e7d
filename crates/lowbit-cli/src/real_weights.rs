//! Real weight tensors for the benchmark: stories260K (llama2.c checkpoint,
//! true fp32) and a sample of SmolLM2-135M layers (dequantized from the
//! GGUF). A minimal reader; the full model loaders belong to lowbit-engine.

use anyhow::{bail, Context, Result};

pub struct Tensor {
    pub data: Vec<f32>,
}

/// The weight matrices of a llama2.c legacy checkpoint.
pub fn stories260k() -> Result<Vec<Tensor>> {
    let path = lowbit_assets::data_file("models/stories260K.bin")?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 28 {
        bail!("{}: too short for a llama2.c header", path.display());
    }
    let h: Vec<i32> = bytes[..28].chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (dim, hidden, layers, heads, kv_heads, vocab) =
        (h[0] as usize, h[1] as usize, h[2] as usize, h[3] as usize, h[4] as usize, h[5].unsigned_abs() as usize);
    let kv_dim = dim * kv_heads / heads;
    let floats: Vec<f32> = bytes[28..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let sizes = [
        ("token_embedding", vocab * dim, true),
        ("rms_att", layers * dim, false),
        ("wq", layers * dim * dim, true),
        ("wk", layers * dim * kv_dim, true),
        ("wv", layers * dim * kv_dim, true),
        ("wo", layers * dim * dim, true),
        ("rms_ffn", layers * dim, false),
        ("w1", layers * hidden * dim, true),
        ("w2", layers * dim * hidden, true),
        ("w3", layers * hidden * dim, true),
    ];
    let mut at = 0;
    let mut out = Vec::new();
    for (name, n, keep) in sizes {
        if at + n > floats.len() {
            bail!("{}: truncated at tensor {name}", path.display());
        }
        if keep {
            out.push(Tensor { data: floats[at..at + n].to_vec() });
        }
        at += n;
    }
    Ok(out)
}

/// The 2-D weights of SmolLM2 blocks 0, 15 and 29, dequantized to f32.
pub fn smollm2_sample() -> Result<Vec<Tensor>> {
    use candle_core::quantized::gguf_file;
    let path = lowbit_assets::smollm2_gguf()?;
    let mut file = std::fs::File::open(&path)?;
    let content = gguf_file::Content::read(&mut file).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut names: Vec<String> = content
        .tensor_infos
        .iter()
        .filter(|(n, info)| {
            info.shape.rank() == 2 && ["blk.0.", "blk.15.", "blk.29."].iter().any(|p| n.starts_with(p))
        })
        .map(|(n, _)| n.clone())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let qt = content.tensor(&mut file, &name, &candle_core::Device::Cpu)?;
        let data = qt.dequantize(&candle_core::Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
        out.push(Tensor { data });
    }
    Ok(out)
}
