//! The shapes of a model, and the projections adapters target: what every layer of the crate
//! shares (the bottom layer, with the errors and the kernels).

/// Which published architecture the weights follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Qwen2,
}

/// The shapes and constants of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f32,
    pub rms_norm_eps: f64,
    pub max_positions: usize,
    /// GGUF stores Llama's q/k rows permuted for interleaved rotary embeddings (llama.cpp's
    /// converter); Hugging Face weights rotate halves. Adapters trained on the latter are
    /// permuted the same way when applied to the former.
    pub rope_interleaved: bool,
}

/// The projections a LoRA adapter may target, by their PEFT names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Projection {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Projection {
    pub const ALL: [Projection; 7] = [
        Projection::Q,
        Projection::K,
        Projection::V,
        Projection::O,
        Projection::Gate,
        Projection::Up,
        Projection::Down,
    ];

    /// The module name PEFT uses (`target_modules`).
    pub fn peft_name(self) -> &'static str {
        match self {
            Projection::Q => "q_proj",
            Projection::K => "k_proj",
            Projection::V => "v_proj",
            Projection::O => "o_proj",
            Projection::Gate => "gate_proj",
            Projection::Up => "up_proj",
            Projection::Down => "down_proj",
        }
    }

    pub fn from_peft_name(name: &str) -> Option<Self> {
        Projection::ALL.into_iter().find(|p| p.peft_name() == name)
    }

    /// (input, output) features of this projection in a model with `config`.
    pub fn shape(self, config: &ModelConfig) -> (usize, usize) {
        let (h, i) = (config.hidden_size, config.intermediate_size);
        let q = config.num_heads * config.head_dim;
        let kv = config.num_kv_heads * config.head_dim;
        match self {
            Projection::Q => (h, q),
            Projection::K | Projection::V => (h, kv),
            Projection::O => (q, h),
            Projection::Gate | Projection::Up => (h, i),
            Projection::Down => (i, h),
        }
    }
}
