//! The building blocks every architecture shares: projections (dense or quantized), embeddings,
//! RMS norm, RoPE, attention, the gated MLP and one pre-norm decoder layer. What differs between
//! families is how they are put together, in [`super::gemma3`], [`super::llama`] and
//! [`super::qwen`].
//!
//! The arithmetic follows mlx-lm operation by operation (including where a Python scalar is
//! weakly typed, so a bf16 model stays in bf16), because greedy parity with mlx-lm is how this
//! port is checked.

use std::cell::RefCell;

use mlx_rs::error::Exception;
use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops::indexing::take_axis;
use mlx_rs::ops::{self, dequantize, reshape, transpose_axes};
use mlx_rs::transforms::compile::compile;
use mlx_rs::{Array, Dtype};

use super::config::{ModelConfig, RopeScaling};
use super::joined::{Joining, Projections};
use super::kv::KvCache;
use super::shaping::qmatmul;
use super::weights::{WeightError, Weights};

pub type R<T> = Result<T, Exception>;

/// A scalar in `like`'s dtype: what a weakly typed Python float becomes in mlx-lm's code.
pub fn scalar(v: f32, like: Dtype) -> R<Array> {
    Array::from_f32(v).as_dtype(like)
}

/// A dense or affine-quantized projection (`nn.Linear` / `nn.QuantizedLinear`).
pub enum Linear {
    Dense { w: Array, b: Option<Array> },
    Quant { w: Array, scales: Array, biases: Option<Array>, b: Option<Array>, group: i32, bits: i32 },
}

impl Linear {
    pub fn load(ws: &mut Weights, path: &str, cfg: &ModelConfig, bias: bool) -> Result<Self, WeightError> {
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

    pub fn forward(&self, x: &Array) -> R<Array> {
        match self {
            Self::Dense { w, b: None } => x.matmul(w.t()),
            Self::Dense { w, b: Some(b) } => ops::addmm(b, x, w.t(), None, None),
            Self::Quant { w, scales, biases, b, group, bits } => {
                let y = qmatmul(x, w, scales, biases.as_ref(), *group, *bits)?;
                match b {
                    Some(b) => y.add(b),
                    None => Ok(y),
                }
            }
        }
    }

    pub fn arrays<'a>(&'a self, out: &mut Vec<&'a Array>) {
        match self {
            Self::Dense { w, b } => {
                out.push(w);
                out.extend(b);
            }
            Self::Quant { w, scales, biases, b, .. } => {
                out.extend([w, scales]);
                out.extend(biases);
                out.extend(b);
            }
        }
    }
}

/// Token embeddings, also the output projection when the model ties them.
pub enum Embedding {
    Dense(Array),
    Quant { w: Array, scales: Array, biases: Array, group: i32, bits: i32 },
}

impl Embedding {
    pub fn load(ws: &mut Weights, cfg: &ModelConfig) -> Result<Self, WeightError> {
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

    pub fn forward(&self, ids: &Array) -> R<Array> {
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

    pub fn as_linear(&self, x: &Array) -> R<Array> {
        match self {
            Self::Dense(w) => x.matmul(w.t()),
            Self::Quant { w, scales, biases, group, bits } => qmatmul(x, w, scales, Some(biases), *group, *bits),
        }
    }

    pub fn arrays<'a>(&'a self, out: &mut Vec<&'a Array>) {
        match self {
            Self::Dense(w) => out.push(w),
            Self::Quant { w, scales, biases, .. } => out.extend([w, scales, biases]),
        }
    }
}

pub struct RmsNorm {
    pub weight: Array,
    eps: f32,
}

impl RmsNorm {
    pub fn load(ws: &mut Weights, path: &str, cfg: &ModelConfig) -> Result<Self, WeightError> {
        Ok(Self { weight: ws.take(&format!("{path}.weight"))?, eps: cfg.rms_norm_eps })
    }

    /// Gemma's RMSNorm, which scales by 1 + w (`mx.fast.rms_norm(x, 1.0 + self.weight, eps)`):
    /// the sum is taken once here rather than every step.
    pub fn load_offset(ws: &mut Weights, path: &str, cfg: &ModelConfig) -> Result<Self, WeightError> {
        let w = ws.take(&format!("{path}.weight"))?;
        Ok(Self { weight: scalar(1.0, w.dtype())?.add(&w)?, eps: cfg.rms_norm_eps })
    }

