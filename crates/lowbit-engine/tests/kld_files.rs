//! Saved base logits and KLD: saving and re-reading the same model gives
//! KLD ≈ 0 and full top-1 agreement; a lossier run (weights re-stored in
//! bf16; stories260K's 172-wide rows fit no 32-block format) gives a
//! positive KLD. On stories260K and TinyStories text.

use lowbit_engine::eval::perplexity;
use lowbit_engine::logits_file::{KldStats, LogitReader, LogitWriter};
use lowbit_engine::{loader, Model, Policy};

fn run(model: &Model, tokens: &[u32], save: Option<&std::path::Path>, base: Option<&std::path::Path>) -> (f64, f64, f64) {
    let vocab = model.config.vocab;
    let mut w = save.map(|p| LogitWriter::create(p, vocab).unwrap());
    let mut r = base.map(|p| LogitReader::open(p, vocab).unwrap());
    let mut cmp = KldStats::default();
    let rep = perplexity(model, tokens, 128, Some(4), Some(1), &|| model.new_cache(&Policy::f32(), 128), |_, scored, targets| {
        for (row, &t) in scored.chunks_exact(vocab).zip(targets) {
            if let Some(w) = w.as_mut() {
                w.row(row, t)?;
            }
            if let Some(r) = r.as_mut() {
                cmp.add(&r.next_row()?, row);
            }
        }
        Ok(())
    })
    .unwrap();
    if let Some(w) = w {
        w.finish().unwrap();
    }
    (rep.ppl, cmp.mean_kld(), cmp.top1())
}

#[test]
fn kld_against_saved_logits() {
    let Ok(m) = lowbit_assets::data_file("models/stories260K.bin") else { return eprintln!("SKIPPED: no stories260K") };
    let text = std::fs::read_to_string(lowbit_assets::data_file("text/tinystories-valid-1000.txt").unwrap()).unwrap();
    let l = loader::load(&m, None).unwrap();
    let tokens = l.tokenizer.encode(&text[..20_000], true).unwrap();
    let dir = std::env::temp_dir().join(format!("lowbit-kld-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("base.logits");
    let (ppl, _, _) = run(&l.model, &tokens, Some(&base), None);
    assert!(base.is_file() && !dir.join("base.partial").exists());
    let (same_ppl, same_kld, same_top1) = run(&l.model, &tokens, None, Some(&base));
    assert_eq!(ppl, same_ppl);
    assert!(same_kld < 1e-6 && same_top1 == 1.0, "kld {same_kld} top1 {same_top1}");
    let q4 = l.model.requantized(&lowbit_quant::Format::parse("bf16").unwrap()).unwrap().0;
    let (q_ppl, q_kld, q_top1) = run(&q4, &tokens, None, Some(&base));
    eprintln!("stories260K ctx 128 x4: f32 PPL {ppl:.4}; bf16 weights PPL {q_ppl:.4}, KLD {q_kld:.5}, top-1 {:.1}%", 100.0 * q_top1);
    assert!(q_kld > 1e-7 && q_kld < 1e-2 && q_top1 > 0.9, "bf16: kld {q_kld} top1 {q_top1}");
    // A logits file from another vocabulary is refused.
    assert!(LogitReader::open(&base, 1000).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
