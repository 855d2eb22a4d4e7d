//! Dense little-endian bit packing of small codes (1..=8 bits each).
//! Code i occupies bits [i*b, (i+1)*b) of the byte stream, LSB first, so
//! eight 3-bit codes fill exactly three bytes.

/// Bytes needed for `n` codes of `bits` bits.
pub const fn packed_len(n: usize, bits: u32) -> usize {
    (n * bits as usize).div_ceil(8)
}

pub fn pack(codes: &[u8], bits: u32, out: &mut [u8]) {
    let whole = codes.len() % 8 == 0;
    match bits {
        8 => out[..codes.len()].copy_from_slice(codes),
        1 | 2 | 3 if whole => {
            // Eight codes at a time fill exactly `bits` bytes.
            let b = bits as usize;
            for (o, c) in out.chunks_exact_mut(b).zip(codes.chunks_exact(8)) {
                let mut v = 0u32;
                for (k, &ck) in c.iter().enumerate() {
                    v |= (ck as u32) << (b * k);
                }
                o.copy_from_slice(&v.to_le_bytes()[..b]);
            }
        }
        4 => {
            for (o, c) in out.iter_mut().zip(codes.chunks(2)) {
                *o = c[0] | (c.get(1).copied().unwrap_or(0) << 4);
            }
        }
        _ => {
            let n = packed_len(codes.len(), bits);
            out[..n].fill(0);
            let mut acc = 0u32;
            let mut nbits = 0u32;
            let mut at = 0;
            for &c in codes {
                acc |= (c as u32) << nbits;
                nbits += bits;
                while nbits >= 8 {
                    out[at] = acc as u8;
                    at += 1;
                    acc >>= 8;
                    nbits -= 8;
                }
            }
            if nbits > 0 {
                out[at] = acc as u8;
            }
        }
    }
}

pub fn unpack(packed: &[u8], bits: u32, codes: &mut [u8]) {
    let whole = codes.len() % 8 == 0;
    match bits {
        8 => codes.copy_from_slice(&packed[..codes.len()]),
        1 | 2 | 3 if whole => {
            let b = bits as usize;
            let mask = (1u32 << b) - 1;
            for (p, c) in packed.chunks_exact(b).zip(codes.chunks_exact_mut(8)) {
                let mut bytes = [0u8; 4];
                bytes[..b].copy_from_slice(p);
                let v = u32::from_le_bytes(bytes);
                for (k, ck) in c.iter_mut().enumerate() {
                    *ck = ((v >> (b * k)) & mask) as u8;
                }
            }
        }
        4 => {
            for (i, c) in codes.iter_mut().enumerate() {
                *c = (packed[i / 2] >> (4 * (i % 2))) & 0xF;
            }
        }
        _ => {
            let mask = (1u32 << bits) - 1;
            let mut acc = 0u32;
            let mut nbits = 0u32;
            let mut at = 0;
            for c in codes.iter_mut() {
                while nbits < bits {
                    acc |= (packed[at] as u32) << nbits;
                    at += 1;
                    nbits += 8;
                }
                *c = (acc & mask) as u8;
                acc >>= bits;
                nbits -= bits;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_every_width_and_odd_lengths() {
        for bits in 1..=8u32 {
            for n in [1usize, 7, 8, 9, 31, 128, 133] {
                let codes: Vec<u8> = (0..n).map(|i| ((i * 7 + 3) % (1 << bits)) as u8).collect();
                let mut packed = vec![0u8; packed_len(n, bits)];
                pack(&codes, bits, &mut packed);
                let mut back = vec![0u8; n];
                unpack(&packed, bits, &mut back);
                assert_eq!(codes, back, "bits {bits} n {n}");
            }
        }
    }

    #[test]
    fn three_bits_pack_eight_codes_in_three_bytes() {
        assert_eq!(packed_len(8, 3), 3);
        let mut out = [0u8; 3];
        pack(&[7, 0, 0, 0, 0, 0, 0, 7], 3, &mut out);
        assert_eq!(out, [0x07, 0x00, 0xE0]);
    }
}
