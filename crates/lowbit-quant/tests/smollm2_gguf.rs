//! Every tensor of the real SmolLM2-135M-Instruct GGUF dequantizes to the
//! same values as candle-core's reader gives (Q4_1, Q8_0 and F32 tensors).

use candle_core::quantized::gguf_file;
use candle_core::Device;
use lowbit_quant::Format;

/// ggml type → our spec name.
fn spec_of(dtype: candle_core::quantized::GgmlDType) -> String {
    let s = format!("{dtype:?}").to_ascii_lowercase();
    match s.strip_suffix('k') {
        Some(base) if base.starts_with('q') => format!("{base}_k"),
        _ => s,
    }
}

#[test]
fn every_smollm2_tensor_dequantizes_identically() {
    let path = match lowbit_assets::smollm2_gguf() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIPPED: SmolLM2 GGUF unavailable: {e}");
            return;
        }
    };
    let mut file = std::fs::File::open(&path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut counts = std::collections::BTreeMap::new();
    for name in names {
        let qt = content.tensor(&mut file, name, &Device::Cpu).unwrap();
        let spec = spec_of(qt.dtype());
        let f = Format::parse(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let raw = qt.data().unwrap();
        let theirs: Vec<f32> = qt.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let ours = f.decode(&raw, theirs.len()).unwrap();
        assert!(ours == theirs, "{name} ({spec}): dequantized values differ");
        *counts.entry(spec).or_insert(0usize) += 1;
    }
    eprintln!("identical on every tensor: {counts:?}");
    assert!(counts.values().sum::<usize>() > 200, "expected the whole model");
}
