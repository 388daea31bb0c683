//! Gemma 3 (mlx-lm's `gemma3_text.py`): norms that scale by 1 + w, q/k norms on the transposed
//! heads, sandwich norms around both sublayers, the approximate GELU, local (sliding-window)
//! layers with their own RoPE base between the global ones, and embeddings scaled by
//! √hidden before the first layer.

use mlx_rs::{Array, Dtype};

use super::config::{ModelConfig, RopeScaling};
use super::joined::Joining;
use super::layers::{Activation, Attention, Layer, Mlp, QkNorm, R, RmsNorm, Rope};
use super::weights::{WeightError, Weights};

pub fn layer(ws: &mut Weights, cfg: &ModelConfig, i: i32, join: Joining) -> Result<Layer, WeightError> {
    let p = format!("model.layers.{i}");
    let sliding = cfg.is_sliding(i);
    let rope = if sliding {
        Rope::new(cfg, cfg.rope_local_base, &RopeScaling::None)?
    } else {
        Rope::new(cfg, cfg.rope_theta, &cfg.rope_scaling)?
    };
    let a = format!("{p}.self_attn");
    let qk_norm = QkNorm::After {
        q: RmsNorm::load_offset(ws, &format!("{a}.q_norm"), cfg)?,
        k: RmsNorm::load_offset(ws, &format!("{a}.k_norm"), cfg)?,
    };
    Ok(Layer {
        attn: Attention::load(ws, &a, cfg, qk_norm, rope, join)?,
        mlp: Mlp::load(ws, &format!("{p}.mlp"), cfg, Activation::GeluApprox, join)?,
        input_norm: RmsNorm::load_offset(ws, &format!("{p}.input_layernorm"), cfg)?,
        post_attn_norm: RmsNorm::load_offset(ws, &format!("{p}.post_attention_layernorm"), cfg)?,
        sandwich: Some((
            RmsNorm::load_offset(ws, &format!("{p}.pre_feedforward_layernorm"), cfg)?,
            RmsNorm::load_offset(ws, &format!("{p}.post_feedforward_layernorm"), cfg)?,
        )),
        sliding,
    })
}

pub fn final_norm(ws: &mut Weights, cfg: &ModelConfig) -> Result<RmsNorm, WeightError> {
    RmsNorm::load_offset(ws, "model.norm", cfg)
}

/// mlx-lm's Gemma uses `lm_head` whenever the checkpoint has one, whatever the config says.
pub fn untied(ws: &Weights) -> bool {
    ws.has("lm_head.weight")
}

/// The embeddings' scale, `mx.array(hidden_size**0.5, mx.bfloat16)`: rounded to bf16 whatever
/// the model's dtype. Made once, at load.
pub fn embedding_scale(cfg: &ModelConfig) -> R<Array> {
    Array::from_f32((cfg.hidden_size as f32).sqrt()).as_dtype(Dtype::Bfloat16)
}

/// `h *= scale.astype(h.dtype)` (the cast is no operation when `h` is bf16 already).
pub fn scale_embeddings(h: Array, scale: &Array) -> R<Array> {
    h.multiply(&scale.as_dtype(h.dtype())?)
}
