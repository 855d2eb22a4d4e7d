//! `lowbit quant-bench`: for every format of the table, kernel throughput
//! (encode / decode / dot, elements per second on 1 and 2 threads) and
//! normalized MSE (Σ(x−x̂)²/Σx²) on N(0,1) data and on real weights; plus
//! our Q4_K·Q8_K and Q8_0·Q8_0 dots against candle-core's `vec_dot`
//! measured in the same run.

use anyhow::Result;
use candle_core::quantized::k_quants::{BlockQ4K, BlockQ8K, BlockQ8_0, GgmlType};
use indicatif::{ProgressBar, ProgressStyle};
use lowbit_quant::{Activation, Format};
use serde::Serialize;
use std::hint::black_box;

use crate::real_weights::{self, Tensor};
use crate::timing::{median, median_secs, share};

#[derive(clap::Args)]
pub struct Args {
    /// Print the report as JSON on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Comma-separated specs to measure (default: every preset of the table).
    #[arg(long, value_delimiter = ',')]
    formats: Vec<String>,
    /// Elements per throughput run.
    #[arg(long, default_value_t = 1 << 20)]
    elems: usize,
    /// Timed repeats per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Skip the real-weight error columns (stories260K, SmolLM2).
    #[arg(long)]
    no_real: bool,
}

#[derive(Serialize)]
struct Row {
    format: String,
    bits_per_element: f64,
    block_elems: usize,
    dot_with: &'static str,
    encode_per_s: [f64; 2],
    decode_per_s: [f64; 2],
    dot_per_s: [f64; 2],
    nmse_gaussian: f64,
    nmse_stories260k: Option<f64>,
    nmse_smollm2: Option<f64>,
}

#[derive(Serialize)]
struct VsCandle {
    kernel: &'static str,
    threads: usize,
    ours_per_s: f64,
    candle_per_s: f64,
    ratio: f64,
}

#[derive(Serialize)]
struct Report {
    simd_level: &'static str,
    threads: [usize; 2],
    elems: usize,
    repeats: usize,
    /// Whether candle-core was compiled with AVX2 (it picks SIMD at compile
    /// time; without `-C target-cpu=native` it runs its generic code).
    candle_avx2: bool,
    rows: Vec<Row>,
    vs_candle: Vec<VsCandle>,
    real_weights: Vec<String>,
}

const THREADS: [usize; 2] = [1, 2];

fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut r = lowbit_quant::rng::SplitMix64::new(seed);
    (0..n).map(|_| r.normal() as f32).collect()
}

fn nmse(f: &Format, x: &[f32]) -> Result<(f64, f64)> {
    let n = x.len() - x.len() % f.block_elems();
    let x = &x[..n];
    let y = f.decode(&f.encode(x)?, n)?;
    let err = x.iter().zip(&y).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
    let sig = x.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
    Ok((err, sig))
}

fn nmse_tensors(f: &Format, ts: &[Tensor]) -> Result<Option<f64>> {
    if ts.is_empty() {
        return Ok(None);
    }
    let (mut e, mut s) = (0.0, 0.0);
    for t in ts {
        let (a, b) = nmse(f, &t.data)?;
        e += a;
        s += b;
    }
    Ok(Some(e / s))
}

