//! A weight matrix kept in its stored format: rows of quantized blocks,
//! either borrowed from a memory-mapped file or owned. Matrix–vector
//! products run straight on the stored bytes with the lowbit-quant kernels,
//! split over rows with rayon; the model is never expanded to f32.

use std::sync::Arc;

use lowbit_quant::Format;
use memmap2::Mmap;
use rayon::prelude::*;

use crate::error::Result;

#[derive(Clone)]
pub enum Bytes {
    Mapped(Arc<Mmap>, std::ops::Range<usize>),
    Owned(Arc<Vec<u8>>),
}

impl Bytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m, r) => &m[r.clone()],
            Bytes::Owned(v) => v,
        }
    }
}

#[derive(Clone)]
pub struct QMatrix {
    pub format: Format,
    pub rows: usize,
    pub cols: usize,
    row_bytes: usize,
    data: Bytes,
}

/// Rows per rayon task: a few tasks per thread (for balance), never tiny
/// ones (task hand-off costs more than a short row).
fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(4 * rayon::current_num_threads()).max(16)
}

impl QMatrix {
    pub fn new(format: Format, rows: usize, cols: usize, data: Bytes) -> Result<Self> {
        let row_bytes = format.encoded_len(cols)?;
        let need = row_bytes * rows;
        let got = data.as_slice().len();
        if got != need {
            return Err(lowbit_quant::QuantError::BufferSize { format: format.name(), got, need, elems: rows * cols }.into());
        }
        Ok(QMatrix { format, rows, cols, row_bytes, data })
    }

    /// Encode an f32 matrix (row-major) into `format`.
    pub fn from_f32(format: Format, rows: usize, cols: usize, w: &[f32]) -> Result<Self> {
        let bytes = format.encode(w)?;
        Self::new(format, rows, cols, Bytes::Owned(Arc::new(bytes)))
    }

    pub fn row(&self, r: usize) -> &[u8] {
        &self.data.as_slice()[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Decode one row (an embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        self.format.codec().decode(self.row(r), out);
    }

    pub fn bytes(&self) -> usize {
        self.row_bytes * self.rows
    }

    /// out = W·x for one vector.
    pub fn matvec(&self, x: &[f32], out: &mut [f32]) {
        let codec = self.format.codec();
        let per = rows_per_task(self.rows);
        match self.format.activation() {
            Some(_) => {
                let act = self.format.quantize_activation(x).expect("activation length matches cols");
                out.par_chunks_mut(per).enumerate().for_each(|(t, o)| {
                    for (i, v) in o.iter_mut().enumerate() {
                        *v = codec.dot_q8(self.row(t * per + i), &act);
                    }
                });
            }
            None => {
                out.par_chunks_mut(per).enumerate().for_each(|(t, o)| {
                    for (i, v) in o.iter_mut().enumerate() {
                        *v = codec.dot_f32(self.row(t * per + i), x);
                    }
                });
            }
        }
    }

    /// out[t] = W·x[t] for a batch of vectors (prefill): activations are
    /// quantized once, each weight row is read once for the whole batch.
    pub fn matmul(&self, xs: &[f32], n: usize, out: &mut [f32]) {
        let (c, r) = (self.cols, self.rows);
        let codec = self.format.codec();
        let acts: Option<Vec<Vec<u8>>> = self.format.activation().map(|_| {
            xs.chunks_exact(c).map(|x| self.format.quantize_activation(x).expect("length matches")).collect()
        });
        // Work on row blocks; write out[t*r + row].
        let mut tmp = vec![0f32; n * r];
        let per = rows_per_task(r);
        tmp.par_chunks_mut(per * n).enumerate().for_each(|(task, o)| {
            let row0 = task * per;
            let rows = o.len() / n;
            let refs: Option<Vec<&[u8]>> = acts.as_ref().map(|a| a.iter().map(|v| &v[..]).collect());
            let mut i = 0;
            if let Some(a) = &refs {
                // Four rows at a time: each activation is read once per four rows.
                while i + 4 <= rows {
                    let w = [self.row(row0 + i), self.row(row0 + i + 1), self.row(row0 + i + 2), self.row(row0 + i + 3)];
                    let (o0, rest) = o[i * n..(i + 4) * n].split_at_mut(n);
                    let (o1, rest) = rest.split_at_mut(n);
                    let (o2, o3) = rest.split_at_mut(n);
                    codec.dot_q8_batch4(w, a, [o0, o1, o2, o3]);
                    i += 4;
                }
            }
            for i in i..rows {
                let w = self.row(row0 + i);
                match &refs {
                    Some(a) => codec.dot_q8_batch(w, a, &mut o[i * n..(i + 1) * n]),
                    None => {
                        for t in 0..n {
                            o[i * n + t] = codec.dot_f32(w, &xs[t * c..(t + 1) * c]);
                        }
                    }
                }
            }
        });
        for row in 0..r {
            for t in 0..n {
                out[t * r + row] = tmp[row * n + t];
            }
        }
    }
}
