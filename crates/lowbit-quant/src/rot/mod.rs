//! The rotation + codebook family: RHT, Lloyd–Max codebooks, TurboQuant,
//! QJL, PolarQuant.

pub mod gauss_proj;
pub mod lloyd_max;
pub mod polar;
pub mod qjl;
pub mod rht;
pub mod rings;
pub mod turbo;

#[cfg(test)]
mod tests {
    use crate::Format;

    #[test]
    fn decode_is_inverse_rotation_of_decode_rotated() {
        for spec in ["turbo3:d64", "turbo4p:d64", "polar4:d64", "turbo2:d96"] {
            let f = Format::parse(spec).unwrap();
            let x: Vec<f32> = (0..f.block_elems() * 2).map(|i| ((i * 29 % 17) as f32 - 8.0) * 0.1).collect();
            let codes = f.encode(&x).unwrap();
            let full = f.decode(&codes, x.len()).unwrap();
            let mut rot = vec![0f32; x.len()];
            f.codec().decode_rotated(&codes, &mut rot);
            let rht = f.codec().rotation().expect("rotating codec");
            for y in rot.chunks_exact_mut(f.block_elems()) {
                rht.inverse(y);
            }
            for (a, b) in full.iter().zip(&rot) {
                assert!((a - b).abs() < 1e-5, "{spec}: {a} vs {b}");
            }
        }
    }
}