    pub fn forward(&self, x: &Array) -> R<Array> {
        fast::rms_norm(x, Some(&self.weight), self.eps)
    }
}

pub struct Rope {
    dims: i32,
    base: Option<f32>,
    scale: f32,
    freqs: Option<Array>,
    traditional: bool,
}

impl Rope {
    pub fn new(cfg: &ModelConfig, base: f32, scaling: &RopeScaling) -> R<Self> {
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

    /// `offset` is the position of `x`'s first token as an int32 scalar array, made once per
    /// step for every layer (an integer offset would be a new host array in each layer).
    pub fn forward(&self, x: &Array, offset: &Array) -> R<Array> {
        fast::rope_dynamic(x, self.dims, self.traditional, self.base, self.scale, offset, self.freqs.as_ref())
    }
}

/// Where a family normalises each head of q and k, if it does.
pub enum QkNorm {
    None,
    /// Before the heads are transposed to `[b, heads, l, d]` (Qwen 3).
    Before {
        q: RmsNorm,
        k: RmsNorm,
    },
    /// After the transpose (Gemma 3). The same arithmetic as `Before`, but a different layout
    /// into `rms_norm`/`rope`, which on a GPU is not always the same kernel.
    After {
        q: RmsNorm,
        k: RmsNorm,
    },
}

pub struct Attention {
    /// q, k and v, joined or not ([`joined`]).
    pub qkv: Projections,
    pub o: Linear,
    pub qk_norm: QkNorm,
    pub heads: i32,
    pub kv_heads: i32,
    pub scale: f32,
    pub rope: Rope,
}

pub enum Mask {
    Causal,
    Array(Array),
}

impl Attention {
    /// The four projections of `model.layers.{i}.self_attn`, with or without biases on q/k/v.
    pub fn load(
        ws: &mut Weights,
        path: &str,
        cfg: &ModelConfig,
        qk_norm: QkNorm,
        rope: Rope,
        join: Joining,
    ) -> Result<Self, WeightError> {
        let qkv = ["q_proj", "k_proj", "v_proj"]
            .iter()
            .map(|p| Linear::load(ws, &format!("{path}.{p}"), cfg, cfg.attention_bias))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            qkv: Projections::new(qkv, join.qkv)?,
            o: Linear::load(ws, &format!("{path}.o_proj"), cfg, false)?,
            qk_norm,
            heads: cfg.heads,
            kv_heads: cfg.kv_heads,
            scale: cfg.attention_scale,
            rope,
        })
    }

    /// `offset`: where `x` starts, as [`Rope::forward`] takes it (`cache.offset`).
    pub fn forward(&self, x: &Array, mask: Option<&Mask>, cache: &mut KvCache, offset: &Array) -> R<Array> {
        let (b, l) = (x.shape()[0], x.shape()[1]);
        let heads = |t: Array, n: i32, norm: Option<&RmsNorm>, after: bool| -> R<Array> {
            let t = reshape(&t, &[b, l, n, -1])?;
            match norm {
                Some(norm) if after => norm.forward(&transpose_axes(&t, &[0, 2, 1, 3])?),
                Some(norm) => transpose_axes(&norm.forward(&t)?, &[0, 2, 1, 3]),
                None => transpose_axes(&t, &[0, 2, 1, 3]),
            }
        };
        let (qn, kn, after) = match &self.qk_norm {
            QkNorm::None => (None, None, false),
            QkNorm::Before { q, k } => (Some(q), Some(k), false),
            QkNorm::After { q, k } => (Some(q), Some(k), true),
        };
        let [q, k, v]: [Array; 3] =
            self.qkv.forward(x)?.try_into().map_err(|_| Exception::custom("q/k/v: three projections"))?;
        let q = heads(q, self.heads, qn, after)?;
        let k = heads(k, self.kv_heads, kn, after)?;
        let v = heads(v, self.kv_heads, None, false)?;
        let q = self.rope.forward(&q, offset)?;
        let k = self.rope.forward(&k, offset)?;
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

    pub fn arrays<'a>(&'a self, out: &mut Vec<&'a Array>) {
        self.qkv.arrays(out);
        self.o.arrays(out);
        if let QkNorm::Before { q, k } | QkNorm::After { q, k } = &self.qk_norm {
            out.extend([&q.weight, &k.weight]);
        }
    }
}

/// The gate's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `nn.silu` (Llama, Qwen).
    Silu,
    /// `nn.gelu_approx` (Gemma).
    GeluApprox,
}

/// `down(act(gate(x)) * up(x))`.
pub struct Mlp {
    /// gate and up, joined or not ([`joined`]).
    gate_up: Projections,
    down: Linear,
    act: Activation,
}

