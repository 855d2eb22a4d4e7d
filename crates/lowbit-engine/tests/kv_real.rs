//! Every KV codec's attention output against the f32 reference on real
//! SmolLM2-135M keys, values and queries captured from a WikiText-2 window.

use std::sync::Mutex;

use lowbit_engine::kv::{DenseCache, KvCache, KvShape, PagedCache, Policy, SeqCache};
use lowbit_engine::loader;
use lowbit_quant::rng::SplitMix64;

/// An f32 cache that also keeps every layer's keys, values and queries.
struct Recorder {
    inner: DenseCache,
    seen: Mutex<Vec<(Vec<f32>, Vec<f32>, Vec<f32>)>>,
}

impl KvCache for Recorder {
    fn store(&mut self, l: usize, pos0: usize, k: &[f32], v: &[f32]) {
        let s = &mut self.seen.lock().unwrap()[l];
        s.0.extend_from_slice(k);
        s.1.extend_from_slice(v);
        self.inner.store(l, pos0, k, v)
    }
    fn attend(&self, l: usize, pos: usize, q: &[f32], out: &mut [f32]) {
        self.seen.lock().unwrap()[l].2.extend_from_slice(q);
        self.inner.attend(l, pos, q, out)
    }
    fn attend_batch(&self, l: usize, pos0: usize, n: usize, q: &[f32], out: &mut [f32]) {
        self.seen.lock().unwrap()[l].2.extend_from_slice(q);
        self.inner.attend_batch(l, pos0, n, q, out)
    }
    fn bytes_for(&self, t: usize) -> usize {
        self.inner.bytes_for(t)
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64) * (*y as f64)).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

/// Each layer's keys, values and queries of SmolLM2 on the first `n`
/// tokens of WikiText-2, and each layer's f32 attention output over them;
/// `None` (with the reason printed) when the model or text is missing.
struct Captured {
    shape: KvShape,
    n: usize,
    seen: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    reference: Vec<Vec<f32>>,
}

fn capture(n: usize) -> Option<Captured> {
    let path = match lowbit_assets::smollm2_gguf() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIPPED: SmolLM2 unavailable: {e}");
            return None;
        }
    };
    let text = match lowbit_assets::data_file("text/wikitext-2-raw-test.txt") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            return None;
        }
    };
    let l = loader::load(&path, None).unwrap();
    let text = std::fs::read_to_string(text).unwrap();
    let tokens = l.tokenizer.encode(&text[..12_000], true).unwrap();
    assert!(tokens.len() >= n);
    let shape: KvShape = l.model.kv_shape(n);
    let mut rec = Recorder { inner: DenseCache::new(shape), seen: Mutex::new(vec![Default::default(); shape.n_layers]) };
    l.model.forward(&tokens[..n], 0, &mut rec, false).unwrap();
    let seen = rec.seen.into_inner().unwrap();
    // Reference outputs per layer.
    let reference: Vec<Vec<f32>> = seen.iter().map(|(k, v, q)| attention(DenseCache::new(KvShape { n_layers: 1, ..shape }), shape, n, k, v, q)).collect();
    Some(Captured { shape, n, seen, reference })
}

/// One layer's attention output over keys `k` and values `v`, stored in
/// `c` (a one-layer cache of `shape`).
fn attention(mut c: impl KvCache, shape: KvShape, n: usize, k: &[f32], v: &[f32], q: &[f32]) -> Vec<f32> {
    c.store(0, 0, k, v);
    let mut out = vec![0f32; n * shape.n_heads * shape.head_dim];
    c.attend_batch(0, 0, n, q, &mut out);
    out
}

/// Mean over queries of the cosine between two layers' outputs.
fn mean_cosine(shape: KvShape, out: &[f32], reference: &[f32]) -> f64 {
    let w = shape.n_heads * shape.head_dim;
    out.chunks(w).zip(reference.chunks(w)).map(|(a, b)| cosine(a, b)).sum::<f64>() / (out.len() / w) as f64
}

