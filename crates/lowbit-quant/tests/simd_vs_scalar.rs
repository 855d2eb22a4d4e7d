//! Every SIMD level equals the scalar reference on random inputs of odd
//! lengths and alignments: exactly for integer outputs, within 1e-6
//! relative for float outputs.

use lowbit_quant::simd::{self, Level};
use lowbit_quant::Format;
use proptest::prelude::*;

fn levels() -> Vec<Level> {
    simd::available().into_iter().filter(|&l| l != Level::Scalar).collect()
}

fn close(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 1e-6 * scale.max(1e-30) + 1e-30
}

fn vecs(n: usize, seed: u64) -> Vec<f32> {
    let mut r = lowbit_quant::rng::SplitMix64::new(seed);
    (0..n).map(|_| (r.normal() * 3.0) as f32).collect()
}

#[test]
fn simd_levels_are_detected() {
    let l = simd::available();
    assert_eq!(l[0], Level::Scalar);
    eprintln!("SIMD levels here: {:?}", l);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn fwht_matches(log_n in 0u32..12, off in 0usize..4, seed in any::<u64>()) {
        let n = 1usize << log_n;
        let buf = vecs(n + off, seed);
        let mut want = buf[off..].to_vec();
        simd::fwht_at(Level::Scalar, &mut want);
        let norm = want.iter().map(|v| v * v).sum::<f32>().sqrt();
        for l in levels() {
            let mut got = buf.clone();
            simd::fwht_at(l, &mut got[off..]);
            for (a, b) in got[off..].iter().zip(&want) {
                prop_assert!(close(*a, *b, norm), "{:?} n={} {} vs {}", l, n, a, b);
            }
        }
    }

    #[test]
    fn quantize_bounds_matches(n in 0usize..300, off in 0usize..4, bits in 1u32..5, seed in any::<u64>()) {
        let u = vecs(n + off, seed);
        let cb = lowbit_quant::rot::lloyd_max::codebook(lowbit_quant::rot::lloyd_max::Law::Gaussian, bits);
        let mut want = vec![0u8; n];
        simd::quantize_bounds_at(Level::Scalar, &u[off..], &cb.bounds, &mut want);
        for l in levels() {
            let mut got = vec![0u8; n + 1];
            simd::quantize_bounds_at(l, &u[off..], &cb.bounds, &mut got[1..]);
            prop_assert_eq!(&got[1..], &want[..], "{:?}", l);
        }
    }

    #[test]
    fn stretch_fit_matches(n in 0usize..300, off in 0usize..4, bits in 1u32..6, a in 0.7f32..1.3, seed in any::<u64>()) {
        let u = vecs(n + off, seed);
        let cb = lowbit_quant::rot::lloyd_max::codebook(lowbit_quant::rot::lloyd_max::Law::Gaussian, bits);
        let bounds: Vec<f32> = cb.bounds.iter().map(|b| b * a).collect();
        let (wu, wc) = simd::stretch_fit_at(Level::Scalar, &u[off..], &bounds, &cb.levels);
        for l in levels() {
            let (gu, gc) = simd::stretch_fit_at(l, &u[off..], &bounds, &cb.levels);
            prop_assert!(close(gu, wu, 64.0 * (1.0 + wu.abs())) && close(gc, wc, 64.0 * (1.0 + wc.abs())), "{:?}: ({}, {}) vs ({}, {})", l, gu, gc, wu, wc);
        }
    }

    #[test]
    fn q8_0_kernels_match(blocks in 1usize..20, off in 0usize..4, seed in any::<u64>()) {
        let f = Format::parse("q8_0").unwrap();
        let n = 32 * blocks;
        let x = vecs(n, seed);
        let a = vecs(n, seed ^ 1);
        let mut codes = vec![0u8; off];
        codes.extend(f.encode(&x).unwrap());
        let mut act = vec![0u8; off + 1];
        act.extend(f.quantize_activation(&a).unwrap());
        let (c, y) = (&codes[off..], &act[off + 1..]);
        let mut want = vec![0f32; n];
        simd::dequant_q8_0_at(Level::Scalar, c, &mut want);
        let want_dot = simd::dot_q8_0_q8_0_at(Level::Scalar, c, y);
        let scale: f32 = x.iter().zip(&a).map(|(p, q)| (p * q).abs()).sum();
        for l in levels() {
            let mut got = vec![0f32; n];
            simd::dequant_q8_0_at(l, c, &mut got);
            prop_assert_eq!(&got, &want, "{:?}", l);
            let d = simd::dot_q8_0_q8_0_at(l, c, y);
            prop_assert!(close(d, want_dot, scale), "{:?} {} vs {}", l, d, want_dot);
        }
    }

    #[test]
    fn q4k_kernels_match(blocks in 1usize..6, off in 0usize..4, seed in any::<u64>()) {
        let f = Format::parse("q4_k").unwrap();
        let n = 256 * blocks;
        let x = vecs(n, seed);
        let a = vecs(n, seed ^ 1);
        let mut codes = vec![0u8; off];
        codes.extend(f.encode(&x).unwrap());
        let mut act = vec![0u8; off + 3];
        act.extend(f.quantize_activation(&a).unwrap());
        let (c, y) = (&codes[off..], &act[off + 3..]);
        let mut want = vec![0f32; n];
        simd::dequant_q4k_at(Level::Scalar, c, &mut want);
        let want_dot = simd::dot_q4k_q8k_at(Level::Scalar, c, y);
        let scale: f32 = x.iter().zip(&a).map(|(p, q)| (p * q).abs()).sum();
        for l in levels() {
            let mut got = vec![0f32; n];
            simd::dequant_q4k_at(l, c, &mut got);
            for (p, q) in got.iter().zip(&want) {
                prop_assert!(close(*p, *q, q.abs().max(1e-3)), "{:?} {} vs {}", l, p, q);
            }
            let d = simd::dot_q4k_q8k_at(l, c, y);
            prop_assert!(close(d, want_dot, scale), "{:?} {} vs {}", l, d, want_dot);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Codes agree wherever the scalar coordinate is not within float noise
    /// of a decision boundary; norms and coordinates within 1e-6 relative.
    #[test]
    fn turbo_fused_kernels_match(log_n in 3u32..9, bits in 1u32..6, seed in any::<u64>()) {
        let n = 1usize << log_n;
        let x = vecs(n, seed);
        let mut r = lowbit_quant::rng::SplitMix64::new(seed ^ 9);
        let signs: Vec<f32> = (0..n).map(|_| r.sign()).collect();
        let cb = lowbit_quant::rot::lloyd_max::codebook(lowbit_quant::rot::lloyd_max::Law::UnitSphere(n.max(3)), bits);
        let (mut u0, mut c0) = (vec![0f32; n], vec![0u8; n]);
        let norm0 = simd::turbo_rotq_at(Level::Scalar, &x, &signs, &cb.bounds, &mut u0, &mut c0);
        let mut y0 = vec![0f32; n];
        simd::turbo_dequant_at(Level::Scalar, &c0, &cb.levels, &signs, 0.7, &mut y0);
        let ynorm = y0.iter().map(|v| v * v).sum::<f32>().sqrt();
        for l in levels() {
            let (mut u1, mut c1) = (vec![0f32; n], vec![0u8; n]);
            let norm1 = simd::turbo_rotq_at(l, &x, &signs, &cb.bounds, &mut u1, &mut c1);
            prop_assert!(close(norm0, norm1, norm0), "{:?} norm {} vs {}", l, norm0, norm1);
            for i in 0..n {
                prop_assert!(close(u0[i], u1[i], (n as f32).sqrt()), "{:?} u[{}]", l, i);
                let near = cb.bounds.iter().any(|b| (u0[i] - b).abs() < 1e-4);
                prop_assert!(near || c0[i] == c1[i], "{:?} code[{}] {} vs {}", l, i, c0[i], c1[i]);
            }
            let mut y1 = vec![0f32; n];
            simd::turbo_dequant_at(l, &c0, &cb.levels, &signs, 0.7, &mut y1);
            for (a, b) in y0.iter().zip(&y1) {
                prop_assert!(close(*a, *b, ynorm), "{:?} dequant {} vs {}", l, a, b);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn quantized_f32_dots_match(blocks in 1usize..6, off in 0usize..4, seed in any::<u64>()) {
        let n = 256 * blocks;
        let x = vecs(n, seed);
        let a = vecs(n + off, seed ^ 1);
        let a = &a[off..];
        let scale: f32 = x.iter().zip(a).map(|(p, q)| (p * q).abs()).sum();
        for spec in ["q8_0", "q4_k"] {
            let f = Format::parse(spec).unwrap();
            let codes = f.encode(&x).unwrap();
            let want = if spec == "q8_0" {
                simd::dot_q8_0_f32_at(Level::Scalar, &codes, a)
            } else {
                simd::dot_q4k_f32_at(Level::Scalar, &codes, a)
            };
            for l in levels() {
                let got = if spec == "q8_0" { simd::dot_q8_0_f32_at(l, &codes, a) } else { simd::dot_q4k_f32_at(l, &codes, a) };
                prop_assert!(close(got, want, scale), "{} {:?} {} vs {}", spec, l, got, want);
            }
        }
    }
}

proptest! {
    #[test]
    fn f32_bytes_dot_matches(n in 0usize..200, off in 0usize..4, seed in any::<u64>()) {
        let x = vecs(n, seed);
        let w = vecs(n, seed ^ 3);
        let mut bytes = vec![0u8; off];
        for v in &w {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        let want = simd::dot_f32_bytes_at(Level::Scalar, &bytes[off..], &x);
        let scale: f32 = x.iter().zip(&w).map(|(a, b)| (a * b).abs()).sum();
        for l in levels() {
            let got = simd::dot_f32_bytes_at(l, &bytes[off..], &x);
            prop_assert!(close(got, want, scale), "{:?} {} vs {}", l, got, want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn q4_1_dot_matches(blocks in 1usize..40, seed in any::<u64>()) {
        let f = Format::parse("q4_1").unwrap();
        let n = 32 * blocks;
        let x = vecs(n, seed);
        let a = vecs(n, seed ^ 1);
        let (codes, act) = (f.encode(&x).unwrap(), f.quantize_activation(&a).unwrap());
        let want = simd::dot_q4_1_q8_1_at(Level::Scalar, &codes, &act);
        let scale: f32 = x.iter().zip(&a).map(|(p, q)| (p * q).abs()).sum();
        for l in levels() {
            let got = simd::dot_q4_1_q8_1_at(l, &codes, &act);
            prop_assert!(close(got, want, scale), "{:?} {} vs {}", l, got, want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn q4_1_x4_dots_match_scalar_at_every_level(blocks in 1usize..20, seed in any::<u64>()) {
        let f = Format::parse("q4_1").unwrap();
        let len = 32 * blocks;
        let w = vecs(len, seed);
        let codes = f.encode(&w).unwrap();
        let xs: Vec<Vec<f32>> = (0..4).map(|i| vecs(len, seed ^ (i as u64 + 3))).collect();
        let acts: Vec<Vec<u8>> = xs.iter().map(|x| f.quantize_activation(x).unwrap()).collect();
        let four = [&acts[0][..], &acts[1][..], &acts[2][..], &acts[3][..]];
        let want = simd::dot_q4_1_q8_1_x4_at(Level::Scalar, &codes, four);
        for l in levels() {
            let got = simd::dot_q4_1_q8_1_x4_at(l, &codes, four);
            for k in 0..4 {
                let scale: f32 = w.iter().zip(&xs[k]).map(|(p, q)| (p * q).abs()).sum();
                prop_assert!(close(got[k], want[k], scale), "{:?} act {}: {} vs {}", l, k, got[k], want[k]);
            }
        }
    }

    #[test]
    fn q4_1_4xn_tiles_match_scalar_at_every_level(blocks in 1usize..20, n in 0usize..11, seed in any::<u64>()) {
        check_4xn("q4_1", blocks, n, seed, simd::dot_q4_1_q8_1_4xn_at)?;
    }

    #[test]
    fn batched_row_dots_match_single_dots(blocks in 1usize..20, n in 1usize..11, seed in any::<u64>()) {
        let f = Format::parse("q4_1").unwrap();
        let len = 32 * blocks;
        let w = vecs(len, seed);
        let codes = f.encode(&w).unwrap();
        let xs: Vec<Vec<f32>> = (0..n).map(|i| vecs(len, seed ^ (i as u64 + 7))).collect();
        let acts: Vec<Vec<u8>> = xs.iter().map(|x| f.quantize_activation(x).unwrap()).collect();
        let refs: Vec<&[u8]> = acts.iter().map(|a| &a[..]).collect();
        let mut out = vec![0f32; n];
        f.codec().dot_q8_batch(&codes, &refs, &mut out);
        for (i, a) in acts.iter().enumerate() {
            let want = simd::dot_q4_1_q8_1_at(Level::Scalar, &codes, a);
            let scale: f32 = w.iter().zip(&xs[i]).map(|(p, q)| (p * q).abs()).sum();
            prop_assert!(close(out[i], want, scale), "{} vs {}", out[i], want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn levels_scaled_matches(groups in 1usize..20, bits in 1u32..6, seed in any::<u64>()) {
        let n = groups * 8;
        let table: Vec<f32> = vecs(1 << bits, seed);
        let codes: Vec<u8> = vecs(n, seed ^ 1).iter().map(|v| (v.to_bits() as u8) & ((1u8 << bits) - 1)).collect();
        let mut packed = vec![0u8; lowbit_quant::bitpack::packed_len(n, bits)];
        lowbit_quant::bitpack::pack(&codes, bits, &mut packed);
        let want: Vec<f32> = codes.iter().map(|&c| table[c as usize] * 0.37).collect();
        for l in levels() {
            let mut got = vec![0f32; n];
            simd::levels_scaled_at(l, &packed, bits, &table, 0.37, &mut got);
            prop_assert_eq!(&got, &want, "{:?} bits {}", l, bits);
        }
    }

    #[test]
    fn code_dots_matches(groups in 1usize..12, rows in 1usize..11, bits in 1u32..6, seed in any::<u64>()) {
        let d = groups * 16;
        let rb = lowbit_quant::bitpack::packed_len(d, bits);
        let table: Vec<f32> = vecs(1 << bits, seed);
        let q = vecs(d, seed ^ 3);
        let codes: Vec<u8> = vecs(rows * d, seed ^ 1).iter().map(|v| (v.to_bits() as u8) & ((1u8 << bits) - 1)).collect();
        let mut packed = vec![0u8; rows * rb];
        for (c, p) in codes.chunks(d).zip(packed.chunks_mut(rb)) {
            lowbit_quant::bitpack::pack(c, bits, p);
        }
        let want: Vec<f32> = codes.chunks(d).map(|c| c.iter().zip(&q).map(|(&k, x)| table[k as usize] * x).sum()).collect();
        for l in levels() {
            let mut got = vec![0f32; rows];
            simd::code_dots_at(l, &packed, rb, bits, &table, &q, &mut got);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()) * d as f32, "{:?} bits {}: {} vs {}", l, bits, g, w);
            }
        }
    }

    #[test]
    fn table_dots_matches(rb in 1usize..70, rows in 0usize..11, off in 0usize..3, seed in any::<u64>()) {
        let t = vecs(256 * rb, seed);
        let codes: Vec<u8> = vecs(rows * rb + off, seed ^ 1).iter().map(|v| v.to_bits() as u8).collect();
        let mut want = vec![0f32; rows];
        simd::table_dots_at(Level::Scalar, &codes[off..], rb, &t, 0.5, &mut want);
        for l in levels() {
            let mut got = vec![0f32; rows];
            simd::table_dots_at(l, &codes[off..], rb, &t, 0.5, &mut got);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()) * rb as f32, "{:?} {} bytes: {} vs {}", l, rb, g, w);
            }
        }
    }

    #[test]
    fn axpy_matches(n in 0usize..100, a in -3f32..3.0, seed in any::<u64>()) {
        let (x, y0) = (vecs(n, seed), vecs(n, seed ^ 2));
        let mut want = y0.clone();
        simd::axpy_at(Level::Scalar, a, &x, &mut want);
        for l in levels() {
            let mut got = y0.clone();
            simd::axpy_at(l, a, &x, &mut got);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!(close(*g, *w, 64.0), "{:?}: {} vs {}", l, g, w);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn exp_sub_sum_matches(n in 0usize..70, seed in any::<u64>()) {
        // Scores spanning the whole useful range, down to underflow.
        let x: Vec<f32> = vecs(n, seed).iter().map(|v| v * 12.0).collect();
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut want = x.clone();
        let ws = simd::exp_sub_sum_at(Level::Scalar, &mut want, max);
        for l in levels() {
            let mut got = x.clone();
            let gs = simd::exp_sub_sum_at(l, &mut got, max);
            prop_assert!((gs - ws).abs() <= 1e-6 * ws.max(1e-30), "{:?}: sum {} vs {}", l, gs, ws);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!((g - w).abs() <= 1e-6 * w.max(1e-30) + 1e-37, "{:?}: {} vs {}", l, g, w);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn row_kernels_match(n in 0usize..40, d in prop::sample::select(vec![8usize, 24, 64, 72, 128, 200]), seed in any::<u64>()) {
        let (q, rows, w, acc0) = (vecs(d, seed), vecs(n * d, seed ^ 1), vecs(n, seed ^ 2), vecs(d, seed ^ 3));
        let mut want_dots = vec![0f32; n];
        simd::dot_rows_at(Level::Scalar, &q, &rows, &mut want_dots);
        let mut want_acc = acc0.clone();
        simd::weighted_rows_at(Level::Scalar, &w, &rows, &mut want_acc);
        let scale = 9.0 * 9.0 * d as f32 * (n.max(1) as f32);
        for l in levels() {
            let mut dots = vec![0f32; n];
            simd::dot_rows_at(l, &q, &rows, &mut dots);
            let mut acc = acc0.clone();
            simd::weighted_rows_at(l, &w, &rows, &mut acc);
            for (g, e) in dots.iter().zip(&want_dots) {
                prop_assert!(close(*g, *e, scale), "{:?} dot: {} vs {}", l, g, e);
            }
            for (g, e) in acc.iter().zip(&want_acc) {
                prop_assert!(close(*g, *e, scale), "{:?} acc: {} vs {}", l, g, e);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn turbo_rows_match(rows in 1usize..6, dim in prop::sample::select(vec![16usize, 64, 128, 96]), bits in 1u32..6, seed in any::<u64>()) {
        let f = Format::parse(&format!("turbo{bits}:d{dim}")).unwrap();
        let x = vecs(rows * dim, seed);
        let codes = f.encode(&x).unwrap();
        let table = lowbit_quant::rot::lloyd_max::codebook(lowbit_quant::rot::lloyd_max::Law::UnitSphere(dim), bits).levels.clone();
        let mut want = vec![0f32; rows * dim];
        simd::turbo_rows_at(Level::Scalar, &codes, bits, dim, &table, &mut want);
        for l in levels() {
            let mut got = vec![0f32; rows * dim];
            simd::turbo_rows_at(l, &codes, bits, dim, &table, &mut got);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!(close(*g, *w, w.abs().max(1e-3)), "{:?}: {} vs {}", l, g, w);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn affine_rows_match(rows in 1usize..9, d in prop::sample::select(vec![16usize, 64, 128, 40]), bits in 1u32..6, seed in any::<u64>()) {
        let rb = lowbit_quant::bitpack::packed_len(d, bits);
        let codes: Vec<u8> = vecs(rows * d, seed).iter().map(|v| (v.to_bits() as u8) & ((1u8 << bits) - 1)).collect();
        let mut packed = vec![0u8; rows * rb];
        for (c, p) in codes.chunks(d).zip(packed.chunks_mut(rb)) {
            lowbit_quant::bitpack::pack(c, bits, p);
        }
        let (scale, min) = (vecs(d, seed ^ 1), vecs(d, seed ^ 2));
        let mut want = vec![0f32; rows * d];
        simd::affine_rows_at(Level::Scalar, &packed, rb, bits, &scale, &min, &mut want);
        for l in levels() {
            let mut got = vec![0f32; rows * d];
            simd::affine_rows_at(l, &packed, rb, bits, &scale, &min, &mut got);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!(close(*g, *w, 64.0), "{:?}: {} vs {}", l, g, w);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn f16_to_f32_matches(n in 0usize..100, off in 0usize..3, seed in any::<u64>()) {
        // Every bit pattern can occur: NaNs, infinities, subnormals.
        let mut r = lowbit_quant::rng::SplitMix64::new(seed);
        let src: Vec<half::f16> = (0..n + off).map(|_| half::f16::from_bits(r.next_u64() as u16)).collect();
        let mut want = vec![0f32; n];
        simd::f16_to_f32_at(Level::Scalar, &src[off..], &mut want);
        for l in levels() {
            let mut got = vec![0f32; n];
            simd::f16_to_f32_at(l, &src[off..], &mut got);
            for (g, w) in got.iter().zip(&want) {
                prop_assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{:?}: {} vs {}", l, g, w);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The f16-row kernels give, at every level, exactly what converting the
    /// rows and running the f32 kernels of that level gives.
    #[test]
    fn f16_row_kernels_equal_convert_then_f32(d in prop::sample::select(vec![8usize, 24, 64, 128, 192, 320]), n in 0usize..12, pad in 0usize..40, seed in any::<u64>()) {
        let stride = d + pad;
        let q = vecs(d, seed);
        let w = vecs(n, seed ^ 9);
        let rows: Vec<half::f16> = vecs(n * stride + d, seed ^ 5).iter().map(|&x| half::f16::from_f32(x)).collect();
        let conv: Vec<f32> = (0..n).flat_map(|i| rows[i * stride..i * stride + d].iter().map(|h| h.to_f32()).collect::<Vec<_>>()).collect();
        for l in simd::available() {
            let (mut got, mut want) = (vec![0f32; n], vec![0f32; n]);
            simd::dot_rows_f16_at(l, &q, &rows, stride, &mut got);
            simd::dot_rows_at(l, &q, &conv, &mut want);
            prop_assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "dot_rows {:?}", l);
            let init = vecs(d, seed ^ 7);
            let (mut got, mut want) = (init.clone(), init.clone());
            simd::weighted_rows_f16_at(l, &w, &rows, stride, &mut got);
            simd::weighted_rows_at(l, &w, &conv, &mut want);
            prop_assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "weighted_rows {:?}", l);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Exact: the same d, sum and codes, including values that land on
    /// ±k.5 (scaled copies of half-integers) where rounding modes differ.
    #[test]
    fn q8_block_matches_scalar_exactly(n in 0usize..70, halves in any::<bool>(), seed in any::<u64>()) {
        let mut x = vecs(n, seed);
        if halves && n > 0 {
            // amax 127 makes id 1, so x·id keeps the half-integers.
            for (i, v) in x.iter_mut().enumerate() {
                *v = ((*v * 20.0).round() + 0.5).clamp(-126.5, 126.5);
                if i == 0 { *v = 127.0; }
            }
        }
        let mut want = vec![0u8; n];
        let w = simd::q8_block_at(Level::Scalar, &x, &mut want);
        for l in levels() {
            let mut got = vec![0u8; n];
            let g = simd::q8_block_at(l, &x, &mut got);
            prop_assert_eq!((g.0.to_bits(), g.1), (w.0.to_bits(), w.1), "{:?}", l);
            prop_assert_eq!(&got, &want, "{:?}", l);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn q8_0_4xn_tiles_match_scalar_at_every_level(blocks in 1usize..20, n in 0usize..11, seed in any::<u64>()) {
        check_4xn("q8_0", blocks, n, seed, simd::dot_q8_0_q8_0_4xn_at)?;
    }
}

type Kernel4xn = fn(Level, [&[u8]; 4], &[&[u8]], [&mut [f32]; 4]);

/// Four rows of `format` against n activations: every SIMD level equals
/// the scalar kernel (within 1e-6 of Σ|w·x|).
fn check_4xn(format: &str, blocks: usize, n: usize, seed: u64, kernel: Kernel4xn) -> Result<(), TestCaseError> {
    let f = Format::parse(format).unwrap();
    let len = 32 * blocks;
    let ws: Vec<Vec<f32>> = (0..4).map(|r| vecs(len, seed ^ (r as u64 + 11))).collect();
    let codes: Vec<Vec<u8>> = ws.iter().map(|w| f.encode(w).unwrap()).collect();
    let xs: Vec<Vec<f32>> = (0..n).map(|i| vecs(len, seed ^ (i as u64 + 3))).collect();
    let acts: Vec<Vec<u8>> = xs.iter().map(|x| f.quantize_activation(x).unwrap()).collect();
    let rows = [&codes[0][..], &codes[1][..], &codes[2][..], &codes[3][..]];
    let refs: Vec<&[u8]> = acts.iter().map(|a| &a[..]).collect();
    let run = |l: Level| {
        let mut o = vec![vec![f32::NAN; n]; 4];
        let [o0, o1, o2, o3] = &mut o[..] else { unreachable!() };
        kernel(l, rows, &refs, [o0, o1, o2, o3]);
        o
    };
    let want = run(Level::Scalar);
    for l in levels() {
        let got = run(l);
        for r in 0..4 {
            for k in 0..n {
                let scale: f32 = ws[r].iter().zip(&xs[k]).map(|(p, q)| (p * q).abs()).sum();
                prop_assert!(close(got[r][k], want[r][k], scale), "{} {:?} row {} act {}: {} vs {}", format, l, r, k, got[r][k], want[r][k]);
            }
        }
    }
    Ok(())
}
