//! Bad input gets a typed error naming the problem, never a panic.

use lowbit_quant::{Format, QuantError, Spec};

#[test]
fn wrong_length_for_block_size() {
    for spec in ["q4_k", "q8_0", "turbo4", "uniform3:g64:asym", "tq1_0"] {
        let f = Format::parse(spec).unwrap();
        let e = f.encode(&vec![0.5f32; f.block_elems() + 1]).unwrap_err();
        assert!(matches!(e, QuantError::BadLength { .. }), "{spec}: {e}");
        assert!(e.to_string().contains("multiple of the block size"), "{e}");
    }
}

#[test]
fn nan_and_inf_are_rejected_with_their_index() {
    let f = Format::parse("q4_0").unwrap();
    let mut x = vec![0.25f32; 64];
    x[37] = f32::NAN;
    match f.encode(&x).unwrap_err() {
        QuantError::NonFinite { index, .. } => assert_eq!(index, 37),
        e => panic!("wrong error {e}"),
    }
    x[37] = f32::INFINITY;
    assert!(matches!(f.encode(&x), Err(QuantError::NonFinite { index: 37, .. })));
    let t = Format::parse("turbo3").unwrap();
    let mut y = vec![0.1f32; 128];
    y[5] = f32::NEG_INFINITY;
    assert!(matches!(t.encode(&y), Err(QuantError::NonFinite { index: 5, .. })));
    let codes = t.encode(&vec![0.1f32; 128]).unwrap();
    assert!(matches!(t.dot_f32(&codes, &y), Err(QuantError::NonFinite { .. })));
}

#[test]
fn bad_spec_strings_say_what_was_expected() {
    for bad in ["", "q4_z", "turbo9", "turbo", "turbo1p", "uniform9", "uniform4:g33", "uniform4:x", "q4_k:g32", "pi3:d64", "polar2", "qjl:d8192", "turbo3:seed=abc"] {
        let e = Spec::parse(bad).unwrap_err();
        assert!(matches!(e, QuantError::BadSpec { .. }), "{bad}: {e}");
        let msg = e.to_string();
        assert!(msg.contains("Expected one of") && msg.contains("turbo{1..5}"), "{bad}: {msg}");
    }
}

#[test]
fn specs_print_back_canonically() {
    let cases = [
        ("Q4_K", "q4_k"),
        (" turbo4 ", "turbo4"),
        ("turbo3:d128", "turbo3"),
        ("turbo4p:d64:seed=9", "turbo4p:d64:seed=9"),
        ("uniform4:asym:g32", "uniform4:g32:asym"),
        ("uniform4", "uniform4:g32:asym"),
        ("uniform2:sym:g128", "uniform2:g128:sym"),
        ("pi3:g32", "pi3"),
        ("pi3:g64", "pi3:g64"),
        ("tq2_0", "tq2_0"),
        ("polar4", "polar4"),
        ("qjl", "qjl"),
    ];
    for (input, canon) in cases {
        let s = Spec::parse(input).unwrap();
        assert_eq!(s.to_string(), canon);
        assert_eq!(Spec::parse(canon).unwrap(), s, "canonical form reparses");
    }
}

#[test]
fn truncated_or_oversized_buffers_are_rejected() {
    let f = Format::parse("q6_k").unwrap();
    let x: Vec<f32> = (0..512).map(|i| (i as f32).sin()).collect();
    let codes = f.encode(&x).unwrap();
    let e = f.decode(&codes[..codes.len() - 1], 512).unwrap_err();
    assert!(matches!(e, QuantError::BufferSize { got: 419, need: 420, .. }), "{e}");
    let mut longer = codes.clone();
    longer.push(0);
    assert!(f.decode(&longer, 512).is_err());
    let act = f.quantize_activation(&x).unwrap();
    assert!(f.dot_q8(&codes, &act[..act.len() - 2], 512).is_err());
    let mut out = vec![0u8; 10];
    assert!(matches!(f.encode_into(&x, &mut out), Err(QuantError::BufferSize { .. })));
}

#[test]
fn unsupported_operations_are_errors() {
    let t = Format::parse("turbo4").unwrap();
    let x = vec![0.5f32; 128];
    let codes = t.encode(&x).unwrap();
    assert!(matches!(t.dot_q8(&codes, &codes, 128), Err(QuantError::Unsupported { .. })));
    assert!(matches!(t.quantize_activation(&x), Err(QuantError::Unsupported { .. })));
    let q = Format::parse("q4_0").unwrap();
    assert!(matches!(q.encode_weighted(&x, &x), Err(QuantError::Unsupported { .. })));
    let k = Format::parse("q4_k").unwrap();
    let y = vec![0.5f32; 256];
    assert!(matches!(k.encode_weighted(&y, &x), Err(QuantError::LengthMismatch { .. })));
    let mut neg = vec![1f32; 256];
    neg[3] = -1.0;
    assert!(k.encode_weighted(&y, &neg).is_err());
}

#[test]
fn every_preset_roundtrips_every_length_multiple() {
    for spec in lowbit_quant::registry::presets() {
        let f = Format::parse(spec).unwrap();
        let n = f.block_elems() * 3;
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let codes = f.encode(&x).unwrap();
        assert_eq!(codes.len(), 3 * f.block_bytes(), "{spec}");
        let y = f.decode(&codes, n).unwrap();
        let err: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum::<f32>() / n as f32;
        let var: f32 = x.iter().map(|a| a * a).sum::<f32>() / n as f32;
        // Even 1-bit codes must beat predicting zero, except QJL, whose
        // decoded vector is an unbiased inner-product estimator with more
        // variance than signal (its job is dot products, not reconstruction).
        if spec != "qjl" {
            assert!(err < var, "{spec}: mse {err} vs signal {var}");
        }
        assert!(f.bits_per_element() > 1.0 && f.bits_per_element() <= 32.0, "{spec}");
    }
}
