//! Keep the k smallest (distance, payload) pairs seen. Candidates that
//! beat the current bound are appended to a buffer; when it holds 2k (at
//! least 64) they are cut back to the k best by a linear-time selection,
//! which tightens the bound — cheaper per push than a binary heap.

pub struct TopK<P> {
    k: usize,
    cap: usize,
    bound: f32,
    buf: Vec<(f32, P)>,
}

impl<P: Copy> TopK<P> {
    pub fn new(k: usize) -> Self {
        let cap = (2 * k).max(64);
        TopK { k, cap, bound: f32::INFINITY, buf: Vec::with_capacity(cap) }
    }

    /// The distance a new item must beat to enter.
    #[inline]
    pub fn bound(&self) -> f32 {
        self.bound
    }

    #[inline]
    pub fn push(&mut self, d: f32, p: P) {
        // NaN never enters (the comparison is false).
        if d < self.bound && self.k > 0 {
            self.buf.push((d, p));
            if self.buf.len() == self.cap {
                self.prune();
            }
        }
    }

    fn prune(&mut self) {
        if self.buf.len() > self.k {
            self.buf.select_nth_unstable_by(self.k - 1, |a, b| a.0.total_cmp(&b.0));
            self.buf.truncate(self.k);
            self.bound = self.buf.iter().map(|x| x.0).fold(f32::NEG_INFINITY, f32::max);
        }
    }

    /// Items, nearest first.
    pub fn into_sorted(mut self) -> Vec<(f32, P)> {
        self.prune();
        self.buf.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_smallest_in_order() {
        let mut t = TopK::new(3);
        for (i, d) in [5.0, 1.0, 4.0, f32::NAN, 2.0, 3.0, 0.5].into_iter().enumerate() {
            t.push(d, i);
        }
        assert_eq!(t.into_sorted(), vec![(0.5, 6), (1.0, 1), (2.0, 4)]);
        // Many more than the buffer holds, in a scrambled order.
        let mut t = TopK::new(5);
        for i in 0..1000u32 {
            t.push(((i * 7919) % 1000) as f32, i);
        }
        let got: Vec<f32> = t.into_sorted().iter().map(|x| x.0).collect();
        assert_eq!(got, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    }
}
