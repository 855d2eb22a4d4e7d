//! Truncated or malformed model files, unsupported architectures and
//! over-long prompts are errors that say what is wrong, never panics, and
//! never touch the file.

use std::path::PathBuf;

use lowbit_engine::{loader, EngineError, Policy};

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lowbit-bad-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn err_text(p: &std::path::Path) -> String {
    match loader::load(p, None) {
        Ok(_) => panic!("{} loaded", p.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn garbage_and_empty_files_are_rejected() {
    assert!(err_text(&tmp("empty.gguf", b"")).contains("shorter than 4 bytes"));
    let e = err_text(&tmp("garbage.bin", &[7u8; 100]));
    assert!(e.contains("llama2.c header") || e.contains("malformed"), "{e}");
    let e = err_text(&tmp("badgguf.gguf", b"GGUF\x03\x00\x00\x00\xff\xff"));
    assert!(e.contains("malformed"), "{e}");
}

#[test]
fn truncated_real_models_are_rejected() {
    if let Ok(p) = lowbit_assets::smollm2_gguf() {
        let bytes = std::fs::read(&p).unwrap();
        let cut = tmp("cut.gguf", &bytes[..bytes.len() / 2]);
        let e = err_text(&cut);
        assert!(e.contains("truncated") || e.contains("past the end"), "{e}");
        // The header alone is not a model either.
        let e = err_text(&tmp("header.gguf", &bytes[..4096]));
        assert!(e.contains("malformed"), "{e}");
    } else {
        eprintln!("SKIPPED (GGUF part): SmolLM2 unavailable");
    }
    if let Ok(p) = lowbit_assets::data_file("models/stories260K.bin") {
        let bytes = std::fs::read(&p).unwrap();
        let dir = p.parent().unwrap();
        let cut = tmp("stories-cut.bin", &bytes[..bytes.len() - 1000]);
        let e = loader::load(&cut, Some(&dir.join("tok512.bin"))).err().expect("truncated checkpoint must fail").to_string();
        assert!(e.contains("file ends inside tensor"), "{e}");
        let e = loader::load(&p, Some(&tmp("tok-cut.bin", &std::fs::read(dir.join("tok512.bin")).unwrap()[..100])))
            .err()
            .expect("truncated tokenizer must fail")
            .to_string();
        assert!(e.contains("tokenizer ends") || e.contains("bad length"), "{e}");
    }
}

#[test]
fn unsupported_architecture_is_named() {
    let Ok(p) = lowbit_assets::smollm2_gguf() else { return eprintln!("SKIPPED: SmolLM2 unavailable") };
    // Same file with general.architecture = "llama" renamed to "gemma".
    let mut bytes = std::fs::read(&p).unwrap();
    let key = b"general.architecture";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
    let value = at + key.len() + 4 + 8; // type u32, then string length u64
    assert_eq!(&bytes[value..value + 5], b"llama");
    bytes[value..value + 5].copy_from_slice(b"gemma");
    let e = err_text(&tmp("gemma.gguf", &bytes));
    assert!(e.contains("unsupported architecture `gemma`"), "{e}");
}

#[test]
fn prompts_longer_than_the_context_are_errors() {
    let Ok(m) = lowbit_assets::data_file("models/stories260K.bin") else { return eprintln!("SKIPPED: no stories260K") };
    let l = loader::load(&m, None).unwrap();
    let mut cache = l.model.new_cache(&Policy::f32(), 16).unwrap();
    let prompt: Vec<u32> = (0..20).map(|i| 300 + i).collect();
    match l.model.forward(&prompt, 0, cache.as_mut(), false) {
        Err(EngineError::ContextOverflow { tokens: 20, ctx: 16 }) => {}
        other => panic!("expected a context overflow, got {:?}", other.err()),
    }
    let mut s = lowbit_engine::sample::Sampler::greedy();
    let e = lowbit_engine::generate::generate(&l.model, &l.tokenizer, &prompt, 5, &mut s, cache.as_mut(), |_| {}).unwrap_err();
    assert!(e.to_string().contains("the context holds 16"), "{e}");
    // Out-of-vocabulary ids are refused too.
    let e = l.model.forward(&[9999], 0, cache.as_mut(), false).unwrap_err();
    assert!(matches!(e, EngineError::BadToken { id: 9999, vocab: 512 }), "{e}");
}

#[test]
fn kv_policies_that_do_not_fit_the_model_are_errors() {
    let Ok(m) = lowbit_assets::data_file("models/stories260K.bin") else { return eprintln!("SKIPPED: no stories260K") };
    let l = loader::load(&m, None).unwrap();
    // stories260K's heads have 8 dimensions; q8_0 codes blocks of 32.
    let e = l.model.new_cache(&Policy::parse("q8_0").unwrap(), 16).err().expect("q8_0 cannot code 8-dim heads").to_string();
    assert!(e.contains("head_dim 8"), "{e}");
    // Codecs that fit run the model.
    let mut cache = l.model.new_cache(&Policy::parse("k=turbo4,v=uniform4:g8:asym,sink=1").unwrap(), 16).unwrap();
    let logits = l.model.forward(&[1, 400, 401], 0, cache.as_mut(), false).unwrap();
    assert!(logits.iter().all(|v| v.is_finite()));
}
