//! Next-token choice: greedy (temperature 0), or temperature + top-p
//! sampling from a seeded stream.

use lowbit_quant::rng::SplitMix64;

pub struct Sampler {
    pub temperature: f32,
    pub top_p: f32,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(temperature: f32, top_p: f32, seed: u64) -> Self {
        Sampler { temperature, top_p, rng: SplitMix64::new(seed) }
    }

    pub fn greedy() -> Self {
        Self::new(0.0, 1.0, 0)
    }

    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.temperature <= 0.0 {
            return argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(f32, u32)> =
            logits.iter().enumerate().map(|(i, &l)| (((l - max) / self.temperature).exp(), i as u32)).collect();
        let sum: f32 = probs.iter().map(|p| p.0).sum();
        probs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut kept = 0f32;
        let mut n = 0;
        for p in &probs {
            kept += p.0 / sum;
            n += 1;
            if kept >= self.top_p {
                break;
            }
        }
        let r = self.rng.next_open01() as f32 * kept;
        let mut acc = 0f32;
        for p in &probs[..n] {
            acc += p.0 / sum;
            if acc >= r {
                return p.1;
            }
        }
        probs[n - 1].1
    }
}

pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}
