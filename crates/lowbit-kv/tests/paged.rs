//! The paged cache on random data: prefill equals step-by-step decode,
//! f16 equals the f32 reference, byte accounting, causality, forks.

use lowbit_kv::paged::Stored;
use lowbit_kv::{DenseCache, KvCache, KvShape, PagedCache, Policy, SeqCache};

const SHAPE: KvShape = KvShape { n_layers: 2, n_heads: 6, n_kv_heads: 2, head_dim: 64, max_seq: 512 };

/// Deterministic pseudo-random rows with per-channel scales (like real keys).
fn rows(n: usize, width: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n * width)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 11) as f32 / (1u64 << 53) as f32 - 0.5;
            u * (1.0 + (i % width % 7) as f32)
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// Outputs of all queries: one batch store + attend_batch, or token by token.
fn run(cache: &mut dyn KvCache, n: usize, batched: bool) -> Vec<f32> {
    let (kvd, w) = (SHAPE.kv_dim(), SHAPE.n_heads * SHAPE.head_dim);
    let (k, v, q) = (rows(n, kvd, 1), rows(n, kvd, 2), rows(n, w, 3));
    let mut out = vec![0f32; n * w];
    for layer in 0..SHAPE.n_layers {
        if batched {
            cache.store(layer, 0, &k, &v);
            cache.attend_batch(layer, 0, n, &q, &mut out);
        } else {
            for t in 0..n {
                cache.store(layer, t, &k[t * kvd..(t + 1) * kvd], &v[t * kvd..(t + 1) * kvd]);
                cache.attend(layer, t, &q[t * w..(t + 1) * w], &mut out[t * w..(t + 1) * w]);
            }
        }
    }
    out
}

#[test]
fn prefill_sees_what_decode_sees() {
    for spec in ["f16", "q8_0", "k=turbo4,v=turbo3,window=20", "kivi2:g32,window=8", "k=kivi4:g64,v=q4_0+rht", "k=turbo3p,v=polar4,window=3", "k=turbo3+center,v=q4_0+center,window=5", "kivi2,sink=5,window=3"] {
        let p = Policy::parse(spec).unwrap();
        let a = run(&mut SeqCache::new(SHAPE, &p).unwrap(), 150, true);
        let b = run(&mut SeqCache::new(SHAPE, &p).unwrap(), 150, false);
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "{spec}: prefill and decode differ by {worst}");
    }
}

#[test]
fn f16_matches_the_f32_reference_and_codecs_stay_close() {
    let n = 200;
    let want = run(&mut DenseCache::new(SHAPE), n, true);
    for (spec, min_cos) in [("f16", 0.99999), ("q8_0", 0.9998), ("turbo4", 0.95), ("kivi4", 0.95), ("turbo2", 0.6), ("kivi2", 0.6)] {
        let got = run(&mut SeqCache::new(SHAPE, &Policy::parse(spec).unwrap()).unwrap(), n, false);
        let w = SHAPE.n_heads * SHAPE.head_dim;
        let worst = got.chunks(w).zip(want.chunks(w)).map(|(a, b)| cosine(a, b)).fold(1f32, f32::min);
        assert!(worst >= min_cos, "{spec}: worst per-token cosine {worst} < {min_cos}");
    }
}

/// Attention on the compressed cache equals f32 attention over the decoded
/// rows: the kernels compute exactly what the codes say.
#[test]
fn compressed_attention_equals_attention_over_decoded_rows() {
    let (kvd, d, n) = (SHAPE.kv_dim(), SHAPE.head_dim, 90);
    for spec in ["q8_0", "q4_0+rht", "turbo4", "turbo3p", "polar4", "qjl", "k=uniform3:g32:asym,v=turbo2"] {
        let p = Policy::parse(spec).unwrap();
        let roundtrip = |x: &[f32], c: &lowbit_kv::CodecSpec, is_key: bool| -> Vec<f32> {
            let codec = lowbit_kv::codec::build(c, is_key, d, 32).unwrap().unwrap();
            let mut out = x.to_vec();
            for row in out.chunks_exact_mut(d) {
                let r16: Vec<f32> = row.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
                let mut region = vec![0u8; codec.head_bytes()];
                codec.encode(&r16, 0, &mut region);
                codec.decode(&region, 0, 1, row);
                if let Some(r) = codec.rotation() {
                    r.inverse(row);
                }
            }
            out
        };
        let (k, v) = (rows(n, kvd, 1), rows(n, kvd, 2));
        let (kd, vd) = (roundtrip(&k, &p.k, true), roundtrip(&v, &p.v, false));
        let w = SHAPE.n_heads * d;
        let q = rows(n, w, 3);
        // Keys with an integer dot product are scored against the query
        // quantized to 8 bits (q/√d, and √d = 8 scales q8_0 exactly).
        let q_ref: Vec<f32> = match lowbit_kv::codec::build(&p.k, true, d, 32).unwrap().unwrap().activation() {
            Some(a) => {
                let f = lowbit_quant::act_format(a);
                let scaled: Vec<f32> = q.iter().map(|x| x / 8.0).collect();
                f.decode(&f.encode(&scaled).unwrap(), q.len()).unwrap().iter().map(|x| x * 8.0).collect()
            }
            None => q.clone(),
        };
        let mut paged = SeqCache::new(SHAPE, &p).unwrap();
        let mut dense = DenseCache::new(SHAPE);
        paged.store(0, 0, &k, &v);
        dense.store(0, 0, &kd, &vd);
        let (mut a, mut b) = (vec![0f32; n * w], vec![0f32; n * w]);
        paged.attend_batch(0, 0, n, &q, &mut a);
        dense.attend_batch(0, 0, n, &q_ref, &mut b);
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 2e-3, "{spec}: {worst}");
    }
}

