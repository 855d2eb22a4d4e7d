//! Byte-for-byte parity with candle-core's ggml quantizers (a peer
//! implementation of ggml's reference code) on random inputs, for every
//! format candle implements, with and without importance weights; and
//! dequantize / dot parity.

use candle_core::quantized::k_quants::*;
use lowbit_quant::Format;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

fn as_bytes<T>(v: &[T]) -> &[u8] {
    // SAFETY: candle's block types are repr(C) plain data with asserted sizes.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 1.0).unwrap();
    (0..n)
        .map(|i| {
            // Mix scales and a few outliers, as real weights have.
            let s = if i % 97 == 0 { 8.0 } else { 1.0 + (i / 256 % 5) as f32 };
            normal.sample(&mut rng) * s * 0.02
        })
        .collect()
}

fn candle_encode<T: GgmlType>(x: &[f32]) -> Vec<u8> {
    let mut ys = vec![T::zeros(); x.len() / T::BLCK_SIZE];
    T::from_float(x, &mut ys);
    as_bytes(&ys).to_vec()
}

fn candle_encode_imatrix<T: GgmlType>(x: &[f32], w: &[f32], n_per_row: usize) -> Vec<u8> {
    let mut ys = vec![T::zeros(); x.len() / T::BLCK_SIZE];
    T::from_float_imatrix(x, &mut ys, w, n_per_row);
    as_bytes(&ys).to_vec()
}

fn candle_decode<T: GgmlType>(codes: &[u8], n: usize) -> Vec<f32> {
    let blocks = n / T::BLCK_SIZE;
    let mut ys = vec![T::zeros(); blocks];
    // SAFETY: same layout, as above.
    unsafe { std::ptr::copy_nonoverlapping(codes.as_ptr(), ys.as_mut_ptr() as *mut u8, codes.len()) };
    let mut out = vec![0f32; n];
    T::to_float(&ys, &mut out);
    out
}

fn check<T: GgmlType>(name: &str) {
    let f = Format::parse(name).unwrap();
    for (seed, n) in [(1u64, 256usize), (2, 4096), (3, 256 * 33)] {
        let x = random(n, seed);
        let ours = f.encode(&x).unwrap();
        let theirs = candle_encode::<T>(&x);
        assert_eq!(ours.len(), theirs.len(), "{name}: size");
        let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        assert!(first.is_none(), "{name}: bytes differ at {:?} (n={n})", first);
        let ours_y = f.decode(&ours, n).unwrap();
        let theirs_y = candle_decode::<T>(&theirs, n);
        assert_eq!(ours_y, theirs_y, "{name}: dequantized values differ");
    }
}

#[test]
fn legacy_formats_byte_identical() {
    check::<BlockQ4_0>("q4_0");
    check::<BlockQ4_1>("q4_1");
    check::<BlockQ5_0>("q5_0");
    check::<BlockQ5_1>("q5_1");
    check::<BlockQ8_0>("q8_0");
}

#[test]
fn k_quants_byte_identical() {
    check::<BlockQ2K>("q2_k");
    check::<BlockQ3K>("q3_k");
    check::<BlockQ4K>("q4_k");
    check::<BlockQ5K>("q5_k");
    check::<BlockQ6K>("q6_k");
    check::<BlockQ8K>("q8_k");
}

#[test]
fn float_formats_byte_identical() {
    check::<f32>("f32");
    check::<half::f16>("f16");
    check::<half::bf16>("bf16");
}

fn check_imatrix<T: GgmlType>(name: &str) {
    let f = Format::parse(name).unwrap();
    let n_per_row = 1024;
    let rows = 3;
    let x = random(n_per_row * rows, 11);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let imatrix: Vec<f32> = (0..n_per_row).map(|_| rng.gen_range(0.01f32..4.0)).collect();
    let theirs = candle_encode_imatrix::<T>(&x, &imatrix, n_per_row);
    let mut ours = Vec::new();
    for row in x.chunks(n_per_row) {
        ours.extend(f.encode_weighted(row, &imatrix).unwrap());
    }
    let first = ours.iter().zip(&theirs).position(|(a, b)| a != b);
    assert!(first.is_none(), "{name} imatrix: bytes differ at {:?}", first);
    assert_eq!(ours.len(), theirs.len());
}

#[test]
fn importance_weighted_k_quants_byte_identical() {
    check_imatrix::<BlockQ2K>("q2_k");
    check_imatrix::<BlockQ3K>("q3_k");
    check_imatrix::<BlockQ4K>("q4_k");
    check_imatrix::<BlockQ5K>("q5_k");
    check_imatrix::<BlockQ6K>("q6_k");
}

fn check_dot<T: GgmlType>(name: &str) {
    let f = Format::parse(name).unwrap();
    let n = 4096;
    let w = random(n, 21);
    let a = random(n, 22);
    let codes = f.encode(&w).unwrap();
    let act = f.quantize_activation(&a).unwrap();
    let ours = f.dot_q8(&codes, &act, n).unwrap();
    // candle's vec dot against its own activation quantization.
    let mut ws = vec![T::zeros(); n / T::BLCK_SIZE];
    T::from_float(&w, &mut ws);
    let mut acts = vec![T::VecDotType::zeros(); n / T::VecDotType::BLCK_SIZE];
    T::VecDotType::from_float(&a, &mut acts);
    let theirs = T::vec_dot_unopt(n, &ws, &acts);
    let exact: f32 = w.iter().zip(&a).map(|(x, y)| x * y).sum();
    let tol = 2e-3 * w.iter().zip(&a).map(|(x, y)| (x * y).abs()).sum::<f32>();
    assert!((ours - theirs).abs() <= tol, "{name}: ours {ours} candle {theirs} exact {exact}");
}

#[test]
fn dot_products_agree_with_candle() {
    check_dot::<BlockQ4_0>("q4_0");
    check_dot::<BlockQ4_1>("q4_1");
    check_dot::<BlockQ5_0>("q5_0");
    check_dot::<BlockQ5_1>("q5_1");
    check_dot::<BlockQ8_0>("q8_0");
    check_dot::<BlockQ2K>("q2_k");
    check_dot::<BlockQ3K>("q3_k");
    check_dot::<BlockQ4K>("q4_k");
    check_dot::<BlockQ5K>("q5_k");
    check_dot::<BlockQ6K>("q6_k");
    check_dot::<BlockQ8K>("q8_k");
}
