//! The decoder: embeddings, the family's layers ([`super::gemma3`], [`super::llama`],
//! [`super::qwen`], built from the blocks in [`super::layers`]), the final norm and the output
//! projection; the attention masks and the KV caches' rows.

use mlx_rs::Array;
use mlx_rs::ops::indexing::TryIndexOp;

use super::config::{Family, ModelConfig};
use super::joined::Joining;
pub use super::kv::KvCache;
pub use super::layers::R;
use super::layers::{Embedding, Layer, Linear, Mask, RmsNorm};
pub use super::weights::{WeightError, Weights};
use super::{gemma3, llama, qwen};

pub struct Model {
    pub cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
    /// Gemma's embedding scale ([`gemma3::embedding_scale`]).
    embed_scale: Option<Array>,
}

impl Model {
    /// Builds the model from its weights (taken out of `ws`; what is left is unused), with the
    /// projections `join` names joined ([`super::joined`]).
    pub fn new(cfg: ModelConfig, ws: &mut Weights, join: Joining) -> Result<Self, WeightError> {
        let layer = match cfg.family {
            Family::Gemma3 => gemma3::layer,
            Family::Llama => llama::layer,
            Family::Qwen2 | Family::Qwen3 => qwen::layer,
        };
        let layers = (0..cfg.layers).map(|i| layer(ws, &cfg, i, join)).collect::<Result<Vec<_>, _>>()?;
        let embed = Embedding::load(ws, &cfg)?;
        let (norm, untied) = match cfg.family {
            Family::Gemma3 => (gemma3::final_norm(ws, &cfg)?, gemma3::untied(ws)),
            _ => (llama::final_norm(ws, &cfg)?, llama::untied(&cfg)),
        };
        let lm_head = if untied { Some(Linear::load(ws, "lm_head", &cfg, false)?) } else { None };
        let embed_scale = if cfg.family == Family::Gemma3 { Some(gemma3::embedding_scale(&cfg)?) } else { None };
        Ok(Self { cfg, embed, layers, norm, lm_head, embed_scale })
    }

    /// Bytes per element of the activations and the KV cache (the norms' dtype: bf16 for
    /// bf16 and mlx-lm's quantized checkpoints alike).
    pub fn activation_bytes(&self) -> u64 {
        self.norm.weight.item_size() as u64
    }

    pub fn new_cache(&self) -> Vec<KvCache> {
        self.layers
            .iter()
            .map(|l| KvCache::new(if l.sliding { self.cfg.sliding_window.map(|(w, _)| w) } else { None }))
            .collect()
    }

    /// Every weight array, for evaluating them once after loading.
    pub fn weights(&self) -> Vec<&Array> {
        let mut out = Vec::new();
        for l in &self.layers {
            l.arrays(&mut out);
        }
        self.embed.arrays(&mut out);
        out.push(&self.norm.weight);
        if let Some(h) = &self.lm_head {
            h.arrays(&mut out);
        }
        out
    }

    /// Runs `tokens` (`[batch, len]`, int32) through the layers, appending to `caches`; returns
    /// the final hidden states (`[batch, len, hidden]`).
    pub fn hidden(&self, tokens: &Array, caches: &mut [KvCache]) -> R<Array> {
        let mut h = self.embed.forward(tokens)?;
        if let Some(scale) = &self.embed_scale {
            h = gemma3::scale_embeddings(h, scale)?;
        }
        let n = tokens.shape()[1];
        let global = self.mask(n, caches.iter().zip(&self.layers).find(|(_, l)| !l.sliding).map(|(c, _)| c), None)?;
        let window = self.cfg.sliding_window.map(|(w, _)| w);
        let local = self.mask(n, caches.iter().zip(&self.layers).find(|(_, l)| l.sliding).map(|(c, _)| c), window)?;
        // Every layer's cache has seen the same positions.
        let offset = Array::from_int(caches.first().map_or(0, |c| c.offset));
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            let mask = if layer.sliding { local.as_ref() } else { global.as_ref() };
            h = layer.forward(&h, mask, cache, &offset)?;
        }
        self.norm.forward(&h)
    }

    /// Logits of the last position of each row (`[batch, vocab]`).
    pub fn logits_last(&self, hidden: &Array) -> R<Array> {
        // As mlx-lm: project every position given, then take the last (`logits[:, -1, :]`).
        // Generation only ever passes one position here, so nothing is wasted.
        // A slice, not an index array: nothing made on the host each step.
        let l = hidden.shape()[1];
        self.project(hidden)?.try_index((.., l - 1, ..))
    }

    fn project(&self, h: &Array) -> R<Array> {
        match &self.lm_head {
            Some(head) => head.forward(h),
            None => self.embed.as_linear(h),
        }
    }

    /// mlx-lm's `create_attention_mask` for a chunk of `n` queries after what `cache` holds.
    fn mask(&self, n: i32, cache: Option<&KvCache>, window: Option<i32>) -> R<Option<Mask>> {
        if n == 1 {
            // One query sees every key a cache returns (sliding caches already hold only the window).
            return Ok(None);
        }
        let (offset, past) = cache.map_or((0, 0), |c| (c.offset, c.len()));
        match window {
            Some(w) if past + n > w => {
                // Query i sits at offset + i; key j at offset - past + j.
                let data: Vec<bool> = (0..n)
                    .flat_map(|i| {
                        (0..past + n).map(move |j| {
                            let (q, k) = (offset + i, offset - past + j);
                            k <= q && q < k + w
                        })
                    })
                    .collect();
                Ok(Some(Mask::Array(Array::from_slice(&data, &[n, past + n]))))
            }
            _ => Ok(Some(Mask::Causal)),
        }
    }

    pub fn repeat_rows(caches: &mut [KvCache], n: i32) -> R<()> {
        caches.iter_mut().try_for_each(|c| c.repeat_rows(n))
    }

    pub fn select_rows(caches: &mut [KvCache], rows: &[i32]) -> R<()> {
        let idx = Array::from_slice(rows, &[rows.len() as i32]);
        caches.iter_mut().try_for_each(|c| c.select_rows(&idx))
    }
}
