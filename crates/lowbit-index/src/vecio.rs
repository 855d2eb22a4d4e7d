//! Vector files: `.fvecs` (per row: i32 dim, dim × f32), `.ivecs` (i32),
//! `.bvecs` (u8) — the TEXMEX/FAISS formats — and NumPy `.npy` (2-D,
//! little-endian f32, C order). Readers check every row's dimension and
//! the file length; writers go through a temporary file and a rename.

use std::path::Path;

use crate::error::{malformed, IndexError, Result};

/// A row-major matrix of `n` vectors of `dim` values.
#[derive(Clone, Debug, PartialEq)]
pub struct Vectors<T> {
    pub dim: usize,
    pub data: Vec<T>,
}

impl<T> Vectors<T> {
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn row(&self, i: usize) -> &[T] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| IndexError::Io { path: path.to_path_buf(), source })
}

/// Rows of `dim` elements of `elem` bytes, each preceded by its i32 dim.
fn read_vecs<T>(path: &Path, elem: usize, conv: impl Fn(&[u8]) -> T) -> Result<Vectors<T>> {
    let bytes = read(path)?;
    if bytes.len() < 4 {
        return Err(malformed(path, "empty or shorter than one row header"));
    }
    let dim = i32::from_le_bytes(bytes[..4].try_into().unwrap());
    if dim <= 0 || dim > 1 << 20 {
        return Err(malformed(path, format!("first row has dimension {dim}")));
    }
    let dim = dim as usize;
    let row = 4 + dim * elem;
    if bytes.len() % row != 0 {
        return Err(malformed(path, format!("length {} is not a whole number of {dim}-dimensional rows ({row} bytes each): truncated?", bytes.len())));
    }
    let mut data = Vec::with_capacity(bytes.len() / row * dim);
    for (i, r) in bytes.chunks_exact(row).enumerate() {
        let d = i32::from_le_bytes(r[..4].try_into().unwrap());
        if d as usize != dim {
            return Err(malformed(path, format!("row {i} has dimension {d}, the first row {dim}")));
        }
        data.extend(r[4..].chunks_exact(elem).map(&conv));
    }
    Ok(Vectors { dim, data })
}

pub fn read_fvecs(path: &Path) -> Result<Vectors<f32>> {
    read_vecs(path, 4, |b| f32::from_le_bytes(b.try_into().unwrap()))
}

pub fn read_ivecs(path: &Path) -> Result<Vectors<i32>> {
    read_vecs(path, 4, |b| i32::from_le_bytes(b.try_into().unwrap()))
}

pub fn read_bvecs(path: &Path) -> Result<Vectors<u8>> {
    read_vecs(path, 1, |b| b[0])
}

/// A 2-D little-endian f32 C-order `.npy` file (format versions 1–3).
pub fn read_npy(path: &Path) -> Result<Vectors<f32>> {
    let bytes = read(path)?;
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(malformed(path, "not a .npy file (magic \\x93NUMPY missing)"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(malformed(path, format!("unsupported .npy version {v}"))),
    };
    let header = bytes.get(start..start + hlen).ok_or_else(|| malformed(path, "header runs past the end"))?;
    let header = String::from_utf8_lossy(header);
    let field = |key: &str| -> Option<String> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        let end = if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}'])? };
        Some(rest[..end].trim().to_string())
    };
    let descr = field("descr").ok_or_else(|| malformed(path, "header has no 'descr'"))?;
    if descr != "'<f4'" {
        return Err(malformed(path, format!("dtype {descr}: only little-endian float32 ('<f4') is read; convert with x.astype('float32')")));
    }
    if field("fortran_order").as_deref() != Some("False") {
        return Err(malformed(path, "Fortran-order arrays are not read; save a C-order array"));
    }
    let shape = field("shape").ok_or_else(|| malformed(path, "header has no 'shape'"))?;
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| malformed(path, format!("bad shape {shape}"))))
        .collect::<Result<_>>()?;
    let [n, dim] = dims[..] else {
        return Err(malformed(path, format!("shape {shape}: expected a 2-D array (n, dim)")));
    };
    let body = &bytes[start + hlen..];
    if dim == 0 || body.len() != n * dim * 4 {
        return Err(malformed(path, format!("shape {shape} needs {} data bytes, the file has {}", n * dim * 4, body.len())));
    }
    let data = body.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    Ok(Vectors { dim, data })
}

/// Any supported float input, chosen by extension (`.bvecs` is widened).
pub fn read_vectors(path: &Path) -> Result<Vectors<f32>> {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "fvecs" => read_fvecs(path),
        "bvecs" => {
            let b = read_bvecs(path)?;
            Ok(Vectors { dim: b.dim, data: b.data.into_iter().map(f32::from).collect() })
        }
        "npy" => read_npy(path),
        e => Err(malformed(path, format!("unknown vector file type `.{e}`: expected .fvecs, .bvecs or .npy"))),
    }
}

/// Write `bytes` to `path` atomically: a temporary file beside it, then a
/// rename, so an existing file is never left half-written.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let io = |source| IndexError::Io { path: path.to_path_buf(), source };
    let name = path.file_name().ok_or_else(|| IndexError::Input(format!("{} is not a file path", path.display())))?;
    let tmp = path.with_file_name(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

fn vecs_bytes<T: Copy>(v: &Vectors<T>, le: impl Fn(T) -> [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * (4 + 4 * v.dim));
    for i in 0..v.len() {
        out.extend((v.dim as i32).to_le_bytes());
        for &x in v.row(i) {
            out.extend(le(x));
        }
    }
    out
}

pub fn write_fvecs(path: &Path, v: &Vectors<f32>) -> Result<()> {
    write_atomic(path, &vecs_bytes(v, f32::to_le_bytes))
}

pub fn write_ivecs(path: &Path, v: &Vectors<i32>) -> Result<()> {
    write_atomic(path, &vecs_bytes(v, i32::to_le_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("lowbit-vecio-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn fvecs_round_trip_and_truncation_is_an_error() {
        let v = Vectors { dim: 3, data: vec![1.0, 2.0, 3.0, -4.0, 5.5, 6.0] };
        let p = tmp("a.fvecs");
        write_fvecs(&p, &v).unwrap();
        assert_eq!(read_vectors(&p).unwrap(), v);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let e = read_fvecs(&p).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");
        std::fs::write(&p, []).unwrap();
        assert!(read_fvecs(&p).unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn npy_reads_f32_and_refuses_other_dtypes() {
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
        let pad = 64 - (10 + header.len() + 1) % 64;
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend(((header.len() + pad + 1) as u16).to_le_bytes());
        b.extend(header.bytes());
        b.extend(std::iter::repeat(b' ').take(pad));
        b.push(b'\n');
        for x in [1f32, 2.0, 3.0, 4.0] {
            b.extend(x.to_le_bytes());
        }
        let p = tmp("a.npy");
        std::fs::write(&p, &b).unwrap();
        assert_eq!(read_vectors(&p).unwrap(), Vectors { dim: 2, data: vec![1.0, 2.0, 3.0, 4.0] });
        let at = b.windows(3).position(|w| w == b"<f4").unwrap();
        b[at + 2] = b'8';
        std::fs::write(&p, &b).unwrap();
        assert!(read_npy(&p).unwrap_err().to_string().contains("float32"));
    }
}