#[test]
fn byte_accounting_is_exact() {
    for spec in ["f16", "q4_0", "k=turbo4,v=turbo3,window=40", "kivi2:g64,window=16", "k=qjl,v=f16", "k=turbo4+center,v=turbo3,window=3", "turbo4,sink=4", "kivi4,sink=40", "k=turbo4+center,v=turbo4,tiers=4@40,2", "kivi4,sink=2,tiers=8@32,4@64,2"] {
        let p = Policy::parse(spec).unwrap();
        for n in [1, 31, 32, 33, 100, 128] {
            let mut c = SeqCache::new(SHAPE, &p).unwrap();
            let kvd = SHAPE.kv_dim();
            for layer in 0..SHAPE.n_layers {
                c.store(layer, 0, &rows(n, kvd, 5), &rows(n, kvd, 6));
            }
            c.cache.settle_all();
            assert_eq!(c.cache.bytes(), c.bytes_for(n), "{spec} at {n} tokens");
        }
    }
    // Compression shows: turbo3 on both planes is about 5x smaller than f16.
    let f16 = SeqCache::new(SHAPE, &Policy::f16()).unwrap().bytes_for(512) as f64;
    let t3 = SeqCache::new(SHAPE, &Policy::parse("turbo3").unwrap()).unwrap().bytes_for(512) as f64;
    assert!(f16 / t3 > 4.5, "ratio {}", f16 / t3);
}

#[test]
fn appending_never_changes_earlier_tokens_except_the_window_hand_off() {
    let kvd = SHAPE.kv_dim();
    for spec in ["k=turbo4,v=q4_0,window=5", "kivi2:g32,window=7", "q8_0", "turbo3+center,sink=3"] {
        let mut c = SeqCache::new(SHAPE, &Policy::parse(spec).unwrap()).unwrap();
        let (k, v) = (rows(100, kvd, 8), rows(100, kvd, 9));
        let mut seen: Vec<(Stored, Stored)> = Vec::new();
        for t in 0..100 {
            c.store(0, t, &k[t * kvd..(t + 1) * kvd], &v[t * kvd..(t + 1) * kvd]);
            for (s, prev) in seen.iter_mut().enumerate() {
                let now = c.cache.stored(c.seq, 0, s).unwrap();
                for (before, after) in [(&prev.0, &now.0), (&prev.1, &now.1)] {
                    match (before, after) {
                        (Stored::Raw(a), Stored::Raw(b)) => assert_eq!(a, b, "{spec}: raw token {s} changed at {t}"),
                        (Stored::Raw(_), Stored::Coded(_)) => {} // the hand-off
                        (Stored::Coded(a), Stored::Coded(b)) => assert_eq!(a, b, "{spec}: coded token {s} changed at {t}"),
                        (Stored::Coded(_), Stored::Raw(_)) => panic!("{spec}: token {s} went back to raw at {t}"),
                    }
                }
                *prev = now;
            }
            seen.push(c.cache.stored(c.seq, 0, t).unwrap());
        }
        // Everything older than window + one block is coded by now.
        assert!(matches!(c.cache.stored(c.seq, 0, 50).unwrap().0, Stored::Coded(_)), "{spec}");
    }
}

