//! The decoder for Gemma 3, Llama and Qwen 2/3 on mlx-rs's fast ops.
//!
//! The arithmetic follows mlx-lm's `gemma3_text.py`, `llama.py` and `qwen3.py` operation by
//! operation (including where a Python scalar is weakly typed, so a bf16 model stays in bf16),
//! because greedy parity with mlx-lm is how this port is checked.

use std::collections::HashMap;
use std::path::Path;

use mlx_rs::error::Exception;
use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops::indexing::take_axis;
use mlx_rs::ops::{self, dequantize, quantized_matmul, reshape, transpose_axes};
use mlx_rs::{Array, Dtype};

use super::config::{Family, ModelConfig, RopeScaling};
pub use super::kv::KvCache;

pub type R<T> = Result<T, Exception>;

/// Why a checkpoint's weights do not fit its config.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{file}: {reason}")]
    Read { file: String, reason: String },
    #[error("no *.safetensors files in {0}")]
    NoFiles(String),
    #[error("tensor `{0}` is missing")]
    Missing(String),
    #[error("{0}")]
    Mlx(#[from] Exception),
}

/// All tensors of a checkpoint by name.
pub struct Weights(HashMap<String, Array>);

impl Weights {
    pub fn load(dir: &Path, prefix: &str) -> Result<Self, WeightError> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| WeightError::Read { file: dir.display().to_string(), reason: e.to_string() })?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(WeightError::NoFiles(dir.display().to_string()));
        }
        let mut all = HashMap::new();
        for f in files {
            let map = Array::load_safetensors(&f)
                .map_err(|e| WeightError::Read { file: f.display().to_string(), reason: e.to_string() })?;
            for (name, a) in map {
                // Multimodal checkpoints: keep the language model, drop the vision tower.
                match name.strip_prefix(prefix) {
                    Some(rest) if !prefix.is_empty() => {
                        all.insert(rest.to_owned(), a);
                    }
                    _ if prefix.is_empty() => {
                        all.insert(name, a);
                    }
                    _ => {}
                }
            }
        }
        Ok(Self(all))
    }

    fn take(&mut self, name: &str) -> Result<Array, WeightError> {
        self.0.remove(name).ok_or_else(|| WeightError::Missing(name.to_owned()))
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// A dense or affine-quantized projection (`nn.Linear` / `nn.QuantizedLinear`).
enum Linear {
    Dense { w: Array, b: Option<Array> },
    Quant { w: Array, scales: Array, biases: Option<Array>, b: Option<Array>, group: i32, bits: i32 },
}

impl Linear {
    fn load(ws: &mut Weights, path: &str, cfg: &ModelConfig, bias: bool) -> Result<Self, WeightError> {
        let w = ws.take(&format!("{path}.weight"))?;
        let b = if bias { Some(ws.take(&format!("{path}.bias"))?) } else { None };
        if ws.has(&format!("{path}.scales")) {
            let (group, bits) = cfg.quantization.as_ref().and_then(|q| q.for_layer(path)).unwrap_or((64, 4));
            let scales = ws.take(&format!("{path}.scales"))?;
            let biases = ws.take(&format!("{path}.biases")).ok();
            return Ok(Self::Quant { w, scales, biases, b, group, bits });
        }
        Ok(Self::Dense { w, b })
    }

    fn forward(&self, x: &Array) -> R<Array> {
        match self {
            Self::Dense { w, b: None } => x.matmul(w.t()),
            Self::Dense { w, b: Some(b) } => ops::addmm(b, x, w.t(), None, None),
            Self::Quant { w, scales, biases, b, group, bits } => {
                let y = quantized_matmul(x, w, scales, biases.as_ref(), true, *group, *bits)?;
                match b {
                    Some(b) => y.add(b),
                    None => Ok(y),
                }
            }
        }
    }
}

/// Token embeddings, also the output projection when the model ties them.
enum Embedding {
    Dense(Array),
    Quant { w: Array, scales: Array, biases: Array, group: i32, bits: i32 },
}

impl Embedding {
    fn load(ws: &mut Weights, cfg: &ModelConfig) -> Result<Self, WeightError> {
        let path = "model.embed_tokens";
        let w = ws.take(&format!("{path}.weight"))?;
        if ws.has(&format!("{path}.scales")) {
            let (group, bits) = cfg.quantization.as_ref().and_then(|q| q.for_layer(path)).unwrap_or((64, 4));
            let scales = ws.take(&format!("{path}.scales"))?;
            let biases = ws.take(&format!("{path}.biases"))?;
            return Ok(Self::Quant { w, scales, biases, group, bits });
        }
        Ok(Self::Dense(w))
    }

    fn forward(&self, ids: &Array) -> R<Array> {
        match self {
            Self::Dense(w) => take_axis(w, ids, 0),
            Self::Quant { w, scales, biases, group, bits } => {
                let rows = take_axis(w, ids, 0)?;
                let s = take_axis(scales, ids, 0)?;
                let b = take_axis(biases, ids, 0)?;
                dequantize(&rows, &s, &b, *group, *bits)
            }
        }
    }

    fn as_linear(&self, x: &Array) -> R<Array> {
        match self {
            Self::Dense(w) => x.matmul(w.t()),
            Self::Quant { w, scales, biases, group, bits } => {
                quantized_matmul(x, w, scales, biases, true, *group, *bits)
            }
        }
    }
}

/// A scalar in `like`'s dtype: what a weakly typed Python float becomes in mlx-lm's code.
fn scalar(v: f32, like: Dtype) -> R<Array> {
    Array::from_f32(v).as_dtype(like)
}

struct RmsNorm {
    weight: Array,
    eps: f32,
}

impl RmsNorm {
    fn load(ws: &mut Weights, path: &str, cfg: &ModelConfig) -> Result<Self, WeightError> {
        let mut weight = ws.take(&format!("{path}.weight"))?;
        if cfg.family == Family::Gemma3 {
            // Gemma's RMSNorm scales by 1 + w (`mx.fast.rms_norm(x, 1.0 + self.weight, eps)`).
            weight = scalar(1.0, weight.dtype())?.add(&weight)?;
        }
        Ok(Self { weight, eps: cfg.rms_norm_eps })
    }

    fn forward(&self, x: &Array) -> R<Array> {
        fast::rms_norm(x, Some(&self.weight), self.eps)
    }
}

struct Rope {
    dims: i32,
    base: Option<f32>,
    scale: f32,
    freqs: Option<Array>,
    traditional: bool,
}

impl Rope {
    fn new(cfg: &ModelConfig, base: f32, scaling: &RopeScaling) -> R<Self> {
        let dims = cfg.head_dim;
        let plain = |scale| Self { dims, base: Some(base), scale, freqs: None, traditional: cfg.rope_traditional };
        Ok(match scaling {
            RopeScaling::None => plain(1.0),
            RopeScaling::Linear { factor } => plain(1.0 / factor),
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                // mlx-lm's Llama3RoPE, computed once on the host.
                let old = *original_max_position_embeddings;
                let (low_wl, high_wl) = (old / low_freq_factor, old / high_freq_factor);
                let freqs: Vec<f32> = (0..dims / 2)
                    .map(|i| {
                        let f = base.powf((2 * i) as f32 / dims as f32);
                        let wl = 2.0 * std::f32::consts::PI * f;
                        let scaled = if wl > low_wl { f * factor } else { f };
                        if wl > high_wl && wl < low_wl {
                            let smooth = (old / wl - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            scaled / ((1.0 - smooth) / factor + smooth)
                        } else {
                            scaled
                        }
                    })
                    .collect();
                Self {
                    dims,
                    base: None,
                    scale: 1.0,
                    freqs: Some(Array::from_slice(&freqs, &[dims / 2])),
                    traditional: cfg.rope_traditional,
                }
            }
        })
    }

    fn forward(&self, x: &Array, offset: i32) -> R<Array> {
        fast::rope(x, self.dims, self.traditional, self.base, self.scale, offset, self.freqs.as_ref())
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    /// q/k norms applied after the heads are transposed (Gemma 3), not before (Qwen 3).
    norm_transposed: bool,
    heads: i32,
    kv_heads: i32,
    scale: f32,
    rope: Rope,
}

impl Attention {
    fn forward(&self, x: &Array, mask: Option<&Mask>, cache: &mut KvCache) -> R<Array> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let split = |t: Array, heads: i32, norm: Option<&RmsNorm>| -> R<Array> {
            let t = reshape(&t, &[b, l, heads, -1])?;
            // mlx-lm's order: Gemma 3 normalises the transposed heads, Qwen 3 before the
            // transpose. Same arithmetic, but not always the same kernels on a GPU.
            match norm {
                Some(n) if self.norm_transposed => n.forward(&transpose_axes(&t, &[0, 2, 1, 3])?),
                Some(n) => transpose_axes(&n.forward(&t)?, &[0, 2, 1, 3]),
                None => transpose_axes(&t, &[0, 2, 1, 3]),
            }
        };
        let q = split(self.q.forward(x)?, self.heads, self.q_norm.as_ref())?;
        let k = split(self.k.forward(x)?, self.kv_heads, self.k_norm.as_ref())?;
        let v = split(self.v.forward(x)?, self.kv_heads, None)?;
        let q = self.rope.forward(&q, cache.offset)?;
        let k = self.rope.forward(&k, cache.offset)?;
        let (k, v) = cache.update(k, v)?;
        let out = match mask {
            None => fast::scaled_dot_product_attention(&q, &k, &v, self.scale, None, None)?,
            Some(Mask::Causal) => {
                fast::scaled_dot_product_attention(&q, &k, &v, self.scale, ScaledDotProductAttentionMask::Causal, None)?
            }
            Some(Mask::Array(m)) => fast::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                self.scale,
                ScaledDotProductAttentionMask::Array(m),
                None,
            )?,
        };
        let out = reshape(&transpose_axes(&out, &[0, 2, 1, 3])?, &[b, l, -1])?;
        self.o.forward(&out)
    }
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    gelu: bool,
}

