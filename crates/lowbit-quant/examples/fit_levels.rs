//! Encode 20,000 pseudo-normal 128-vectors with a format, write the codes
//! to stdout and the decoded values (f32, little-endian) to DECODED if
//! given; prints the normalized squared error. Run it under each SIMD
//! level to compare the encoders:
//!
//!   for l in scalar avx2 avx512; do
//!     LOWBIT_SIMD=$l cargo run --release -p lowbit-quant --example fit_levels -- turbo4:d128:fit /tmp/dec_$l.bin > /tmp/codes_$l.bin
//!   done
//!
//! (docs/cuda_notes.md, session 8: the `:fit` search's near-ties.)
use lowbit_quant::Format;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = std::env::args().nth(1).ok_or("usage: fit_levels FORMAT [DECODED]")?;
    let f = Format::parse(&spec)?;
    let mut s: u64 = 12345;
    let (mut err, mut norm, mut codes, mut dec) = (0f64, 0f64, Vec::new(), Vec::new());
    for _ in 0..20000 {
        // Sum of 4 uniforms per value: close enough to normal, deterministic.
        let row: Vec<f32> = (0..128)
            .map(|_| {
                (0..4)
                    .map(|_| {
                        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                    })
                    .sum()
            })
            .collect();
        let c = f.encode(&row)?;
        let d = f.decode(&c, 128)?;
        codes.extend(c);
        err += row.iter().zip(&d).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
        norm += row.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
        dec.extend(d.iter().flat_map(|v| v.to_le_bytes()));
    }
    eprintln!("{spec}: normalized squared error {:.6e}", err / norm);
    std::io::Write::write_all(&mut std::io::stdout(), &codes)?;
    if let Some(path) = std::env::args().nth(2) {
        std::fs::write(path, dec)?;
    }
    Ok(())
}
