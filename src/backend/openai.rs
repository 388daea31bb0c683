//! OpenAI-compatible servers (vLLM, SGLang, llama.cpp's `llama-server`, llama-cpp-python,
//! `mlx_lm.server`, Ollama) over `POST /v1/chat/completions` with `"stream": true`.
//!
//! Natively async: [`Backend::generate`] spawns the request's coordinator ([`job`]) on the
//! caller's tokio runtime and returns. The coordinator spreads the candidates over a [`pool`]
//! of endpoints, one HTTP attempt ([`stream`]) at a time per candidate (or one attempt for
//! several candidates where the server honours `n`), and retries what fails elsewhere. The
//! events it emits are the same as the in-process backends', plus [`JobEvent::Restart`] when a
//! candidate that had streamed text is regenerated.
//!
//! [`JobEvent::Restart`]: crate::backend::JobEvent::Restart

mod job;
mod pool;
pub mod sse;
mod stream;
mod verdict;
pub mod wire;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use pool::DOWN_AFTER;
pub use stream::Timeouts;

use self::job::{Job, JobConfig};
use self::pool::{Endpoint, Pool};
use super::memory::SystemProbe;
use super::{Backend, BackendError, EndpointStatus, GenRequest, JobEvent, Limits, MemorySnapshot, ModelInfo};

/// An API key. Its `Debug` shows no part of it, so logging options never leaks it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// One endpoint and its own concurrency limit (`None`: [`OpenAiOptions::concurrency`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointOptions {
    pub url: String,
    pub concurrency: Option<u32>,
}

/// Everything the backend needs; built from `--endpoint` flags and ai.yaml's `api` section.
#[derive(Clone, Debug)]
pub struct OpenAiOptions {
    pub endpoints: Vec<EndpointOptions>,
    /// The `model` sent with each request; `None` takes the first id `GET /v1/models` lists.
    pub model: Option<String>,
    /// The key itself, read from the environment variable the config names. Never logged.
    pub api_key: Option<ApiKey>,
    /// Requests in flight per endpoint, unless the endpoint sets its own.
    pub concurrency: u32,
    pub timeouts: Timeouts,
    pub max_attempts: u32,
    /// How long a request waits while no endpoint is up before it ends with
    /// [`JobEvent::Unavailable`] (`--endpoint-wait`).
    pub give_up: Duration,
    pub stop: Vec<String>,
    /// Ask for several candidates in one request (`n`) where the server honours it.
    pub batch_n: bool,
    pub limits: Limits,
}

impl Default for OpenAiOptions {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            model: None,
            api_key: None,
            concurrency: 4,
            timeouts: Timeouts::default(),
            max_attempts: 4,
            // With the first probe after 1 s and backoff capped at 30 s, an endpoint down this
            // long has been asked at least four times; the whole stop fits in two minutes.
            give_up: Duration::from_secs(90),
            stop: Vec::new(),
            batch_n: true,
            limits: Limits::default(),
        }
    }
}

pub struct OpenAiBackend {
    pool: Arc<Pool>,
    cfg: Arc<JobConfig>,
    info: ModelInfo,
    limits: Mutex<Limits>,
    probe: Mutex<SystemProbe>,
}

impl Drop for OpenAiBackend {
    fn drop(&mut self) {
        // Ends the probe tasks and every request still in flight (their candidates finish as
        // cancelled).
        self.pool.shutdown.cancel();
    }
}

/// What start-up learnt from one endpoint.
type Discovery = Result<Vec<String>, String>;