impl Mlp {
    fn forward(&self, x: &Array) -> R<Array> {
        let g = self.gate.forward(x)?;
        let act = if self.gelu { gelu_approx(&g)? } else { g.multiply(&ops::sigmoid(&g)?)? };
        self.down.forward(&act.multiply(&self.up.forward(x)?)?)
    }
}

/// `nn.gelu_approx` with its constants in `x`'s dtype, as Python's weak scalars are.
fn gelu_approx(x: &Array) -> R<Array> {
    let d = x.dtype();
    let inner = x.add(&scalar(0.044_715, d)?.multiply(&x.power(&scalar(3.0, d)?)?)?)?;
    let t = ops::tanh(&scalar((2.0 / std::f64::consts::PI).sqrt() as f32, d)?.multiply(&inner)?)?;
    scalar(0.5, d)?.multiply(x)?.multiply(&scalar(1.0, d)?.add(&t)?)
}

struct Layer {
    attn: Attention,
    mlp: Mlp,
    input_norm: RmsNorm,
    post_attn_norm: RmsNorm,
    /// Gemma's sandwich norms around the MLP.
    pre_ff_norm: Option<RmsNorm>,
    post_ff_norm: Option<RmsNorm>,
    sliding: bool,
}

impl Layer {
    fn forward(&self, x: &Array, mask: Option<&Mask>, cache: &mut KvCache) -> R<Array> {
        let r = self.attn.forward(&self.input_norm.forward(x)?, mask, cache)?;
        match (&self.pre_ff_norm, &self.post_ff_norm) {
            (Some(pre), Some(post)) => {
                let h = x.add(&self.post_attn_norm.forward(&r)?)?;
                let r = self.mlp.forward(&pre.forward(&h)?)?;
                h.add(&post.forward(&r)?)
            }
            _ => {
                let h = x.add(&r)?;
                let r = self.mlp.forward(&self.post_attn_norm.forward(&h)?)?;
                h.add(&r)
            }
        }
    }
}