fn measure(f: &Format, x: &[f32], y: &[f32], repeats: usize) -> Result<Row> {
    let be = f.block_elems();
    let bb = f.block_bytes();
    let n = x.len() - x.len() % be;
    let (x, y) = (&x[..n], &y[..n]);
    let blocks = n / be;
    let codec = f.codec();
    let codes = f.encode(x)?;
    let rate = |secs: f64| n as f64 / secs;
    let mut row = Row {
        format: f.name(),
        bits_per_element: f.bits_per_element(),
        block_elems: be,
        dot_with: match f.activation() {
            Some(Activation::Q8_0) => "q8_0",
            Some(Activation::Q8_1) => "q8_1",
            Some(Activation::Q8K) => "q8_k",
            None => "f32",
        },
        encode_per_s: [0.0; 2],
        decode_per_s: [0.0; 2],
        dot_per_s: [0.0; 2],
        nmse_gaussian: 0.0,
        nmse_stories260k: None,
        nmse_smollm2: None,
    };
    let act = match f.activation() {
        Some(_) => f.quantize_activation(y)?,
        None => Vec::new(),
    };
    let act_bytes = if blocks > 0 { act.len() / blocks } else { 0 };
    for (k, &t) in THREADS.iter().enumerate() {
        let out: Vec<std::sync::Mutex<Vec<u8>>> =
            (0..t).map(|i| std::sync::Mutex::new(vec![0u8; share(blocks, i, t).len() * bb])).collect();
        row.encode_per_s[k] = rate(median_secs(t, repeats, |i, t| {
            let r = share(blocks, i, t);
            let mut o = out[i].lock().unwrap_or_else(|e| e.into_inner());
            codec.encode(&x[r.start * be..r.end * be], None, &mut o);
        }));
        let dec: Vec<std::sync::Mutex<Vec<f32>>> =
            (0..t).map(|i| std::sync::Mutex::new(vec![0f32; share(blocks, i, t).len() * be])).collect();
        row.decode_per_s[k] = rate(median_secs(t, repeats, |i, t| {
            let r = share(blocks, i, t);
            let mut o = dec[i].lock().unwrap_or_else(|e| e.into_inner());
            codec.decode(&codes[r.start * bb..r.end * bb], &mut o);
        }));
        row.dot_per_s[k] = rate(median_secs(t, repeats, |i, t| {
            let r = share(blocks, i, t);
            let c = &codes[r.start * bb..r.end * bb];
            if act.is_empty() {
                black_box(codec.dot_f32(c, &y[r.start * be..r.end * be]));
            } else {
                black_box(codec.dot_q8(c, &act[r.start * act_bytes..r.end * act_bytes]));
            }
        }));
    }
    Ok(row)
}

/// View validated ggml bytes as candle's block structs (identical repr(C)
/// layouts, which the parity tests check byte for byte).
fn as_blocks<T: GgmlType>(bytes: &[u8]) -> Vec<T> {
    let n = bytes.len() / std::mem::size_of::<T>();
    let mut v = vec![T::zeros(); n];
    // SAFETY: T is plain old data of exactly size_of::<T>() bytes per block.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, n * std::mem::size_of::<T>()) };
    v
}

fn vs_candle<W: GgmlType<VecDotType = A>, A: GgmlType>(
    spec: &str,
    kernel: &'static str,
    x: &[f32],
    y: &[f32],
    repeats: usize,
) -> Result<Vec<VsCandle>> {
    let f = Format::parse(spec)?;
    let be = f.block_elems();
    let (codes, act) = (f.encode(x)?, f.quantize_activation(y)?);
    let blocks = x.len() / be;
    let (bb, ab) = (codes.len() / blocks, act.len() / blocks);
    let (cw, ca) = (as_blocks::<W>(&codes), as_blocks::<A>(&act));
    let codec = f.codec();
    let mut out = Vec::new();
    for t in THREADS {
        // Alternate the two kernels run by run so drifts in clock speed or
        // neighbours' load hit both alike; report each one's median.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..repeats.max(1) {
            ours.push(median_secs(t, 1, |i, t| {
                let r = share(blocks, i, t);
                black_box(codec.dot_q8(&codes[r.start * bb..r.end * bb], &act[r.start * ab..r.end * ab]));
            }));
            theirs.push(median_secs(t, 1, |i, t| {
                let r = share(blocks, i, t);
                black_box(W::vec_dot(r.len() * be, &cw[r.clone()], &ca[r]));
            }));
        }
        let (ours, theirs) = (median(ours), median(theirs));
        let n = x.len() as f64;
        out.push(VsCandle { kernel, threads: t, ours_per_s: n / ours, candle_per_s: n / theirs, ratio: theirs / ours });
    }
    Ok(out)
}

