//! Saved base logits for KL-divergence runs. Layout (little-endian):
//! magic `LBLOGIT1`, u32 vocab, then per scored position: f32 NLL of the
//! true next token, f32 min and f32 step of the log-probabilities, and
//! `vocab` u16 codes (log p ≈ min + code·step). Written to a temporary file
//! and renamed, so an interrupted run never leaves a half-written file
//! under the final name.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{malformed, EngineError, Result};
use crate::eval::{nll, row_stats};
use crate::sample::argmax;

const MAGIC: &[u8; 8] = b"LBLOGIT1";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io { path: path.to_path_buf(), source }
}

pub struct LogitWriter {
    tmp: PathBuf,
    dest: PathBuf,
    w: BufWriter<std::fs::File>,
}

impl LogitWriter {
    pub fn create(dest: &Path, vocab: usize) -> Result<Self> {
        let tmp = dest.with_extension("partial");
        let f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut w = BufWriter::new(f);
        w.write_all(MAGIC).map_err(io(&tmp))?;
        w.write_all(&(vocab as u32).to_le_bytes()).map_err(io(&tmp))?;
        Ok(LogitWriter { tmp, dest: dest.to_path_buf(), w })
    }

    pub fn row(&mut self, logits: &[f32], target: u32) -> Result<()> {
        let s = row_stats(logits);
        let lp: Vec<f64> = logits.iter().map(|&l| (l - s.max) as f64 - s.log_sum).collect();
        let min = lp.iter().copied().fold(f64::INFINITY, f64::min);
        let step = (-min / 65535.0).max(1e-12);
        let mut buf = Vec::with_capacity(12 + 2 * lp.len());
        buf.extend_from_slice(&(nll(logits, target) as f32).to_le_bytes());
        buf.extend_from_slice(&(min as f32).to_le_bytes());
        buf.extend_from_slice(&(step as f32).to_le_bytes());
        for v in lp {
            buf.extend_from_slice(&(((v - min) / step).round().clamp(0.0, 65535.0) as u16).to_le_bytes());
        }
        self.w.write_all(&buf).map_err(io(&self.tmp))
    }

    pub fn finish(mut self) -> Result<()> {
        self.w.flush().map_err(io(&self.tmp))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(io(&self.dest))
    }
}

pub struct LogitReader {
    path: PathBuf,
    r: BufReader<std::fs::File>,
    vocab: usize,
    buf: Vec<u8>,
}

/// One saved position: the base NLL and its log-probabilities.
pub struct BaseRow {
    pub nll: f64,
    pub logp: Vec<f32>,
}

impl LogitReader {
    pub fn open(path: &Path, vocab: usize) -> Result<Self> {
        let f = std::fs::File::open(path).map_err(io(path))?;
        let mut r = BufReader::new(f);
        let mut head = [0u8; 12];
        r.read_exact(&mut head).map_err(|_| malformed(path, "too short for a logits file"))?;
        if &head[..8] != MAGIC {
            return Err(malformed(path, "not a lowbit logits file (bad magic)"));
        }
        let v = u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize;
        if v != vocab {
            return Err(malformed(path, format!("saved with a vocabulary of {v}, this model has {vocab}")));
        }
        Ok(LogitReader { path: path.to_path_buf(), r, vocab, buf: vec![0u8; 12 + 2 * vocab] })
    }

    pub fn next_row(&mut self) -> Result<BaseRow> {
        self.r
            .read_exact(&mut self.buf)
            .map_err(|_| malformed(&self.path, "ends early: saved with fewer chunks or another context?"))?;
        let f = |i: usize| f32::from_le_bytes([self.buf[i], self.buf[i + 1], self.buf[i + 2], self.buf[i + 3]]);
        let (n, min, step) = (f(0), f(4), f(8));
        let logp = (0..self.vocab).map(|j| min + step * u16::from_le_bytes([self.buf[12 + 2 * j], self.buf[13 + 2 * j]]) as f32).collect();
        Ok(BaseRow { nll: n as f64, logp })
    }
}

/// KL(base ‖ test) from saved base log-probs and test logits. The stored
/// log-probs are renormalized first, which turns the 16-bit rounding's
/// error from first order into second order (an identical run then scores
/// ~1e-8 instead of ~3e-5).
pub fn kld_vs(base: &BaseRow, test: &[f32]) -> f64 {
    let b = row_stats(&base.logp);
    let t = row_stats(test);
    let mut k = 0f64;
    for (&lb, &lt) in base.logp.iter().zip(test) {
        let lpb = (lb - b.max) as f64 - b.log_sum;
        let lpt = (lt - t.max) as f64 - t.log_sum;
        k += lpb.exp() * (lpb - lpt);
    }
    k.max(0.0)
}

/// Running comparison of test logits against saved base rows: mean KLD,
/// top-1 agreement and the base's mean NLL (for ΔPPL).
#[derive(Clone, Debug, Default)]
pub struct KldStats {
    pub rows: usize,
    kld_sum: f64,
    top1: usize,
    base_nll_sum: f64,
}

impl KldStats {
    pub fn add(&mut self, base: &BaseRow, test: &[f32]) {
        self.kld_sum += kld_vs(base, test);
        self.base_nll_sum += base.nll;
        self.top1 += (argmax(&base.logp) == argmax(test)) as usize;
        self.rows += 1;
    }
    pub fn mean_kld(&self) -> f64 {
        self.kld_sum / self.rows.max(1) as f64
    }
    pub fn top1(&self) -> f64 {
        self.top1 as f64 / self.rows.max(1) as f64
    }
    pub fn base_ppl(&self) -> f64 {
        (self.base_nll_sum / self.rows.max(1) as f64).exp()
    }
}