enum Mask {
    Causal,
    Array(Array),
}

pub struct Model {
    pub cfg: ModelConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Option<Linear>,
}

impl Model {
    /// Builds the model from its weights (taken out of `ws`; what is left is unused).
    pub fn new(cfg: ModelConfig, ws: &mut Weights) -> Result<Self, WeightError> {
        let gemma = cfg.family == Family::Gemma3;
        let qk_norm = matches!(cfg.family, Family::Gemma3 | Family::Qwen3);
        let global_scaling = cfg.rope_scaling.clone();
        let mut layers = Vec::with_capacity(cfg.layers as usize);
        for i in 0..cfg.layers {
            let p = format!("model.layers.{i}");
            let sliding = cfg.is_sliding(i);
            let (base, scaling) = if sliding {
                (cfg.rope_local_base, RopeScaling::None)
            } else {
                (cfg.rope_theta, global_scaling.clone())
            };
            let a = format!("{p}.self_attn");
            let attn = Attention {
                q: Linear::load(ws, &format!("{a}.q_proj"), &cfg, cfg.attention_bias)?,
                k: Linear::load(ws, &format!("{a}.k_proj"), &cfg, cfg.attention_bias)?,
                v: Linear::load(ws, &format!("{a}.v_proj"), &cfg, cfg.attention_bias)?,
                o: Linear::load(ws, &format!("{a}.o_proj"), &cfg, false)?,
                q_norm: if qk_norm { Some(RmsNorm::load(ws, &format!("{a}.q_norm"), &cfg)?) } else { None },
                k_norm: if qk_norm { Some(RmsNorm::load(ws, &format!("{a}.k_norm"), &cfg)?) } else { None },
                norm_transposed: gemma,
                heads: cfg.heads,
                kv_heads: cfg.kv_heads,
                scale: cfg.attention_scale,
                rope: Rope::new(&cfg, base, &scaling)?,
            };
            let m = format!("{p}.mlp");
            let mlp = Mlp {
                gate: Linear::load(ws, &format!("{m}.gate_proj"), &cfg, false)?,
                up: Linear::load(ws, &format!("{m}.up_proj"), &cfg, false)?,
                down: Linear::load(ws, &format!("{m}.down_proj"), &cfg, false)?,
                gelu: gemma,
            };
            layers.push(Layer {
                attn,
                mlp,
                input_norm: RmsNorm::load(ws, &format!("{p}.input_layernorm"), &cfg)?,
                post_attn_norm: RmsNorm::load(ws, &format!("{p}.post_attention_layernorm"), &cfg)?,
                pre_ff_norm: if gemma {
                    Some(RmsNorm::load(ws, &format!("{p}.pre_feedforward_layernorm"), &cfg)?)
                } else {
                    None
                },
                post_ff_norm: if gemma {
                    Some(RmsNorm::load(ws, &format!("{p}.post_feedforward_layernorm"), &cfg)?)
                } else {
                    None
                },
                sliding,
            });
        }
        let embed = Embedding::load(ws, &cfg)?;
        let norm = RmsNorm::load(ws, "model.norm", &cfg)?;
        // mlx-lm: Gemma uses `lm_head` when the checkpoint has one; the others follow
        // `tie_word_embeddings` (and need `lm_head` when it is false).
        let untied = if gemma { ws.has("lm_head.weight") } else { !cfg.tie_word_embeddings };
        let lm_head = if untied { Some(Linear::load(ws, "lm_head", &cfg, false)?) } else { None };
        Ok(Self { cfg, embed, layers, norm, lm_head })
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
        fn lin<'a>(l: &'a Linear, out: &mut Vec<&'a Array>) {
            match l {
                Linear::Dense { w, b } => {
                    out.push(w);
                    out.extend(b);
                }
                Linear::Quant { w, scales, biases, b, .. } => {
                    out.extend([w, scales]);
                    out.extend(biases);
                    out.extend(b);
                }
            }
        }
        for l in &self.layers {
            for p in [&l.attn.q, &l.attn.k, &l.attn.v, &l.attn.o, &l.mlp.gate, &l.mlp.up, &l.mlp.down] {
                lin(p, &mut out);
            }
            for n in [Some(&l.input_norm), Some(&l.post_attn_norm), l.pre_ff_norm.as_ref(), l.post_ff_norm.as_ref()]
                .into_iter()
                .flatten()
                .chain(l.attn.q_norm.as_ref())
                .chain(l.attn.k_norm.as_ref())
            {
                out.push(&n.weight);
            }
        }
        match &self.embed {
            Embedding::Dense(w) => out.push(w),
            Embedding::Quant { w, scales, biases, .. } => out.extend([w, scales, biases]),
        }
        out.push(&self.norm.weight);
        if let Some(h) = &self.lm_head {
            lin(h, &mut out);
        }
        out
    }

    /// Runs `tokens` (`[batch, len]`, int32) through the layers, appending to `caches`; returns
    /// the final hidden states (`[batch, len, hidden]`).
    pub fn hidden(&self, tokens: &Array, caches: &mut [KvCache]) -> R<Array> {
        let mut h = self.embed.forward(tokens)?;
        if self.cfg.family == Family::Gemma3 {
            // `h *= mx.array(hidden_size**0.5, mx.bfloat16).astype(h.dtype)`
            let s = Array::from_f32((self.cfg.hidden_size as f32).sqrt()).as_dtype(Dtype::Bfloat16)?;
            h = h.multiply(&s.as_dtype(h.dtype())?)?;
        }
        let n = tokens.shape()[1];
        let global = self.mask(n, caches.iter().zip(&self.layers).find(|(_, l)| !l.sliding).map(|(c, _)| c), None)?;
        let window = self.cfg.sliding_window.map(|(w, _)| w);
        let local = self.mask(n, caches.iter().zip(&self.layers).find(|(_, l)| l.sliding).map(|(c, _)| c), window)?;
        for (layer, cache) in self.layers.iter().zip(caches.iter_mut()) {
            let mask = if layer.sliding { local.as_ref() } else { global.as_ref() };
            h = layer.forward(&h, mask, cache)?;
        }
        self.norm.forward(&h)
    }

    /// Logits of the last position of each row (`[batch, vocab]`).
    pub fn logits_last(&self, hidden: &Array) -> R<Array> {
        // As mlx-lm: project every position given, then take the last (`logits[:, -1, :]`).
        // Generation only ever passes one position here, so nothing is wasted.
        let l = hidden.shape()[1];
        take_axis(&self.project(hidden)?, Array::from_int(l - 1), 1)
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