fn load_real(no_real: bool) -> (Vec<Tensor>, Vec<Tensor>, Vec<String>) {
    if no_real {
        return (Vec::new(), Vec::new(), Vec::new());
    }
    let mut notes = Vec::new();
    let stories = real_weights::stories260k().unwrap_or_else(|e| {
        eprintln!("warning: stories260K weights unavailable ({e}); its column is left empty");
        Vec::new()
    });
    let smol = real_weights::smollm2_sample().unwrap_or_else(|e| {
        eprintln!("warning: SmolLM2 weights unavailable ({e}); its column is left empty");
        Vec::new()
    });
    let count = |ts: &[Tensor]| ts.iter().map(|t| t.data.len()).sum::<usize>();
    if !stories.is_empty() {
        notes.push(format!("stories260K: {} matrices, {} weights (fp32)", stories.len(), count(&stories)));
    }
    if !smol.is_empty() {
        notes.push(format!(
            "SmolLM2-135M blocks 0/15/29: {} matrices, {} weights (stored Q4_1, so q4_1 re-quantizes nearly free)",
            smol.len(),
            count(&smol)
        ));
    }
    (stories, smol, notes)
}

pub fn run(a: Args) -> Result<()> {
    let specs: Vec<String> = if a.formats.is_empty() {
        lowbit_quant::registry::presets().map(String::from).collect()
    } else {
        a.formats.clone()
    };
    let formats = specs.iter().map(|s| Format::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let n = a.elems.max(4096);
    let x = gaussian(n, 1);
    let y = gaussian(n, 2);
    let (stories, smol, real_notes) = load_real(a.no_real);

    let pb = ProgressBar::new(formats.len() as u64 + 1);
    pb.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]").expect("valid template"));
    let mut rows = Vec::new();
    for f in &formats {
        pb.set_message(f.name());
        let mut row = measure(f, &x, &y, a.repeats)?;
        let (e, s) = nmse(f, &x)?;
        row.nmse_gaussian = e / s;
        row.nmse_stories260k = nmse_tensors(f, &stories)?;
        row.nmse_smollm2 = nmse_tensors(f, &smol)?;
        rows.push(row);
        pb.inc(1);
    }
    pb.set_message("vs candle");
    let m = n - n % 256;
    let mut cmp = vs_candle::<BlockQ4K, BlockQ8K>("q4_k", "q4_k·q8_k", &x[..m], &y[..m], a.repeats)?;
    cmp.extend(vs_candle::<BlockQ8_0, BlockQ8_0>("q8_0", "q8_0·q8_0", &x[..m], &y[..m], a.repeats)?);
    pb.finish_and_clear();

    let report = Report {
        simd_level: lowbit_quant::simd::level().name(),
        threads: THREADS,
        elems: n,
        repeats: a.repeats,
        candle_avx2: cfg!(target_feature = "avx2"),
        rows,
        vs_candle: cmp,
        real_weights: real_notes,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

fn g(v: f64) -> String {
    format!("{:.1}", v / 1e6)
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.5}")).unwrap_or_else(|| "-".into())
}

fn print_table(r: &Report) {
    println!(
        "lowbit quant-bench — SIMD {}, {} elements, median of {} runs; throughput in M elements/s (1 thread / 2 threads)",
        r.simd_level, r.elems, r.repeats
    );
    for n in &r.real_weights {
        println!("  real weights: {n}");
    }
    println!(
        "{:<20} {:>7} {:>5} {:>17} {:>17} {:>17} {:>9} {:>9} {:>9}",
        "format", "bits/el", "dot", "encode", "decode", "dot", "nmse N01", "stories", "smollm2"
    );
    for w in &r.rows {
        println!(
            "{:<20} {:>7.4} {:>5} {:>8} /{:>7} {:>8} /{:>7} {:>8} /{:>7} {:>9.5} {:>9} {:>9}",
            w.format,
            w.bits_per_element,
            w.dot_with,
            g(w.encode_per_s[0]),
            g(w.encode_per_s[1]),
            g(w.decode_per_s[0]),
            g(w.decode_per_s[1]),
            g(w.dot_per_s[0]),
            g(w.dot_per_s[1]),
            w.nmse_gaussian,
            opt(w.nmse_stories260k),
            opt(w.nmse_smollm2)
        );
    }
    println!("\nagainst candle-core {} (same data, same run; candle built with AVX2: {})", "0.9", r.candle_avx2);
    for c in &r.vs_candle {
        println!(
            "  {:<12} {} thread(s): lowbit {:>8} M/s  candle {:>8} M/s  ratio {:.2}x",
            c.kernel,
            c.threads,
            g(c.ours_per_s),
            g(c.candle_per_s),
            c.ratio
        );
    }
}
