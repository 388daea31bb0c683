//! `config.json` of an MLX-format (mlx-community / Hugging Face) checkpoint, for the families
//! lem-tui runs: Gemma 3 (`gemma3_text`, and the text part of multimodal `gemma3`), Llama
//! (Llama 3, SmolLM2) and Qwen 2 / 3.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Gemma3,
    Llama,
    Qwen2,
    Qwen3,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gemma3 => "gemma3",
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }
}

/// RoPE frequency scaling (`rope_scaling`), the kinds these families ship with.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (Gemma 3 4B+ global layers).
    Linear {
        factor: f32,
    },
    /// Llama 3.1+ frequency smoothing.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: f32,
    },
}

/// Affine quantization as `mlx_lm.convert` writes it; layers may override it by path.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Quantization {
    pub group_size: i32,
    pub bits: i32,
    /// `"model.layers.0.mlp.down_proj" → Some((group, bits))`, or `None` for a layer left dense.
    pub overrides: BTreeMap<String, Option<(i32, i32)>>,
}

impl Quantization {
    pub fn for_layer(&self, path: &str) -> Option<(i32, i32)> {
        match self.overrides.get(path) {
            Some(o) => *o,
            None => Some((self.group_size, self.bits)),
        }
    }
}

/// Everything the model code needs, resolved from the raw file with each family's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub family: Family,
    pub model_type: String,
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub layers: i32,
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    pub rms_norm_eps: f32,
    pub vocab_size: i32,
    pub rope_theta: f32,
    /// Gemma 3 sliding-window layers' RoPE base.
    pub rope_local_base: f32,
    pub rope_scaling: RopeScaling,
    pub rope_traditional: bool,
    pub attention_scale: f32,
    /// Gemma 3: every `pattern`-th layer is global, the others attend within `window`.
    pub sliding_window: Option<(i32, i32)>,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub max_position_embeddings: i32,
    pub quantization: Option<Quantization>,
    /// Weight-name prefix of the text model inside a multimodal checkpoint.
    pub weight_prefix: &'static str,
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    pub fn is_sliding(&self, layer: i32) -> bool {
        matches!(self.sliding_window, Some((_, pattern)) if pattern > 1 && (layer + 1) % pattern != 0)
    }
}

#[derive(Debug, Deserialize)]
struct Raw {
    model_type: String,
    hidden_size: Option<i32>,
    intermediate_size: Option<i32>,
    num_hidden_layers: Option<i32>,
    num_attention_heads: Option<i32>,
    num_key_value_heads: Option<i32>,
    head_dim: Option<i32>,
    rms_norm_eps: Option<f32>,
    vocab_size: Option<i32>,
    rope_theta: Option<f32>,
    rope_local_base_freq: Option<f32>,
    rope_scaling: Option<Value>,
    rope_traditional: Option<bool>,
    query_pre_attn_scalar: Option<f32>,
    sliding_window: Option<i32>,
    sliding_window_pattern: Option<i32>,
    layer_types: Option<Vec<String>>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    max_position_embeddings: Option<i32>,
    quantization: Option<Value>,
    eos_token_id: Option<Value>,
    text_config: Option<Value>,
}

/// Why a `config.json` cannot be used; the caller adds the file name.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported architecture `{0}` (lem-tui's MLX backend runs gemma3, gemma3_text, llama, qwen2, qwen3)")]
    Unsupported(String),
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