/// Checks the endpoints (`GET /v1/models`) and picks the model. Endpoints that do not answer
/// start as down and are probed again in the background; none answering is an error.
pub fn connect(opts: OpenAiOptions) -> Result<OpenAiBackend, BackendError> {
    if opts.endpoints.is_empty() {
        return Err(BackendError::Other(
            "the openai backend needs at least one endpoint (--endpoint URL or api.endpoints in ai.yaml)".into(),
        ));
    }
    let endpoints = opts
        .endpoints
        .iter()
        .map(|e| Endpoint::parse(&e.url, e.concurrency.unwrap_or(opts.concurrency)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(BackendError::Other)?;
    let client = reqwest::Client::builder()
        .connect_timeout(opts.timeouts.connect)
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| BackendError::Other(format!("HTTP client: {e}")))?;
    let probe_timeout = opts.timeouts.connect + Duration::from_secs(10);
    let found =
        discover(&endpoints, opts.api_key.as_ref().map(|k| k.0.as_str()), opts.timeouts.connect, probe_timeout)?;
    let pool = Pool::new(endpoints, client, probe_timeout, opts.batch_n);
    let mut first_ids = None;
    for (i, d) in found.iter().enumerate() {
        match d {
            Ok(ids) => {
                first_ids.get_or_insert(ids);
            }
            Err(e) => {
                tracing::warn!(endpoint = %pool.endpoints[i].url, error = %e, "endpoint not answering at start");
                pool.mark_down(i, e);
            }
        }
    }
    let Some(ids) = first_ids else {
        let why: Vec<String> = found
            .iter()
            .zip(&pool.endpoints)
            .filter_map(|(d, e)| d.as_ref().err().map(|err| format!("{}: {err}", e.url)))
            .collect();
        return Err(BackendError::Other(format!("no endpoint answers GET /v1/models: {}", why.join("; "))));
    };
    let model = match opts.model.clone().filter(|m| !m.trim().is_empty()) {
        Some(m) => {
            if !ids.is_empty() && !ids.contains(&m) {
                tracing::warn!(model = %m, served = ?ids, "the endpoint does not list this model");
            }
            m
        }
        None => ids.first().cloned().ok_or_else(|| {
            BackendError::Other("the endpoint lists no models: name one with --api-model or api.model".into())
        })?,
    };
    let info = ModelInfo {
        backend: "openai".into(),
        architecture: model.clone(),
        path: pool.endpoints.iter().map(|e| e.url.as_str()).collect::<Vec<_>>().join(", "),
        template: "server".into(),
        ..ModelInfo::default()
    };
    let cfg = JobConfig {
        model,
        stop: opts.stop,
        api_key: opts.api_key,
        timeouts: opts.timeouts,
        max_attempts: opts.max_attempts.max(1),
        give_up: opts.give_up,
    };
    Ok(OpenAiBackend {
        pool: Arc::new(pool),
        cfg: Arc::new(cfg),
        info,
        limits: Mutex::new(opts.limits),
        probe: Mutex::new(SystemProbe::new()),
    })
}

/// Asks every endpoint for its models, concurrently, on a runtime of its own: start-up may run
/// inside or outside one, and the backend's client must not keep connections bound to a
/// runtime that is about to end.
fn discover(
    endpoints: &[Endpoint],
    key: Option<&str>,
    connect: Duration,
    limit: Duration,
) -> Result<Vec<Discovery>, BackendError> {
    let client = reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(limit)
        .build()
        .map_err(|e| BackendError::Other(format!("HTTP client: {e}")))?;
    let ask = |e: &Endpoint| {
        let mut req = client.get(e.models.clone());
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        async move {
            let resp = req.send().await.map_err(|e| stream::chain(&e))?;
            let status = resp.status();
            let text = resp.text().await.map_err(|e| stream::chain(&e))?;
            if !status.is_success() {
                return Err(format!("HTTP {}: {}", status.as_u16(), wire::body_message(&text)));
            }
            let v: Value = serde_json::from_str(&text).map_err(|e| format!("GET /v1/models: not JSON ({e})"))?;
            let ids =
                v["data"].as_array().map(|a| a.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect());
            Ok(ids.unwrap_or_default())
        }
    };
    let futures: Vec<_> = endpoints.iter().map(ask).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| BackendError::Other(format!("runtime: {e}")))?;
            Ok(rt.block_on(async {
                let mut out = Vec::with_capacity(futures.len());
                let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
                for h in handles {
                    out.push(h.await.unwrap_or_else(|e| Err(format!("probe task: {e}"))));
                }
                out
            }))
        })
        .join()
        .map_err(|_| BackendError::Other("endpoint discovery panicked".into()))?
    })
}

impl OpenAiBackend {
    pub fn model(&self) -> &str {
        &self.cfg.model
    }
}

impl Backend for OpenAiBackend {
    fn info(&self) -> ModelInfo {
        self.info.clone()
    }

    fn generate(
        &self,
        req: GenRequest,
        events: mpsc::Sender<JobEvent>,
        cancel: CancellationToken,
    ) -> Result<(), BackendError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| BackendError::Other("the openai backend must be called from a tokio runtime".into()))?;
        if req.n == 0 {
            return Ok(());
        }
        let job = Job::new(Arc::clone(&self.pool), Arc::clone(&self.cfg), req, events, cancel);
        rt.spawn(job.run());
        Ok(())
    }

    fn memory(&self) -> MemorySnapshot {
        // The model's memory is the server's; what is measured here is this process.
        let mut snap = MemorySnapshot {
            source: "remote".into(),
            limits: *self.limits.lock().unwrap_or_else(PoisonError::into_inner),
            ..MemorySnapshot::default()
        };
        self.probe.lock().unwrap_or_else(PoisonError::into_inner).fill(&mut snap);
        snap
    }

    fn set_limits(&self, limits: Limits) -> Result<super::LimitsReply, BackendError> {
        // Only the local gauge and the engine's RSS check use them: a server's memory is its own.
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner) = limits;
        Ok(super::limits_reply(Ok(())))
    }

    fn endpoints(&self) -> Vec<EndpointStatus> {
        self.pool.status()
    }
}
