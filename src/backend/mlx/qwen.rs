//! Qwen 2 and 3 (mlx-lm's `qwen2.py`, `qwen3.py`): Llama's layer, with biases on q/k/v
//! (Qwen 2, from `attention_bias` in the config) and per-head q/k RMS norms applied before the
//! heads are transposed (Qwen 3).

use super::config::{Family, ModelConfig};
use super::joined::Joining;
use super::layers::{Layer, QkNorm, RmsNorm};
use super::llama::plain_layer;
use super::weights::{WeightError, Weights};

pub fn layer(ws: &mut Weights, cfg: &ModelConfig, i: i32, join: Joining) -> Result<Layer, WeightError> {
    plain_layer(ws, cfg, i, join, |ws, a| {
        Ok(if cfg.family == Family::Qwen3 {
            QkNorm::Before {
                q: RmsNorm::load(ws, &format!("{a}.q_norm"), cfg)?,
                k: RmsNorm::load(ws, &format!("{a}.k_norm"), cfg)?,
            }
        } else {
            QkNorm::None
        })
    })
}