impl Mlp {
    pub fn load(
        ws: &mut Weights,
        path: &str,
        cfg: &ModelConfig,
        act: Activation,
        join: Joining,
    ) -> Result<Self, WeightError> {
        let gate_up = vec![
            Linear::load(ws, &format!("{path}.gate_proj"), cfg, false)?,
            Linear::load(ws, &format!("{path}.up_proj"), cfg, false)?,
        ];
        Ok(Self {
            gate_up: Projections::new(gate_up, join.gate_up)?,
            down: Linear::load(ws, &format!("{path}.down_proj"), cfg, false)?,
            act,
        })
    }

    pub fn forward(&self, x: &Array) -> R<Array> {
        let [g, up]: [Array; 2] =
            self.gate_up.forward(x)?.try_into().map_err(|_| Exception::custom("gate/up: two projections"))?;
        let act = match self.act {
            Activation::Silu => compiled(&SILU, silu, &g)?,
            Activation::GeluApprox => compiled(&GELU_APPROX, gelu_approx, &g)?,
        };
        self.down.forward(&act.multiply(&up)?)
    }

    pub fn arrays<'a>(&'a self, out: &mut Vec<&'a Array>) {
        self.gate_up.arrays(out);
        self.down.arrays(out);
    }
}

/// `x * sigmoid(x)`, as `nn.silu`.
fn silu(x: &Array) -> R<Array> {
    x.multiply(&ops::sigmoid(x)?)
}

/// `nn.gelu_approx` with its constants in `x`'s dtype, as Python's weak scalars are.
fn gelu_approx(x: &Array) -> R<Array> {
    let d = x.dtype();
    let inner = x.add(&scalar(0.044_715, d)?.multiply(&x.power(&scalar(3.0, d)?)?)?)?;
    let t = ops::tanh(&scalar((2.0 / std::f64::consts::PI).sqrt() as f32, d)?.multiply(&inner)?)?;
    scalar(0.5, d)?.multiply(x)?.multiply(&scalar(1.0, d)?.add(&t)?)
}

type Compiled = Box<dyn for<'a> FnMut(&'a Array) -> R<Array>>;

thread_local! {
    // MLX fuses a compiled function's element-wise graph into one kernel. mlx-lm's activations
    // are `mx.compile(shapeless=True)` functions: compiled here too, the GELU is one kernel per
    // layer instead of about a dozen (each a launch on a GPU), and the fused arithmetic is the
    // one mlx-lm runs. Held per thread (the model lives on one) for the thread's life:
    // mlx-rs's own `nn::gelu_approximate` compiles anew on every call and uses f32 constants.
    static SILU: RefCell<Option<Compiled>> = const { RefCell::new(None) };
    static GELU_APPROX: RefCell<Option<Compiled>> = const { RefCell::new(None) };
}

fn compiled(
    slot: &'static std::thread::LocalKey<RefCell<Option<Compiled>>>,
    f: fn(&Array) -> R<Array>,
    x: &Array,
) -> R<Array> {
    slot.with(|cell| {
        let mut cell = cell.borrow_mut();
        let run = cell.get_or_insert_with(|| Box::new(compile(move |x: &Array| f(x), true)));
        run(x)
    })
}

/// One pre-norm decoder layer: attention then the MLP, each added to the residual stream.
/// With `sandwich` norms (Gemma) the sublayers' outputs are normalised before they are added
/// and the MLP has its own input norm; otherwise `post_attn_norm` is the MLP's input norm.
pub struct Layer {
    pub attn: Attention,
    pub mlp: Mlp,
    pub input_norm: RmsNorm,
    pub post_attn_norm: RmsNorm,
    pub sandwich: Option<(RmsNorm, RmsNorm)>,
    pub sliding: bool,
}

impl Layer {
    pub fn forward(&self, x: &Array, mask: Option<&Mask>, cache: &mut KvCache, offset: &Array) -> R<Array> {
        let r = self.attn.forward(&self.input_norm.forward(x)?, mask, cache, offset)?;
        match &self.sandwich {
            Some((pre, post)) => {
                let h = x.add(&self.post_attn_norm.forward(&r)?)?;
                let r = self.mlp.forward(&pre.forward(&h)?)?;
                h.add(&post.forward(&r)?)
            }
            None => {
                let h = x.add(&r)?;
                let r = self.mlp.forward(&self.post_attn_norm.forward(&h)?)?;
                h.add(&r)
            }
        }
    }

    pub fn arrays<'a>(&'a self, out: &mut Vec<&'a Array>) {
        self.attn.arrays(out);
        self.mlp.arrays(out);
        out.extend([&self.input_norm.weight, &self.post_attn_norm.weight]);
        if let Some((pre, post)) = &self.sandwich {
            out.extend([&pre.weight, &post.weight]);
        }
    }
}