pub fn parse(text: &str) -> Result<ModelConfig, ConfigError> {
    let mut raw: Raw = serde_json::from_str(text)?;
    let mut weight_prefix = "";
    // Multimodal Gemma 3 (4B and up): the language model's settings sit in `text_config` and
    // its weights under `language_model.`; the vision tower is not loaded.
    if raw.model_type == "gemma3" {
        if let Some(tc) = raw.text_config.take() {
            let mut merged: serde_json::Map<String, Value> = serde_json::from_str(text)?;
            if let Value::Object(t) = tc {
                merged.extend(t);
            }
            merged.insert("model_type".into(), Value::String("gemma3_text".into()));
            merged.remove("text_config");
            let quant = raw.quantization.take();
            raw = serde_json::from_value(Value::Object(merged))?;
            raw.quantization = raw.quantization.or(quant);
            weight_prefix = "language_model.";
        }
    }
    let family = match raw.model_type.as_str() {
        "gemma3" | "gemma3_text" => Family::Gemma3,
        "llama" => Family::Llama,
        "qwen2" => Family::Qwen2,
        "qwen3" => Family::Qwen3,
        other => return Err(ConfigError::Unsupported(other.to_owned())),
    };
    let gemma = family == Family::Gemma3;
    // Gemma 3 text defaults are mlx-lm's `gemma3_text.ModelArgs` (the 1B shape).
    let hidden_size = raw.hidden_size.or(gemma.then_some(1152)).ok_or(ConfigError::Missing("hidden_size"))?;
    let heads = raw.num_attention_heads.or(gemma.then_some(4)).ok_or(ConfigError::Missing("num_attention_heads"))?;
    let head_dim = raw.head_dim.or(gemma.then_some(256)).unwrap_or(hidden_size / heads.max(1));
    let rope_scaling = rope_scaling(raw.rope_scaling.as_ref())?;
    let sliding_window = if gemma {
        let pattern = match (&raw.layer_types, raw.sliding_window_pattern) {
            (_, Some(p)) => p,
            (Some(types), None) => types.iter().position(|t| t == "full_attention").map_or(6, |i| i as i32 + 1),
            (None, None) => 6,
        };
        Some((raw.sliding_window.unwrap_or(512), pattern))
    } else {
        None
    };
    let quantization = raw.quantization.as_ref().map(quantization).transpose()?;
    Ok(ModelConfig {
        family,
        model_type: raw.model_type.clone(),
        hidden_size,
        intermediate_size: raw
            .intermediate_size
            .or(gemma.then_some(6912))
            .ok_or(ConfigError::Missing("intermediate_size"))?,
        layers: raw.num_hidden_layers.or(gemma.then_some(26)).ok_or(ConfigError::Missing("num_hidden_layers"))?,
        heads,
        kv_heads: raw.num_key_value_heads.unwrap_or(if gemma { 1 } else { heads }),
        head_dim,
        rms_norm_eps: raw.rms_norm_eps.unwrap_or(if gemma { 1e-6 } else { 1e-5 }),
        vocab_size: raw.vocab_size.or(gemma.then_some(262_144)).ok_or(ConfigError::Missing("vocab_size"))?,
        rope_theta: raw.rope_theta.unwrap_or(if gemma { 1_000_000.0 } else { 10_000.0 }),
        rope_local_base: raw.rope_local_base_freq.unwrap_or(10_000.0),
        rope_scaling,
        rope_traditional: raw.rope_traditional.unwrap_or(false),
        attention_scale: if gemma {
            raw.query_pre_attn_scalar.unwrap_or(256.0).powf(-0.5)
        } else {
            (head_dim as f32).powf(-0.5)
        },
        sliding_window,
        // mlx-lm's default for every family here (Gemma ties whenever lm_head is absent).
        tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(true),
        attention_bias: raw.attention_bias.unwrap_or(family == Family::Qwen2),
        max_position_embeddings: raw.max_position_embeddings.unwrap_or(if gemma { 32_768 } else { 4096 }),
        quantization,
        weight_prefix,
        eos_token_ids: match &raw.eos_token_id {
            Some(Value::Number(n)) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|v| v as u32).collect(),
            _ => Vec::new(),
        },
    })
}

fn rope_scaling(v: Option<&Value>) -> Result<RopeScaling, ConfigError> {
    let Some(Value::Object(m)) = v else { return Ok(RopeScaling::None) };
    let kind = m.get("rope_type").or_else(|| m.get("type")).and_then(Value::as_str).unwrap_or("default");
    let num = |k: &str, d: f32| m.get(k).and_then(Value::as_f64).map_or(d, |x| x as f32);
    match kind {
        "default" => Ok(RopeScaling::None),
        "linear" => Ok(RopeScaling::Linear { factor: num("factor", 1.0) }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor", 1.0),
            low_freq_factor: num("low_freq_factor", 1.0),
            high_freq_factor: num("high_freq_factor", 4.0),
            original_max_position_embeddings: num("original_max_position_embeddings", 8192.0),
        }),
        other => {
            Err(ConfigError::Invalid { field: "rope_scaling", reason: format!("rope type `{other}` is not supported") })
        }
    }
}

