//! `lowbit index build|search|bench`: compressed vector search from the
//! command line (the work lives in lowbit-index).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use lowbit_index::{file, recall_at, vecio, Index, IndexSpec, Metric, Vectors};
use serde::Serialize;

use crate::timing::median;

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Train an index on vectors, add them (ids 0..n) and save it.
    Build(BuildArgs),
    /// Search a saved index with query vectors.
    Search(SearchArgs),
    /// Build each spec in memory and report recall@1/10/100, queries/s on
    /// 1 and 2 threads, bytes per vector and build time.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// Vectors to index (.fvecs, .bvecs or .npy).
    #[arg(long)]
    base: PathBuf,
    /// Index spec, e.g. `ivf256,turbo4` or `ivf64,pca4` (grammar: lowbit_index::spec; README).
    #[arg(long, default_value = "ivf256,turbo4")]
    spec: String,
    /// `l2` or `ip` (inner product; cosine on unit vectors).
    #[arg(long, default_value = "l2")]
    metric: String,
    #[arg(long, short)]
    out: PathBuf,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

#[derive(clap::Args)]
pub struct SearchArgs {
    #[arg(long)]
    index: PathBuf,
    /// Query vectors (.fvecs, .bvecs or .npy).
    #[arg(long)]
    query: PathBuf,
    #[arg(long, short, default_value_t = 10)]
    k: usize,
    /// Lists visited per query (IVF).
    #[arg(long, default_value_t = 16)]
    nprobe: usize,
    /// Ground-truth neighbours (.ivecs): report recall@k.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Write the result ids as .ivecs.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[arg(long)]
    base: PathBuf,
    #[arg(long)]
    query: PathBuf,
    /// Exact neighbours (.ivecs); computed with an exact flat index when absent.
    #[arg(long)]
    gt: Option<PathBuf>,
    #[arg(long, default_value = "l2")]
    metric: String,
    /// Index specs, separated by `;`.
    #[arg(long, value_delimiter = ';', default_value = "flat;flat,turbo4;flat,pca4;ivf64,turbo4;ivf64,turbo4,rerank=8")]
    specs: Vec<String>,
    /// nprobe values tried for IVF specs.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32")]
    nprobe: Vec<usize>,
    /// Thread counts queries/s is measured with.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Timed passes over all queries (median reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long)]
    json: bool,
}

pub fn run(c: Cmd) -> Result<()> {
    match c {
        Cmd::Build(a) => build_cmd(a),
        Cmd::Search(a) => search_cmd(a),
        Cmd::Bench(a) => bench_cmd(a),
    }
}

fn read(path: &Path) -> Result<Vectors<f32>> {
    let v = vecio::read_vectors(path)?;
    anyhow::ensure!(!v.is_empty(), "{} holds no vectors", path.display());
    Ok(v)
}

/// Train and fill an index, with a progress bar per stage.
fn build(spec: IndexSpec, metric: Metric, base: &Vectors<f32>, seed: u64, quiet: bool) -> Result<Index> {
    let mut ix = Index::new(spec, metric, base.dim, seed)?;
    let pb = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    pb.set_style(ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {eta}").unwrap().progress_chars("=> "));
    let progress = |stage: &str, done: usize, total: usize| {
        pb.set_message(format!("{spec} {stage}"));
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    };
    if !ix.is_trained() {
        ix.train(&base.data, &progress)?;
    }
    ix.add(&base.data, None, &progress)?;
    pb.finish_and_clear();
    Ok(ix)
}

fn build_cmd(a: BuildArgs) -> Result<()> {
    let spec = IndexSpec::parse(&a.spec)?;
    let metric = Metric::parse(&a.metric)?;
    let base = read(&a.base)?;
    let t = Instant::now();
    let ix = build(spec, metric, &base, a.seed, false)?;
    let secs = t.elapsed().as_secs_f64();
    file::save(&ix, &a.out).with_context(|| format!("saving {}", a.out.display()))?;
    let size = std::fs::metadata(&a.out)?.len();
    println!(
        "{}: {} vectors × {} dims, spec {spec}, metric {}, built in {secs:.2} s; {} bytes/vector (ids apart), file {:.2} MiB",
        a.out.display(),
        ix.len(),
        ix.dim,
        metric.name(),
        ix.bytes_per_vector(),
        size as f64 / (1 << 20) as f64
    );
    Ok(())
}

fn search_cmd(a: SearchArgs) -> Result<()> {
    let ix = file::load(&a.index)?;
    let q = read(&a.query)?;
    if q.dim != ix.dim {
        return Err(lowbit_index::IndexError::Dim { expected: ix.dim, got: q.dim }).with_context(|| format!("queries in {}", a.query.display()));
    }
    let t = Instant::now();
    let hits = ix.search(&q.data, a.k, a.nprobe)?;
    let secs = t.elapsed().as_secs_f64();
    let recall = match &a.gt {
        Some(p) => Some(recall_at(&hits, &vecio::read_ivecs(p)?, a.k)),
        None => None,
    };
    if let Some(out) = &a.out {
        vecio::write_ivecs(out, &Vectors { dim: a.k, data: hits.ids.iter().map(|&i| i as i32).collect() })?;
    }
    if a.json {
        #[derive(Serialize)]
        struct Out<'a> {
            k: usize,
            nprobe: usize,
            queries: usize,
            seconds: f64,
            recall: Option<f64>,
            ids: &'a [i64],
            dists: &'a [f32],
        }
        let o = Out { k: a.k, nprobe: a.nprobe, queries: q.len(), seconds: secs, recall, ids: &hits.ids, dists: &hits.dists };
        println!("{}", serde_json::to_string(&o)?);
        return Ok(());
    }
    for i in 0..q.len().min(5) {
        let row: Vec<String> = hits.ids_of(i).iter().zip(&hits.dists[i * a.k..]).map(|(id, d)| format!("{id}:{d:.4}")).collect();
        println!("query {i}: {}", row.join(" "));
    }
    if q.len() > 5 {
        println!("… {} more queries", q.len() - 5);
    }
    print!("{} queries in {:.3} s ({:.0} queries/s)", q.len(), secs, q.len() as f64 / secs);
    match recall {
        Some(r) => println!(", recall@{} {r:.4}", a.k),
        None => println!(),
    }
    Ok(())
}