#[test]
fn codecs_keep_attention_close_on_real_smollm2_kv() {
    let Some(Captured { shape, n, seen, reference }) = capture(512) else { return };
    let mut failures = Vec::new();
    eprintln!("{:<28} {:>9} {:>11} {:>11}", "policy", "bits/el", "mean cos", "worst layer");
    // (policy, the threshold when this policy is one lowbit claims
    // at that width; 0 = measured and printed only). turbo4 meets 0.99 since
    // the cache codes its tokens with `:fit` (lowbit-quant rot/turbo.rs;
    // 0.988 before), polar4 since its pairs are coded on ring constellations
    // (rot/rings.rs; 0.9897 before); the other plain per-token codecs without
    // `+center` / `sink=1` still miss 0.99 at 4 bits on these heads (the keys'
    // error dominates: compare the k-only and v-only rows); the table printed
    // here is quoted in docs/quality.md.
    for (spec, min_cos) in [
        ("q8_0", 0.999),
        ("k=turbo4,v=f16", 0.0),
        ("k=f16,v=turbo4", 0.0),
        ("q4_0", 0.0),
        ("q4_1", 0.0),
        ("turbo4", 0.99),
        ("polar4", 0.99),
        ("k=turbo4p,v=f16", 0.0),
        ("uniform4:g32:asym+rht", 0.99),
        ("kivi4", 0.99),
        ("turbo4+center,sink=1", 0.99),
        ("turbo4,sink=1", 0.99),
        ("polar4+center,sink=1", 0.99),
        ("k=kivi4:g64,v=turbo4+center,sink=1", 0.99),
        ("turbo3", 0.0),
        ("polar3", 0.0),
        ("kivi3", 0.0),
        ("k=kivi3:g64,v=turbo3+center,sink=1", 0.0),
        ("k=qjl,v=f16", 0.0),
        ("turbo2", 0.0),
        ("kivi2", 0.0),
        ("kivi2,sink=1", 0.0),
        ("k=kivi2,v=turbo2+center,sink=1", 0.95),
        ("turbo2+center,sink=1", 0.95),
        ("k=kivi3:g64,v=turbo2+center,sink=1", 0.95),
    ] {
        let p = Policy::parse(spec).unwrap();
        let mut per_layer = Vec::new();
        for (layer, (k, v, q)) in seen.iter().enumerate() {
            let out = attention(SeqCache::new(KvShape { n_layers: 1, ..shape }, &p).unwrap(), shape, n, k, v, q);
            per_layer.push(mean_cosine(shape, &out, &reference[layer]));
        }
        let mean = per_layer.iter().sum::<f64>() / per_layer.len() as f64;
        let worst = per_layer.iter().copied().fold(1.0, f64::min);
        let c = PagedCache::new(shape, &p).unwrap();
        let bits = c.bytes_for(n) as f64 * 8.0 / (n * 2 * shape.n_layers * shape.kv_dim()) as f64;
        eprintln!("{:<28} {:>9.3} {:>11.5} {:>11.5}", p.to_string(), bits, mean, worst);
        if mean < min_cos {
            failures.push(format!("{spec}: mean cosine {mean:.5} < {min_cos}"));
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// The best any code of `bits` bits per coordinate could do on a Gaussian
/// source: the rate–distortion test channel x̂ = a·x + w (a = 1 − 4^-bits,
/// w ~ N(0, a·4^-bits·σ²) per coordinate, σ² = ‖x‖²/d of the token's
/// vector in one KV head), the error's squared norm 4^-bits·‖x‖² — a
/// fraction of plain Lloyd–Max's (0.117 at 2 bits, 0.0095 at 4). Applied
/// to every token's key and value in every KV head (the law is isotropic,
/// so a rotation changes nothing). If even this channel's attention stays
/// under the 0.95 at 2 bits, no per-token codec that treats a
/// rotated token as Gaussian coordinates (turbo2) can reach it on these
/// heads; the 2-bit policies that do reach it remove the keys' per-channel
/// means first (`+center`, with the attention sink kept).
#[test]
fn the_gaussian_rate_distortion_bound_on_real_smollm2_kv() {
    let Some(Captured { shape, n, seen, reference }) = capture(512) else { return };
    let d = shape.head_dim;
    let channel = |x: &[f32], bits: i32, rng: &mut SplitMix64| -> Vec<f32> {
        let dist = 4f64.powi(-bits);
        let a = 1.0 - dist;
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks(d) {
            let s2 = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / d as f64;
            let sd = (a * dist * s2).sqrt();
            out.extend(row.iter().map(|v| (a * *v as f64 + sd * rng.normal()) as f32));
        }
        out
    };
    let mut cos = Vec::new();
    for bits in [2, 3, 4] {
        let mut rng = SplitMix64::new(0x5244 + bits as u64);
        let mut per_layer = Vec::new();
        for (layer, (k, v, q)) in seen.iter().enumerate() {
            let out = attention(DenseCache::new(KvShape { n_layers: 1, ..shape }), shape, n, &channel(k, bits, &mut rng), &channel(v, bits, &mut rng), q);
            per_layer.push(mean_cosine(shape, &out, &reference[layer]));
        }
        let mean = per_layer.iter().sum::<f64>() / per_layer.len() as f64;
        let worst = per_layer.iter().copied().fold(1.0, f64::min);
        eprintln!("Gaussian test channel at {bits} bits/coordinate: mean cosine {mean:.5}, worst layer {worst:.5}");
        cos.push(mean);
    }
    assert!(cos[0] < cos[1] && cos[1] < cos[2], "more bits, less noise: {cos:?}");
    assert!(cos[2] >= 0.99, "4 bits per coordinate can reach the issue's 0.99: {:.5}", cos[2]);
    assert!(cos[0] < 0.95, "the 2-bit bound {:.5} reaches 0.95: plain 2-bit codecs are not ruled out", cos[0]);
}
