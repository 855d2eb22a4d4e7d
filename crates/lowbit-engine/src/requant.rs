//! Re-storing a loaded model's weight matrices in another format
//! (`--weights`). Each matrix starts from the file's own values, decoded
//! once; nothing is encoded twice. A matrix already in the target format is
//! kept byte for byte. When a source matrix is itself quantized and the
//! target is lossy, the result stacks two quantizations; [`Requantized`]
//! counts those so the caller can refuse or say so.

use std::collections::BTreeMap;

use lowbit_quant::{Format, FormatId};

use crate::error::Result;
use crate::matrix::QMatrix;
use crate::model::{Layer, Model};

/// What re-storing did, per source format.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Requantized {
    /// Matrices kept as stored (already in the target format).
    pub kept: usize,
    /// Matrices coded from float values (f32/f16/bf16): one quantization.
    pub from_float: usize,
    /// Matrices coded from already-quantized values, by source format:
    /// the result carries both quantizations' error.
    pub stacked: BTreeMap<String, usize>,
    /// Matrices widened losslessly (target f32).
    pub widened: usize,
}

impl Requantized {
    pub fn stacks(&self) -> bool {
        !self.stacked.is_empty()
    }

    /// `q4_1: 210, q6_k: 1` — the stacked sources, for messages.
    pub fn stacked_list(&self) -> String {
        self.stacked
            .iter()
            .map(|(f, n)| format!("{f}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn is_float(f: &Format) -> bool {
    [FormatId::F32, FormatId::F16, FormatId::BF16].contains(&f.spec().row.id)
}

impl Model {
    /// A copy with every matrix re-stored in `format`, and what that did.
    pub fn requantized(&self, format: &Format) -> Result<(Model, Requantized)> {
        let mut report = Requantized::default();
        let mut re = |m: &QMatrix| -> Result<QMatrix> {
            if m.format.name() == format.name() {
                report.kept += 1;
                return Ok(m.clone());
            }
            if format.spec().row.id == FormatId::F32 {
                report.widened += 1;
            } else if is_float(&m.format) {
                report.from_float += 1;
            } else {
                *report.stacked.entry(m.format.name()).or_default() += 1;
            }
            let mut w = vec![0f32; m.rows * m.cols];
            for r in 0..m.rows {
                m.row_f32(r, &mut w[r * m.cols..(r + 1) * m.cols]);
            }
            QMatrix::from_f32(format.clone(), m.rows, m.cols, &w)
        };
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            layers.push(Layer {
                attn_norm: l.attn_norm.clone(),
                wq: re(&l.wq)?,
                wk: re(&l.wk)?,
                wv: re(&l.wv)?,
                bias_q: l.bias_q.clone(),
                bias_k: l.bias_k.clone(),
                bias_v: l.bias_v.clone(),
                wo: re(&l.wo)?,
                ffn_norm: l.ffn_norm.clone(),
                w_gate: re(&l.w_gate)?,
                w_up: re(&l.w_up)?,
                w_down: re(&l.w_down)?,
            });
        }
        let embed = re(&self.embed)?;
        let tied = std::ptr::eq(self.output.row(0).as_ptr(), self.embed.row(0).as_ptr());
        let output = if tied {
            embed.clone()
        } else {
            re(&self.output)?
        };
        Ok((
            Model {
                config: self.config.clone(),
                embed,
                layers,
                norm: self.norm.clone(),
                output,
            },
            report,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn tiny(format: &str) -> Model {
        let f = Format::parse(format).unwrap();
        let m = |rows: usize, cols: usize, seed: u32| {
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| ((i as u32 * 2654435761 ^ seed) % 1000) as f32 / 1000.0 - 0.5)
                .collect();
            QMatrix::from_f32(f.clone(), rows, cols, &w).unwrap()
        };
        let c = Config {
            dim: 64,
            hidden: 128,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 4,
            vocab: 256,
            max_seq: 64,
            rope_theta: 1e4,
            rms_eps: 1e-5,
            rope_neox: false,
        };
        let layer = |s| Layer {
            attn_norm: vec![1.0; 64],
            wq: m(64, 64, s),
            wk: m(64, 64, s + 1),
            wv: m(64, 64, s + 2),
            bias_q: None,
            bias_k: None,
            bias_v: None,
            wo: m(64, 64, s + 3),
            ffn_norm: vec![1.0; 64],
            w_gate: m(128, 64, s + 4),
            w_up: m(128, 64, s + 5),
            w_down: m(64, 128, s + 6),
        };
        let embed = m(256, 64, 99);
        Model {
            config: c,
            output: embed.clone(),
            embed,
            layers: vec![layer(0), layer(10)],
            norm: vec![1.0; 64],
        }
    }

    #[test]
    fn counts_stacked_quantizations_and_keeps_matching_matrices() {
        let q = tiny("q4_1");
        let (same, r) = q.requantized(&Format::parse("q4_1").unwrap()).unwrap();
        assert_eq!((r.kept, r.stacks()), (15, false), "{r:?}");
        assert_eq!(
            same.layers[0].wq.row(3),
            q.layers[0].wq.row(3),
            "kept byte for byte"
        );
        let (_, r) = q.requantized(&Format::parse("q8_0").unwrap()).unwrap();
        assert_eq!(r.stacked_list(), "q4_1: 15");
        let (_, r) = q.requantized(&Format::parse("f32").unwrap()).unwrap();
        assert_eq!((r.widened, r.stacks()), (15, false));
        let (_, r) = tiny("f16")
            .requantized(&Format::parse("q4_0").unwrap())
            .unwrap();
        assert_eq!((r.from_float, r.stacks()), (15, false));
    }
}