#[derive(Serialize)]
struct Row {
    spec: String,
    nprobe: usize,
    bytes_per_vector: usize,
    build_secs: f64,
    recall_at_1: f64,
    recall_at_10: f64,
    recall_at_100: f64,
    /// (threads, queries per second), k = 10.
    qps: Vec<(usize, f64)>,
}

/// Median queries/s of a full pass over the queries on a pool of `threads`.
fn qps(ix: &Index, q: &Vectors<f32>, k: usize, nprobe: usize, threads: usize, repeats: usize) -> Result<f64> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    pool.install(|| {
        let once = Instant::now();
        ix.search(&q.data, k, nprobe)?;
        // Passes long enough (≥ 0.2 s) that timer noise does not matter.
        let inner = ((0.2 / once.elapsed().as_secs_f64().max(1e-6)).ceil() as usize).clamp(1, 10_000);
        let mut secs = Vec::new();
        for _ in 0..repeats.max(1) {
            let t = Instant::now();
            for _ in 0..inner {
                ix.search(&q.data, k, nprobe)?;
            }
            secs.push(t.elapsed().as_secs_f64() / inner as f64);
        }
        Ok(q.len() as f64 / median(secs))
    })
}

fn bench_cmd(a: BenchArgs) -> Result<()> {
    let metric = Metric::parse(&a.metric)?;
    let specs: Vec<IndexSpec> = a.specs.iter().map(|s| IndexSpec::parse(s)).collect::<Result<_, _>>()?;
    let base = read(&a.base)?;
    let q = read(&a.query)?;
    anyhow::ensure!(q.dim == base.dim, "queries have {} dims, base vectors {}", q.dim, base.dim);
    let gt = match &a.gt {
        Some(p) => vecio::read_ivecs(p)?,
        None => {
            let exact = build(IndexSpec::parse("flat")?, metric, &base, a.seed, true)?;
            let h = exact.search(&q.data, 100.min(base.len()), 1)?;
            Vectors { dim: h.k, data: h.ids.iter().map(|&i| i as i32).collect() }
        }
    };
    anyhow::ensure!(gt.len() == q.len(), "ground truth has {} rows for {} queries", gt.len(), q.len());
    let mut rows = Vec::new();
    if !a.json {
        let th: Vec<String> = a.threads.iter().map(|t| format!("{:>9}", format!("q/s {t}t"))).collect();
        println!("{:<28} {:>6} {:>7} {:>8} {:>7} {:>7} {:>7} {}", "spec", "nprobe", "B/vec", "build s", "R@1", "R@10", "R@100", th.join(" "));
    }
    for spec in specs {
        let t = Instant::now();
        let ix = build(spec, metric, &base, a.seed, a.json)?;
        let build_secs = t.elapsed().as_secs_f64();
        // Effective probe counts (capped at the list count), each once.
        let mut probes: Vec<usize> = a.nprobe.iter().map(|&p| p.clamp(1, ix.nlist())).collect();
        probes.dedup();
        for &np in &probes {
            let h100 = ix.search(&q.data, 100.min(ix.len()), np)?;
            let h10 = ix.search(&q.data, 10, np)?;
            let row = Row {
                spec: spec.to_string(),
                nprobe: np,
                bytes_per_vector: ix.bytes_per_vector(),
                build_secs,
                recall_at_1: recall_at(&h10, &gt, 1),
                recall_at_10: recall_at(&h10, &gt, 10),
                recall_at_100: recall_at(&h100, &gt, 100),
                qps: a.threads.iter().map(|&t| Ok((t, qps(&ix, &q, 10, np, t, a.repeats)?))).collect::<Result<_>>()?,
            };
            if !a.json {
                let th: Vec<String> = row.qps.iter().map(|(_, v)| format!("{v:>9.0}")).collect();
                println!(
                    "{:<28} {:>6} {:>7} {:>8.2} {:>7.4} {:>7.4} {:>7.4} {}",
                    row.spec,
                    np,
                    row.bytes_per_vector,
                    build_secs,
                    row.recall_at_1,
                    row.recall_at_10,
                    row.recall_at_100,
                    th.join(" ")
                );
            }
            rows.push(row);
        }
    }
    if a.json {
        #[derive(Serialize)]
        struct Report {
            base: String,
            queries: usize,
            dim: usize,
            metric: &'static str,
            recall: &'static str,
            rows: Vec<Row>,
        }
        let r = Report {
            base: a.base.display().to_string(),
            queries: q.len(),
            dim: base.dim,
            metric: metric.name(),
            recall: "R@n = share of each query's true n nearest found among its first n results",
            rows,
        };
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(())
}
