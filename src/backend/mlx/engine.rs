//! The MLX engine on its worker thread: loading a model, the prompt's tokens, the prefill and
//! one forward step, and the backend's face to the worker ([`Engine`]). How a request's
//! candidates are decoded is [`super::decode`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use mlx_rs::ops::indexing::argmax_axis;
use mlx_rs::{Array, memory, transforms};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::alloc::{self, Allocator, Defaults, mlx_err, readings};
use super::chat::Chat;
use super::config::{self, ModelConfig};
use super::joined::{self, Joining};
use super::model::{KvCache, Model, R, Weights};
use super::sample::RowSampler;
use crate::backend::candidate;
use crate::backend::memory::MIB;
use crate::backend::worker::{Engine, WorkerBackend, WorkerShared};
use crate::backend::{BackendError, GenRequest, JobEvent, Limits, Message, ModelInfo};

/// mlx-lm's `prefill_step_size`.
const PREFILL_STEP: usize = 2048;
/// How often the gauge's MLX figures are refreshed during a generation.
pub(super) const GAUGE_EVERY: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct MlxOptions {
    /// An MLX-format folder: config.json, *.safetensors, tokenizer.json.
    pub dir: PathBuf,
    pub limits: Limits,
    /// Metal wired-memory limit in bytes; 0 leaves it alone.
    pub wired_bytes: u64,
    /// Clear MLX's buffer cache every this many decode steps (mlx-lm: 256); 0 = only
    /// between requests.
    pub clear_cache_every: u32,
    /// Which projections run joined; `None`: `LEM_TUI_MLX_JOIN` or the default ([`joined`]).
    pub joining: Option<Joining>,
}

impl MlxOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), limits: Limits::default(), wired_bytes: 0, clear_cache_every: 256, joining: None }
    }
}

pub(crate) struct MlxEngine {
    pub(super) model: Model,
    pub(super) chat: Chat,
    pub(super) clear_cache_every: u32,
    pub(super) alloc: Allocator,
}

fn read_config(dir: &Path) -> Result<ModelConfig, BackendError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| BackendError::Load {
        path: path.display().to_string(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "not found: an MLX model folder needs config.json, *.safetensors and tokenizer.json".into()
        } else {
            e.to_string()
        },
    })?;
    config::parse(&text).map_err(|e| BackendError::Load { path: path.display().to_string(), reason: e.to_string() })
}

fn safetensors_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

impl MlxEngine {
    pub(crate) fn load(opts: MlxOptions) -> Result<(Self, ModelInfo), BackendError> {
        let dir = opts.dir.clone();
        let path = dir.display().to_string();
        if !dir.is_dir() {
            return Err(BackendError::ModelMissing { path });
        }
        let cfg = read_config(&dir)?;
        let defaults = Defaults::get()?;
        let mut alloc = Allocator { defaults, wired: opts.wired_bytes, applied: Limits::default() };
        alloc.apply(opts.limits).map_err(BackendError::Other)?;
        let file_bytes = safetensors_bytes(&dir);
        if opts.limits.memory_bytes > 0 && file_bytes + 64 * MIB > opts.limits.memory_bytes {
            return Err(BackendError::OverLimit {
                path,
                need_mib: (file_bytes + 64 * MIB) / MIB,
                limit_mib: opts.limits.memory_bytes / MIB,
            });
        }
        let mut warnings = Vec::new();
        if cfg!(target_os = "macos") && file_bytes > defaults.working_set() {
            warnings.push(format!(
                "the weights ({} MiB) exceed the GPU's recommended working set ({} MiB): expect swapping",
                file_bytes / MIB,
                defaults.working_set() / MIB
            ));
        }
        for w in &warnings {
            tracing::warn!("mlx: {w}");
        }
        let load = |e: super::model::WeightError| BackendError::Load { path: path.clone(), reason: e.to_string() };
        let mut weights = Weights::load(&dir, cfg.weight_prefix).map_err(load)?;
        let model = Model::new(cfg.clone(), &mut weights, opts.joining.unwrap_or_else(joined::get)).map_err(load)?;
        drop(weights);
        // Load for real now (safetensors arrays are lazy), so the first request doesn't
        // pay for it and `active` shows the model.
        transforms::eval(model.weights()).map_err(|e| BackendError::Load { path: path.clone(), reason: mlx_err(e) })?;
        let chat = Chat::load(&dir, cfg.family, &cfg.eos_token_ids)
            .map_err(|e| BackendError::Load { path: path.clone(), reason: e.to_string() })?;
        let info = ModelInfo {
            backend: "mlx".into(),
            architecture: cfg.model_type.clone(),
            layers: u32::try_from(cfg.layers).unwrap_or(0),
            path,
            file_bytes,
            context_train: u32::try_from(cfg.max_position_embeddings).unwrap_or(0),
            template: chat.template_name.clone(),
            warnings,
        };
        tracing::info!(
            arch = %cfg.model_type,
            layers = cfg.layers,
            quantized = cfg.quantization.is_some(),
            active_mib = readings(0).active / MIB,
            device = %alloc::device().name,
            env = ?super::process_env::report(),
            "mlx model loaded"
        );
        Ok((Self { model, chat, clear_cache_every: opts.clear_cache_every, alloc }, info))
    }

    pub(super) fn prompt(&self, messages: &[Message]) -> Result<Vec<u32>, String> {
        let text = self.chat.render(messages).map_err(|e| e.to_string())?;
        self.chat.encode(&text).map_err(|e| e.to_string())
    }
}

/// Token ids as an int32 `[rows, len]` array.
pub(super) fn token_array(rows: &[&[u32]]) -> Array {
    let len = rows.first().map_or(0, |r| r.len());
    let flat: Vec<i32> = rows.iter().flat_map(|r| r.iter().map(|&t| t as i32)).collect();
    Array::from_slice(&flat, &[rows.len() as i32, len as i32])
}

