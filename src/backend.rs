//! The interface every inference backend implements, and the messages it sends back.
//!
//! A backend answers a [`GenRequest`] (one chat, `n` candidates) with a stream of
//! [`JobEvent`]s on a bounded channel that the caller owns. Blocking engines (llama.cpp,
//! MLX) own their model on one dedicated OS thread (see [`worker`]); the HTTP backend is
//! natively async but emits the same events. Cancellation is checked between tokens.

#[cfg(any(mlx, feature = "llama"))]
mod candidate;
pub mod memory;
pub mod mlx;
pub mod none;
pub mod openai;
pub mod sampler;
pub mod scripted;
pub mod utf8;
pub mod worker;

#[cfg(feature = "llama")]
pub mod llama;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use memory::{Limits, MemorySnapshot};

/// One chat turn sent to the model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: "user".into(), content: content.into() }
    }
}

/// Sampling settings for one request. Zero values mean "off", as in LEM's go-ml adapter.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub max_tokens: u32,
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 or >= 1 means off.
    pub top_p: f32,
    /// 0 means off.
    pub top_k: i32,
    /// <= 1 means off. Applied to generated tokens only, as go-mlx does.
    pub repeat_penalty: f32,
    /// 0 means off: tokens under `min_p` × the top probability are dropped.
    #[serde(default)]
    pub min_p: f32,
    /// Candidate `i` of a request samples with `seed + i`.
    pub seed: u64,
    /// Never stop at end-of-generation tokens (benchmarks: every candidate runs to `max_tokens`).
    #[serde(default)]
    pub ignore_eos: bool,
}

impl Default for Sampling {
    fn default() -> Self {
        // go-inference's defaults when an option is absent: 256 tokens, greedy.
        Self {
            max_tokens: 256,
            temperature: 0.0,
            top_p: 0.0,
            top_k: 0,
            repeat_penalty: 0.0,
            min_p: 0.0,
            seed: 0,
            ignore_eos: false,
        }
    }
}

/// A chat answered with `n` candidates that share the prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    pub messages: Vec<Message>,
    pub sampling: Sampling,
    pub n: u32,
}

/// Why a candidate stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The caller cancelled.
    Cancelled,
}

/// Per-candidate measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    /// From the request's start to this candidate's first token.
    pub ttft: Duration,
    /// Prompt tokens per second of the (shared) prefill.
    pub prefill_tok_s: f64,
    /// Generated tokens per second after the first token, for this candidate.
    pub decode_tok_s: f64,
    pub wall: Duration,
}

impl Metrics {
    pub fn rate(tokens: u32, d: Duration) -> f64 {
        let s = d.as_secs_f64();
        if s > 0.0 { f64::from(tokens) / s } else { 0.0 }
    }
}

/// What a backend reports while it answers a request. `candidate` is 0-based within the request.
#[derive(Clone, Debug, PartialEq)]
pub enum JobEvent {
    /// The prompt has been processed; decoding starts.
    Prefilled { prompt_tokens: u32, elapsed: Duration },
    /// A piece of text for one candidate (always valid UTF-8; a split character is held back).
    Token { candidate: u32, text: String },
    /// A candidate finished; `text` is the whole response.
    Done { candidate: u32, text: String, finish: FinishReason, metrics: Metrics },
    /// A candidate failed; partial text is discarded, as LEM does.
    Failed { candidate: u32, error: String },
    /// The text streamed so far for `candidate` is void: it is being generated again (its
    /// endpoint failed mid-stream). Views clear that candidate's stream; its one `Done` or
    /// `Failed` is still to come.
    Restart { candidate: u32, reason: String },
    /// No endpoint has answered for the backend's configured wait (remote backends only): the
    /// request ends here, and candidates without their `Done` get none. The run should stop,
    /// so that the same command resumes it once a server is back. `error` names every
    /// endpoint and its last error.
    Unavailable { error: String },
}

/// One remote endpoint, for status views and the end-of-run report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointStatus {
    pub url: String,
    /// False while it is marked down.
    pub up: bool,
    /// "up", "down" or "rate limited for 3s".
    pub state: String,
    pub in_flight: u32,
    pub limit: u32,
    /// Candidates it completed.
    pub done: u64,
    /// Attempts on it that failed.
    pub failed: u64,
    /// Tokens it streamed, including those of failed attempts.
    pub tokens: u64,
    pub last_error: Option<String>,
}

/// What the loaded model is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub backend: String,
    pub architecture: String,
    pub layers: u32,
    pub path: String,
    pub file_bytes: u64,
    pub context_train: u32,
    pub template: String,
    /// Things the operator should know about the load (shown before the run starts).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Errors a backend reports outside a request.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("model file {path} not found")]
    ModelMissing { path: String },
    #[error("cannot load {path}: {reason}")]
    Load { path: String, reason: String },
    #[error(
        "refusing to load {path}: it needs about {need_mib} MiB but the memory limit is {limit_mib} MiB \
         (raise distill.memory_limit / --mem-limit, or set it to 0 for no limit)"
    )]
    OverLimit { path: String, need_mib: u64, limit_mib: u64 },
    #[error("the {0} backend is not built into this binary (rebuild with its cargo feature)")]
    NotBuilt(&'static str),
    #[error("the backend thread has stopped")]
    Gone,
    #[error("{0}")]
    Other(String),
}

/// A backend's answer to new limits, once it has applied (or refused) them.
pub type LimitsReply = tokio::sync::oneshot::Receiver<Result<(), BackendError>>;

/// A reply that is known at once.
#[must_use]
pub fn limits_reply(answer: Result<(), BackendError>) -> LimitsReply {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = tx.send(answer);
    rx
}

/// A running backend. Cheap to share; every method is safe to call from async code.
pub trait Backend: Send + Sync {
    fn info(&self) -> ModelInfo;

    /// Starts answering `req`; events arrive on `events`. The request ends when every candidate
    /// has sent `Done` or `Failed`, or at once after `cancel` fires (remaining candidates then
    /// finish with [`FinishReason::Cancelled`]).
    fn generate(
        &self,
        req: GenRequest,
        events: mpsc::Sender<JobEvent>,
        cancel: CancellationToken,
    ) -> Result<(), BackendError>;

    fn memory(&self) -> MemorySnapshot;

    /// Applies new limits to the running backend. The reply says whether they took: an
    /// in-process engine applies (or refuses) them on its thread between requests.
    fn set_limits(&self, limits: Limits) -> Result<LimitsReply, BackendError>;

    /// The remote endpoints behind this backend; empty for in-process engines.
    fn endpoints(&self) -> Vec<EndpointStatus> {
        Vec::new()
    }
}
