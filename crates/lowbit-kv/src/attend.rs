//! Attention as a running (online) softmax over row chunks, the
//! flash-attention recurrence: a query head folds in keys and values a
//! chunk at a time, so no cache is ever widened whole, and partial states
//! over different token ranges merge exactly. Values coded in a rotated
//! domain accumulate there and are rotated back once, in [`HeadAcc::finish`].

use lowbit_quant::rot::rht::Rht;
use lowbit_quant::simd::{axpy, dot_rows, dot_rows_f16, exp_sub_sum, weighted_rows, weighted_rows_f16};

/// The running state of one query head.
#[derive(Clone, Debug)]
pub struct HeadAcc {
    max: f32,
    sum: f32,
    plain: Vec<f32>,
    rotated: Vec<f32>,
}

impl HeadAcc {
    pub fn new(d: usize) -> HeadAcc {
        HeadAcc { max: f32::NEG_INFINITY, sum: 0.0, plain: vec![0.0; d], rotated: Vec::new() }
    }

    fn rescale(&mut self, new_max: f32) {
        if new_max > self.max {
            let f = (self.max - new_max).exp();
            self.sum *= f;
            self.plain.iter_mut().for_each(|v| *v *= f);
            self.rotated.iter_mut().for_each(|v| *v *= f);
            self.max = new_max;
        }
    }

    /// Fold in rows: `keys` and `vals` hold n rows of d; `q` is in the
    /// keys' domain and pre-scaled by 1/√d; values go to the rotated
    /// accumulator when `rotated`. `scores` is scratch of ≥ n floats.
    pub fn absorb(&mut self, q: &[f32], keys: &[f32], vals: &[f32], rotated: bool, scores: &mut [f32]) {
        let d = q.len();
        let n = keys.len() / d;
        dot_rows(q, keys, &mut scores[..n]);
        self.fold(&mut scores[..n], vals, rotated);
    }

    /// Fold in rows whose scores (already scaled) are given; `scores` is
    /// overwritten with the softmax weights.
    pub fn fold(&mut self, scores: &mut [f32], vals: &[f32], rotated: bool) {
        self.fold_by(scores, rotated, |w, acc| weighted_rows(w, vals, acc));
    }

    /// [`HeadAcc::absorb`] on f16 rows read in place: row i of keys and of
    /// values starts at i·stride (one head of token-major rows), n rows,
    /// plain domain. The same results as converting the rows first.
    pub fn absorb_f16(&mut self, q: &[f32], keys: &[half::f16], vals: &[half::f16], stride: usize, n: usize, scores: &mut [f32]) {
        dot_rows_f16(q, keys, stride, &mut scores[..n]);
        self.fold_by(&mut scores[..n], false, |w, acc| weighted_rows_f16(w, vals, stride, acc));
    }

    /// The softmax update for the weights in `scores`, then `add(weights,
    /// accumulator)` sums the value rows.
    fn fold_by(&mut self, scores: &mut [f32], rotated: bool, add: impl FnOnce(&[f32], &mut [f32])) {
        let d = self.plain.len();
        let mx = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.rescale(mx);
        if rotated && self.rotated.is_empty() {
            self.rotated = vec![0.0; d];
        }
        self.sum += exp_sub_sum(scores, self.max);
        let acc = if rotated { &mut self.rotated } else { &mut self.plain };
        add(scores, acc);
    }

    /// Merge another state over a disjoint token range.
    pub fn merge(&mut self, o: &HeadAcc) {
        if o.sum == 0.0 {
            return;
        }
        self.rescale(o.max);
        let f = (o.max - self.max).exp();
        self.sum += o.sum * f;
        axpy(f, &o.plain, &mut self.plain);
        if !o.rotated.is_empty() {
            if self.rotated.is_empty() {
                self.rotated = vec![0.0; o.rotated.len()];
            }
            axpy(f, &o.rotated, &mut self.rotated);
        }
    }

    /// The attention output: plain part plus the rotated part rotated back.
    pub fn finish(mut self, rot: Option<&Rht>, out: &mut [f32]) {
        if !self.rotated.is_empty() {
            rot.expect("a rotated accumulator has a rotation").inverse(&mut self.rotated);
            for (p, r) in self.plain.iter_mut().zip(&self.rotated) {
                *p += r;
            }
        }
        let inv = if self.sum > 0.0 { 1.0 / self.sum } else { 0.0 };
        for (o, p) in out.iter_mut().zip(&self.plain) {
            *o = p * inv;
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn naive(q: &[f32], keys: &[f32], vals: &[f32]) -> Vec<f32> {
        let d = q.len();
        let s: Vec<f32> = keys.chunks_exact(d).map(|k| q.iter().zip(k).map(|(a, b)| a * b).sum()).collect();
        let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = s.iter().map(|v| (v - m).exp()).collect();
        let z: f32 = e.iter().sum();
        let mut out = vec![0f32; d];
        for (w, v) in e.iter().zip(vals.chunks_exact(d)) {
            axpy(w / z, v, &mut out);
        }
        out
    }

    #[test]
    fn chunked_and_merged_equals_one_softmax() {
        let d = 16;
        let n = 37;
        let q: Vec<f32> = (0..d).map(|i| (i as f32 * 0.7).sin()).collect();
        let keys: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.13).cos() * 3.0).collect();
        let vals: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.29).sin()).collect();
        let want = naive(&q, &keys, &vals);
        let mut scores = vec![0f32; n];
        let (mut a, mut b) = (HeadAcc::new(d), HeadAcc::new(d));
        a.absorb(&q, &keys[..5 * d], &vals[..5 * d], false, &mut scores);
        a.absorb(&q, &keys[5 * d..20 * d], &vals[5 * d..20 * d], false, &mut scores);
        b.absorb(&q, &keys[20 * d..], &vals[20 * d..], false, &mut scores);
        a.merge(&b);
        let mut got = vec![0f32; d];
        a.finish(None, &mut got);
        for (x, y) in got.iter().zip(&want) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
}