fn quantization(v: &Value) -> Result<Quantization, ConfigError> {
    let Value::Object(m) = v else {
        return Err(ConfigError::Invalid { field: "quantization", reason: "expected an object".into() });
    };
    let int =
        |o: &serde_json::Map<String, Value>, k: &str, d: i64| o.get(k).and_then(Value::as_i64).unwrap_or(d) as i32;
    if let Some(mode) = m.get("mode").and_then(Value::as_str) {
        if mode != "affine" {
            return Err(ConfigError::Invalid {
                field: "quantization.mode",
                reason: format!("`{mode}` (only affine quantization is supported)"),
            });
        }
    }
    let mut q =
        Quantization { group_size: int(m, "group_size", 64), bits: int(m, "bits", 4), ..Quantization::default() };
    for (k, v) in m {
        match v {
            Value::Object(o) => {
                q.overrides.insert(k.clone(), Some((int(o, "group_size", 64), int(o, "bits", 4))));
            }
            Value::Bool(false) => {
                q.overrides.insert(k.clone(), None);
            }
            _ => {}
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemma3_270m_as_the_conversion_writes_it() {
        let c = parse(
            r#"{"model_type":"gemma3_text","hidden_size":640,"intermediate_size":2048,"num_hidden_layers":18,
            "num_attention_heads":4,"num_key_value_heads":1,"head_dim":256,"query_pre_attn_scalar":256,
            "rms_norm_eps":1e-6,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,"sliding_window":512,
            "sliding_window_pattern":6,"vocab_size":262144,"eos_token_id":[1,106],
            "quantization":{"group_size":64,"bits":4,"mode":"affine","model.embed_tokens":{"group_size":32,"bits":8}}}"#,
        )
        .expect("parses");
        assert_eq!(c.family, Family::Gemma3);
        assert_eq!(c.attention_scale, 1.0 / 16.0);
        assert!(c.is_sliding(0) && c.is_sliding(4) && !c.is_sliding(5) && c.is_sliding(6));
        assert!(c.tie_word_embeddings);
        assert_eq!(c.eos_token_ids, [1, 106]);
        let q = c.quantization.expect("quantized");
        assert_eq!(q.for_layer("model.layers.0.mlp.up_proj"), Some((64, 4)));
        assert_eq!(q.for_layer("model.embed_tokens"), Some((32, 8)));
    }

    #[test]
    fn multimodal_gemma3_reads_its_text_config() {
        let c = parse(
            r#"{"model_type":"gemma3","quantization":{"group_size":64,"bits":4},
            "text_config":{"hidden_size":2560,"num_hidden_layers":34,"intermediate_size":10240,
            "num_attention_heads":8,"num_key_value_heads":4,"rope_scaling":{"factor":8.0,"rope_type":"linear"}},
            "vision_config":{}}"#,
        )
        .expect("parses");
        assert_eq!((c.hidden_size, c.layers, c.kv_heads, c.weight_prefix), (2560, 34, 4, "language_model."));
        assert_eq!(c.rope_scaling, RopeScaling::Linear { factor: 8.0 });
        assert_eq!(c.quantization.map(|q| q.bits), Some(4));
    }

    #[test]
    fn llama_and_qwen_defaults() {
        let l = parse(
            r#"{"model_type":"llama","hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,
            "num_attention_heads":9,"num_key_value_heads":3,"vocab_size":49152,"tie_word_embeddings":true,
            "rope_theta":100000.0,"rms_norm_eps":1e-5,"eos_token_id":2}"#,
        )
        .expect("parses");
        assert_eq!((l.head_dim, l.sliding_window, l.attention_bias), (64, None, false));
        assert_eq!(l.attention_scale, 0.125);
        let q = parse(
            r#"{"model_type":"qwen2","hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,
            "num_attention_heads":14,"num_key_value_heads":2,"vocab_size":151936}"#,
        )
        .expect("parses");
        assert!(q.attention_bias);
    }

    #[test]
    fn unknown_architectures_and_rope_types_are_named() {
        let e = parse(r#"{"model_type":"mamba"}"#).expect_err("unsupported");
        assert!(e.to_string().contains("`mamba`"), "{e}");
        let e = parse(
            r#"{"model_type":"llama","hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,
            "num_attention_heads":1,"vocab_size":8,"rope_scaling":{"rope_type":"yarn","factor":4}}"#,
        )
        .expect_err("yarn");
        assert!(e.to_string().contains("rope_scaling") && e.to_string().contains("yarn"), "{e}");
    }
}
