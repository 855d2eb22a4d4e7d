//! Formats candle lacks (IQ4_NL, TQ1_0, TQ2_0), checked against ggml's
//! documented layouts with hand-worked vectors.

use lowbit_quant::Format;

const F16_HALF: [u8; 2] = [0x00, 0x38]; // 0.5
const F16_ONE: [u8; 2] = [0x00, 0x3C]; // 1.0

#[test]
fn tq2_0_layout() {
    // 2 bits per trit, (t+1) at bit 2n of byte m for element 32n + m of each 128.
    let f = Format::parse("tq2_0").unwrap();
    let mut x = vec![0f32; 256];
    x[0] = -0.5;
    x[1] = 0.5;
    let b = f.encode(&x).unwrap();
    assert_eq!(b.len(), 66);
    assert_eq!(b[0], 0b01_01_01_00); // x0 = -1 → 0, the rest of its column 0 → 1
    assert_eq!(b[1], 0b01_01_01_10); // x1 = +1 → 2
    assert!(b[2..64].iter().all(|&v| v == 0x55));
    assert_eq!(&b[64..66], &F16_HALF);
    assert_eq!(f.decode(&b, 256).unwrap()[..3], [-0.5, 0.5, 0.0]);
}

#[test]
fn tq1_0_layout() {
    // Five trits per byte, most significant first, stored as ceil(q·256/243).
    let f = Format::parse("tq1_0").unwrap();
    let mut x = vec![0f32; 256];
    x[0] = 1.0;
    let b = f.encode(&x).unwrap();
    assert_eq!(b.len(), 54);
    // Elements 0,32,64,96,128 → trits 2,1,1,1,1 → 202 → ceil(202·256/243) = 213.
    assert_eq!(b[0], 213);
    // All-zero columns: trits 1,1,1,1,1 → 121 → 128.
    assert!(b[1..48].iter().all(|&v| v == 128));
    // qh: four trits 1,1,1,1 = 40, shifted one trit (×3) = 120 → 127.
    assert!(b[48..52].iter().all(|&v| v == 127));
    assert_eq!(&b[52..54], &F16_ONE);
    let y = f.decode(&b, 256).unwrap();
    assert_eq!(y[0], 1.0);
    assert!(y[1..].iter().all(|&v| v == 0.0));
    // A full ternary pattern survives.
    let z: Vec<f32> = (0..256).map(|i| [(-1.0f32), 0.0, 1.0][(i * 7 + i / 5) % 3]).collect();
    assert_eq!(f.decode(&f.encode(&z).unwrap(), 256).unwrap(), z);
}

#[test]
fn iq4_nl_layout() {
    // Values exactly on the grid: kvalues[j % 16] × 0.01. The codes must be
    // j % 16 (element j low nibble, j+16 high nibble), d = f16(0.01).
    let kv = lowbit_quant::ggml::iq4_nl::KVALUES;
    let f = Format::parse("iq4_nl").unwrap();
    let x: Vec<f32> = (0..32).map(|j| kv[j % 16] as f32 * 0.01).collect();
    let b = f.encode(&x).unwrap();
    assert_eq!(b.len(), 18);
    let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    assert!((d - 0.01).abs() < 1e-5, "d = {d}");
    for j in 0..16 {
        assert_eq!(b[2 + j], (j as u8) | ((j as u8) << 4), "byte {j}");
    }
    let y = f.decode(&b, 32).unwrap();
    for (a, c) in x.iter().zip(&y) {
        assert!((a - c).abs() < 1e-3);
    }
}
