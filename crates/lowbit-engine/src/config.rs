//! Hyper-parameters of a Llama-family decoder.

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub dim: usize,
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub vocab: usize,
    /// Longest context the model was trained for.
    pub max_seq: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    /// RoPE on the two halves of each head (GPT-NeoX / Qwen2 layout)
    /// instead of adjacent pairs (llama / llama2.c layout).
    pub rope_neox: bool,
}

impl Config {
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }
    pub fn kv_dim(&self) -> usize {
        self.head_dim() * self.n_kv_heads
    }
}