#[test]
fn forks_share_blocks_until_written_and_free_returns_them() {
    let kvd = SHAPE.kv_dim();
    // window=4: the hand-off at position 70 codes token 66, in the block
    // position 70 writes anyway.
    let mut c = PagedCache::new(SHAPE, &Policy::parse("k=turbo4,v=turbo3,window=4").unwrap()).unwrap();
    let parent = c.new_seq();
    let (k, v) = (rows(100, kvd, 10), rows(100, kvd, 11));
    c.append(parent, 0, &k[..70 * kvd], &v[..70 * kvd]).unwrap();
    c.settle_all();
    let (blocks, bytes) = (c.blocks_in_use(), c.bytes());
    assert_eq!(blocks, 3);
    let fork = c.fork(parent).unwrap();
    assert_eq!(c.blocks_in_use(), blocks, "a fork copies no block");
    assert_eq!(c.bytes(), bytes + 3 * 4, "a fork adds only its table ({bytes} before)");
    // The fork writes position 70: only the last (partial) block is copied.
    c.append(fork, 0, &k[70 * kvd..71 * kvd], &v[70 * kvd..71 * kvd]).unwrap();
    assert_eq!(c.blocks_in_use(), blocks + 1);
    let w = SHAPE.n_heads * SHAPE.head_dim;
    let q = rows(1, w, 12);
    let mut a = vec![0f32; w];
    c.attend(fork, 0, &q, &mut a).unwrap();
    // The parent is untouched: it still has 70 tokens, and its attention at
    // 69 equals a fresh cache's.
    assert_eq!(c.len(parent, 0).unwrap(), 70);
    let mut fresh = SeqCache::new(SHAPE, c.policy()).unwrap();
    fresh.store(0, 0, &k[..70 * kvd], &v[..70 * kvd]);
    let (mut x, mut y) = (vec![0f32; w], vec![0f32; w]);
    c.attend(parent, 0, &q, &mut x).unwrap();
    fresh.attend(0, 69, &q, &mut y);
    assert_eq!(x, y);
    // Freeing the fork returns its private block; freeing both empties the pool.
    c.free(fork).unwrap();
    assert_eq!(c.blocks_in_use(), blocks);
    c.free(parent).unwrap();
    assert_eq!(c.blocks_in_use(), 0);
    assert!(c.len(fork, 0).is_err());
    assert!(c.append(fork, 0, &k[..kvd], &v[..kvd]).is_err(), "a freed sequence takes no tokens");
}

/// Two sequences decoded in turn through one cache give exactly what each
/// gives alone: no state leaks from one sequence to another.
#[test]
fn interleaved_sequences_equal_each_alone() {
    let (kvd, w) = (SHAPE.kv_dim(), SHAPE.n_heads * SHAPE.head_dim);
    for spec in ["f16", "k=turbo4,v=turbo3,window=8", "kivi2:g32,sink=3", "k=turbo4+center,v=turbo4,tiers=4@40,2", "k=q8_0,v=turbo3"] {
        let p = Policy::parse(spec).unwrap();
        let n = [90, 70];
        let data: Vec<_> = (0..2u64).map(|s| (rows(n[s as usize], kvd, 40 + s), rows(n[s as usize], kvd, 50 + s), rows(n[s as usize], w, 60 + s))).collect();
        let alone = |s: usize| {
            let mut c = SeqCache::new(SHAPE, &p).unwrap();
            let (k, v, q) = &data[s];
            let mut out = vec![0f32; n[s] * w];
            for t in 0..n[s] {
                for l in 0..SHAPE.n_layers {
                    c.store(l, t, &k[t * kvd..(t + 1) * kvd], &v[t * kvd..(t + 1) * kvd]);
                    c.attend(l, t, &q[t * w..(t + 1) * w], &mut out[t * w..(t + 1) * w]);
                }
            }
            out
        };
        let mut c = PagedCache::new(SHAPE, &p).unwrap();
        let ids = [c.new_seq(), c.new_seq()];
        let mut outs = [vec![0f32; n[0] * w], vec![0f32; n[1] * w]];
        for t in 0..n[0] {
            for s in 0..2 {
                if t >= n[s] {
                    continue;
                }
                let (k, v, q) = &data[s];
                for l in 0..SHAPE.n_layers {
                    c.append(ids[s], l, &k[t * kvd..(t + 1) * kvd], &v[t * kvd..(t + 1) * kvd]).unwrap();
                    c.attend(ids[s], l, &q[t * w..(t + 1) * w], &mut outs[s][t * w..(t + 1) * w]).unwrap();
                }
            }
        }
        for s in 0..2 {
            assert!(outs[s] == alone(s), "{spec}: sequence {s} differs when interleaved");
        }
    }
}

