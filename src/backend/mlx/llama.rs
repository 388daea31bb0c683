//! Llama (mlx-lm's `llama.py`; Llama 3 and SmolLM2): plain pre-norm layers, SiLU-gated MLP,
//! RoPE with Llama 3's frequency smoothing where the config asks for it.

use super::config::ModelConfig;
use super::joined::Joining;
use super::layers::{Activation, Attention, Layer, Mlp, QkNorm, RmsNorm, Rope};
use super::weights::{WeightError, Weights};

pub fn layer(ws: &mut Weights, cfg: &ModelConfig, i: i32, join: Joining) -> Result<Layer, WeightError> {
    plain_layer(ws, cfg, i, join, |_, _| Ok(QkNorm::None))
}

/// A Llama-shaped layer; `qk_norm` loads the family's per-head norms from the attention's path.
pub fn plain_layer(
    ws: &mut Weights,
    cfg: &ModelConfig,
    i: i32,
    join: Joining,
    qk_norm: impl FnOnce(&mut Weights, &str) -> Result<QkNorm, WeightError>,
) -> Result<Layer, WeightError> {
    let p = format!("model.layers.{i}");
    let a = format!("{p}.self_attn");
    let qk_norm = qk_norm(ws, &a)?;
    let rope = Rope::new(cfg, cfg.rope_theta, &cfg.rope_scaling)?;
    Ok(Layer {
        attn: Attention::load(ws, &a, cfg, qk_norm, rope, join)?,
        mlp: Mlp::load(ws, &format!("{p}.mlp"), cfg, Activation::Silu, join)?,
        input_norm: RmsNorm::load(ws, &format!("{p}.input_layernorm"), cfg)?,
        post_attn_norm: RmsNorm::load(ws, &format!("{p}.post_attention_layernorm"), cfg)?,
        sandwich: None,
        sliding: false,
    })
}

pub fn final_norm(ws: &mut Weights, cfg: &ModelConfig) -> Result<RmsNorm, WeightError> {
    RmsNorm::load(ws, "model.norm", cfg)
}

/// Llama and Qwen follow `tie_word_embeddings` (and need `lm_head` when it is false).
pub fn untied(cfg: &ModelConfig) -> bool {
    !cfg.tie_word_embeddings
}
