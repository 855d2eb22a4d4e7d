use lowbit_quant::Format;
fn main() {
    let spec = std::env::args().nth(1).unwrap();
    let f = Format::parse(&spec).unwrap();
    // deterministic pseudo-normal rows
    let mut s: u64 = 12345;
    let mut out = Vec::new();
    let (mut err, mut nn, mut dec) = (0f64, 0f64, Vec::<f32>::new());
    for _ in 0..20000 {
        let row: Vec<f32> = (0..128).map(|_| {
            let mut a = 0f32;
            for _ in 0..4 { s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); a += ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5; }
            a
        }).collect();
        let e = f.encode(&row).unwrap();
        let d = f.decode(&e, 128).unwrap();
        err += row.iter().zip(&d).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
        nn += row.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
        dec.extend(d);
        out.extend(e);
    }
    eprintln!("nmse {:.6e}", err / nn);
    let b: Vec<u8> = dec.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::io::Write::write_all(&mut std::io::stdout(), &b).unwrap();
    let _ = out;
}