/// mlx-lm's prefill: every prompt token but the last, in chunks, caches evaluated after
/// each; returns false when cancelled (the logits of these positions are never needed).
pub(super) fn prefill(model: &Model, prompt: &[u32], caches: &mut [KvCache], cancel: &CancellationToken) -> R<bool> {
    let head = &prompt[..prompt.len().saturating_sub(1)];
    for chunk in head.chunks(PREFILL_STEP) {
        let _ = model.hidden(&token_array(&[chunk]), caches)?;
        transforms::eval(caches.iter().flat_map(KvCache::arrays))?;
        memory::clear_cache()?;
        if cancel.is_cancelled() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One forward step: logits of the last position for each row (`[rows, vocab]`).
pub(super) fn forward(model: &Model, tokens: &Array, caches: &mut [KvCache]) -> R<Array> {
    let h = model.hidden(tokens, caches)?;
    model.logits_last(&h)
}

/// The next token of every row, lazily. Plain greedy is mlx-lm's sampler exactly: the argmax of
/// the log-probabilities (`logits - logsumexp`, which in bf16 can tie where the logits do not).
pub(super) fn choose(sampler: &mut RowSampler, logits: &Array) -> R<Array> {
    let ids = if sampler.is_plain_greedy() {
        let logprobs = logits.subtract(&logits.logsumexp_axis(-1, true)?)?;
        argmax_axis(&logprobs, -1, None)?
    } else {
        sampler.next(logits)?
    };
    sampler.accept(&ids)?;
    Ok(ids)
}

/// Greedy token ids for a chat, exactly as mlx-lm's `generate_step` with its default
/// (argmax) sampler produces them: `max_tokens` ids, end tokens included. Exposed for the
/// parity tests; returns (prompt ids, generated ids).
pub fn greedy_ids(dir: &Path, messages: &[Message], max_tokens: usize) -> Result<(Vec<u32>, Vec<u32>), String> {
    let (engine, _) = MlxEngine::load(MlxOptions::new(dir)).map_err(|e| e.to_string())?;
    let prompt = engine.prompt(messages)?;
    let model = &engine.model;
    let mut caches = model.new_cache();
    prefill(model, &prompt, &mut caches, &CancellationToken::new()).map_err(mlx_err)?;
    let mut sampler = RowSampler::new(&crate::backend::Sampling::default(), &[0]);
    let mut next = token_array(&[&prompt[prompt.len() - 1..]]);
    let mut out = Vec::with_capacity(max_tokens);
    for _ in 0..max_tokens {
        let id = choose(&mut sampler, &forward(model, &next, &mut caches).map_err(mlx_err)?).map_err(mlx_err)?;
        id.eval().map_err(mlx_err)?;
        let id = id.as_slice::<u32>()[0];
        out.push(id);
        next = token_array(&[&[id]]);
    }
    Ok((prompt, out))
}

/// The logits (as f32) of the step after the prompt, then of one more step of `rows` rows, each
/// fed that step's argmax: the numbers the model computes, for tests that compare two ways of
/// computing them (joined projections against separate ones).
pub fn step_logits(opts: MlxOptions, messages: &[Message], rows: i32) -> Result<Vec<f32>, String> {
    let (engine, _) = MlxEngine::load(opts).map_err(|e| e.to_string())?;
    let prompt = engine.prompt(messages)?;
    let model = &engine.model;
    let mut caches = model.new_cache();
    let mut run = || -> R<Vec<f32>> {
        prefill(model, &prompt, &mut caches, &CancellationToken::new())?;
        let first = forward(model, &token_array(&[&prompt[prompt.len() - 1..]]), &mut caches)?;
        let id = argmax_axis(&first, -1, None)?.as_dtype(mlx_rs::Dtype::Int32)?;
        Model::repeat_rows(&mut caches, rows)?;
        let next = forward(model, &mlx_rs::ops::broadcast_to(id.reshape(&[1, 1])?, &[rows, 1])?, &mut caches)?;
        let mut out = Vec::new();
        for l in [first, next] {
            let l = l.as_dtype(mlx_rs::Dtype::Float32)?;
            l.eval()?;
            out.extend_from_slice(l.as_slice::<f32>());
        }
        Ok(out)
    };
    run().map_err(mlx_err)
}

impl Engine for MlxEngine {
    fn generate(
        &mut self,
        req: GenRequest,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
        shared: &WorkerShared,
    ) {
        self.alloc.follow(shared);
        let _ = memory::reset_peak_memory();
        let mut cache_high = 0;
        let outcome = self.run(&req, events, cancel, shared, &mut cache_high);
        // The request's figures (its peak and highest cache) before the cache is handed back,
        // then the cache goes (mlx-lm and go-inference do the same between requests).
        let end = readings(cache_high);
        let _ = memory::clear_cache();
        shared.set_mlx(crate::backend::memory::MlxMemory { cache: 0, active: readings(0).active, ..end });
        if let Err(e) = outcome {
            candidate::failed(events, &e.0, &e.1);
        }
    }

    fn started(&mut self, shared: &WorkerShared) {
        shared.set_mlx(readings(0));
    }

    fn set_limits(&mut self, limits: Limits) -> Result<(), BackendError> {
        self.alloc.apply(limits).map_err(BackendError::Other)
    }
}

/// Starts the MLX backend on its own thread and waits for the model to load.
pub fn spawn(opts: MlxOptions) -> Result<WorkerBackend, BackendError> {
    tracing::info!(dir = %opts.dir.display(), "loading MLX model");
    WorkerBackend::spawn("mlx", opts.limits, move || MlxEngine::load(opts))
}
