//! `lowbit eval ppl`: perplexity with llama.cpp's protocol, optionally
//! saving base logits or comparing against them (ΔPPL, KLD, top-1).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use lowbit_engine::eval::perplexity;
use lowbit_engine::logits_file::{KldStats, LogitReader, LogitWriter};
use serde::Serialize;

use crate::model_args::ModelArgs;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Perplexity over a text file (llama.cpp's protocol: non-overlapping
    /// windows, second half of each scored).
    Ppl(PplArgs),
}

#[derive(clap::Args)]
pub struct PplArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Text file to score (e.g. ../shared/data/text/wikitext-2-raw-test.txt).
    #[arg(long)]
    text: PathBuf,
    #[arg(long, default_value_t = 512)]
    ctx: usize,
    /// Score only the first N windows.
    #[arg(long)]
    chunks: Option<usize>,
    /// Save the scored positions' log-probabilities for later --kld-base runs.
    #[arg(long)]
    save_logits: Option<PathBuf>,
    /// Compare against logits saved by --save-logits: ΔPPL, mean KLD, top-1.
    #[arg(long)]
    kld_base: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Serialize, Default)]
struct Report {
    ctx: usize,
    chunks: usize,
    scored_tokens: usize,
    ppl: f64,
    mean_nll: f64,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_ppl: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta_ppl_pct: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_kld: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top1_agreement: Option<f64>,
}

pub fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Ppl(a) => ppl(a),
    }
}

fn ppl(a: PplArgs) -> Result<()> {
    let l = a.model.load()?;
    let text = std::fs::read(&a.text).with_context(|| format!("reading {}", a.text.display()))?;
    let text = String::from_utf8_lossy(&text);
    let adds_bos = l.tokenizer.adds_bos();
    let tokens = l.tokenizer.encode(&text, adds_bos)?;
    let available = tokens.len() / a.ctx;
    let n = a.chunks.map_or(available, |c| c.min(available));
    eprintln!("lowbit: {} tokens, {} windows of {} (scoring {n})", tokens.len(), available, a.ctx);
    let vocab = l.model.config.vocab;
    let mut writer = a.save_logits.as_deref().map(|p| LogitWriter::create(p, vocab)).transpose()?;
    let mut reader = a.kld_base.as_deref().map(|p| LogitReader::open(p, vocab)).transpose()?;
    let mut cmp = KldStats::default();
    let pb = ProgressBar::new(n as u64);
    pb.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} windows  {msg}  [{elapsed}<{eta}]").expect("valid template"));
    let policy = a.model.policy()?;
    l.model.new_cache(&policy, a.ctx)?;
    let t = Instant::now();
    let rep = perplexity(
        &l.model,
        &tokens,
        a.ctx,
        Some(n),
        if adds_bos { l.tokenizer.bos() } else { None },
        &|| l.model.new_cache(&policy, a.ctx),
        |_, scored, targets| {
            for (row, &target) in scored.chunks_exact(vocab).zip(targets) {
                if let Some(w) = writer.as_mut() {
                    w.row(row, target)?;
                }
                if let Some(r) = reader.as_mut() {
                    cmp.add(&r.next_row()?, row);
                }
            }
            pb.inc(1);
            Ok(())
        },
    )?;
    pb.finish_and_clear();
    if let Some(w) = writer {
        w.finish()?;
    }
    let mut r = Report {
        ctx: a.ctx,
        chunks: rep.chunks,
        scored_tokens: rep.scored_tokens,
        ppl: rep.ppl,
        mean_nll: rep.mean_nll,
        seconds: t.elapsed().as_secs_f64(),
        ..Default::default()
    };
    if cmp.rows > 0 {
        r.base_ppl = Some(cmp.base_ppl());
        r.delta_ppl_pct = Some(100.0 * (rep.ppl / cmp.base_ppl() - 1.0));
        r.mean_kld = Some(cmp.mean_kld());
        r.top1_agreement = Some(cmp.top1());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "PPL = {:.4} over {} windows of {} ({} scored tokens, mean NLL {:.5}) in {:.1}s",
            r.ppl, r.chunks, r.ctx, r.scored_tokens, r.mean_nll, r.seconds
        );
        if let (Some(b), Some(d), Some(k), Some(t1)) = (r.base_ppl, r.delta_ppl_pct, r.mean_kld, r.top1_agreement) {
            println!("vs base: base PPL {b:.4}, ΔPPL {d:+.3}%, mean KLD {k:.6}, top-1 agreement {:.2}%", 100.0 * t1);
        }
    }
    Ok(())
}
