//! Keep the k smallest (distance, payload) pairs seen.

use std::collections::BinaryHeap;

#[derive(Clone, Copy, Debug)]
struct Item<P>(f32, P);

impl<P> PartialEq for Item<P> {
    fn eq(&self, o: &Self) -> bool {
        self.0.total_cmp(&o.0).is_eq()
    }
}
impl<P> Eq for Item<P> {}
impl<P> PartialOrd for Item<P> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<P> Ord for Item<P> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

pub struct TopK<P> {
    k: usize,
    heap: BinaryHeap<Item<P>>,
}

impl<P: Copy> TopK<P> {
    pub fn new(k: usize) -> Self {
        TopK { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    /// The distance a new item must beat to enter.
    #[inline]
    pub fn bound(&self) -> f32 {
        if self.heap.len() < self.k {
            f32::INFINITY
        } else {
            self.heap.peek().map_or(f32::INFINITY, |t| t.0)
        }
    }

    #[inline]
    pub fn push(&mut self, d: f32, p: P) {
        if self.k == 0 || !(d < self.bound()) {
            return;
        }
        self.heap.push(Item(d, p));
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    /// Items, nearest first.
    pub fn into_sorted(self) -> Vec<(f32, P)> {
        self.heap.into_sorted_vec().into_iter().map(|Item(d, p)| (d, p)).collect()
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
    }
}