#[test]
fn bad_calls_are_errors() {
    let mut c = PagedCache::new(SHAPE, &Policy::parse("turbo4").unwrap()).unwrap();
    let s = c.new_seq();
    let kvd = SHAPE.kv_dim();
    let row = rows(1, kvd, 1);
    let e = c.store(s, 0, 5, &row, &row).unwrap_err().to_string();
    assert!(e.contains("gap"), "{e}");
    assert!(c.append(s, 0, &row[..kvd - 1], &row[..kvd - 1]).is_err(), "a partial row");
    assert!(c.append(s, 9, &row, &row).is_err(), "no layer 9");
    let mut out = vec![0f32; SHAPE.n_heads * SHAPE.head_dim];
    assert!(c.attend(s, 0, &out.clone(), &mut out).is_err(), "nothing stored yet");
    c.append(s, 0, &row, &row).unwrap();
    assert!(c.attend(s, 0, &out.clone(), &mut out).is_ok());
    assert!(c.attend(s, 0, &out.clone()[1..], &mut out).is_err(), "a short query");
}

#[test]
fn rewinding_drops_later_positions() {
    let kvd = SHAPE.kv_dim();
    let w = SHAPE.n_heads * SHAPE.head_dim;
    for spec in ["kivi2:g32", "turbo4,window=4", "turbo3,sink=60", "turbo4,tiers=4@16,2"] {
        let p = Policy::parse(spec).unwrap();
        let (k, v, q) = (rows(80, kvd, 13), rows(80, kvd, 14), rows(1, w, 15));
        let mut c = SeqCache::new(SHAPE, &p).unwrap();
        c.store(0, 0, &k, &v);
        // Rewind to 50 and store different tokens 50..60.
        let (k2, v2) = (rows(10, kvd, 16), rows(10, kvd, 17));
        c.store(0, 50, &k2, &v2);
        assert_eq!(c.cache.len(c.seq, 0).unwrap(), 60);
        let mut fresh = SeqCache::new(SHAPE, &p).unwrap();
        fresh.store(0, 0, &k[..50 * kvd], &v[..50 * kvd]);
        fresh.store(0, 50, &k2, &v2);
        let (mut a, mut b) = (vec![0f32; w], vec![0f32; w]);
        c.attend(0, 59, &q, &mut a);
        fresh.attend(0, 59, &q, &mut b);
        // KIVI and tiers restore the kept tokens of a cut block from their
        // (2-bit, for the tiered policy) codes, so those come back lossy.
        let min = if spec.contains("tiers") { 0.85 } else { 0.98 };
        assert!(cosine(&a, &b) > min, "{spec}: {}", cosine(&a, &b));
    }
}

#[test]
fn tiers_recode_old_blocks_at_fewer_bits() {
    let kvd = SHAPE.kv_dim();
    let w = SHAPE.n_heads * SHAPE.head_dim;
    let n = 300;
    let (k, v, q) = (rows(n, kvd, 20), rows(n, kvd, 21), rows(1, w, 22));
    // A width the family does not have is an error when the cache is built.
    let e = PagedCache::new(SHAPE, &Policy::parse("turbo4,tiers=8@64,2").unwrap()).err().expect("turbo8 does not exist").to_string();
    assert!(e.contains("1..=5"), "{e}");
    let tiered = Policy::parse("k=turbo4+center,v=turbo4,tiers=4@64,3@128,2").unwrap();
    let mut c = SeqCache::new(SHAPE, &tiered).unwrap();
    for t in 0..n {
        c.store(0, t, &k[t * kvd..(t + 1) * kvd], &v[t * kvd..(t + 1) * kvd]);
    }
    c.store(1, 0, &k, &v);
    c.cache.settle_all();
    assert_eq!(c.cache.bytes(), c.bytes_for(n));
    let flat4 = SeqCache::new(SHAPE, &Policy::parse("k=turbo4+center,v=turbo4").unwrap()).unwrap().bytes_for(n);
    let flat2 = SeqCache::new(SHAPE, &Policy::parse("k=turbo2+center,v=turbo2").unwrap()).unwrap().bytes_for(n);
    assert!(c.cache.bytes() < flat4 && c.cache.bytes() > flat2, "{} vs {flat4} / {flat2}", c.cache.bytes());
    // Attention is closer to the f32 reference than with 2 bits throughout.
    let mut dense = DenseCache::new(SHAPE);
    dense.store(0, 0, &k, &v);
    let mut two = SeqCache::new(SHAPE, &Policy::parse("k=turbo2+center,v=turbo2").unwrap()).unwrap();
    two.store(0, 0, &k, &v);
    let (mut a, mut b, mut r) = (vec![0f32; w], vec![0f32; w], vec![0f32; w]);
    c.attend(0, n - 1, &q, &mut a);
    two.attend(0, n - 1, &q, &mut b);
    dense.attend(0, n - 1, &q, &mut r);
    assert!(cosine(&a, &r) > cosine(&b, &r), "tiered {} vs 2-bit {}", cosine(&a, &r), cosine(&b, &r));
}
