//! The MLX engine on its worker thread: loading, and answering a request's candidates as one
//! batch with the sampling on the device and the decode pipelined as mlx-lm's.
//!
//! Pipelining: step k+1 is built and submitted (`async_eval`) before step k's tokens are read
//! back, so the device never waits for the host to stream text, count tokens or build the next
//! graph. Reading step k can show that a row stopped; its share of step k+1 is then dropped
//! (its cache row leaves the batch before step k+2), so what is streamed is exactly what a
//! step-by-step loop streams. The cost is one discarded step per finished row.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mlx_rs::ops::indexing::{argmax_axis, take_axis};
use mlx_rs::{Array, memory, transforms};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::alloc::{self, Allocator, Defaults, mlx_err, readings};
use super::chat::{Chat, Detokenizer};
use super::config::{self, ModelConfig};
use super::model::{KvCache, Model, R, Weights};
use super::sample::RowSampler;
use crate::backend::candidate::{self, Candidate, RequestClock};
use crate::backend::memory::MIB;
use crate::backend::worker::{Engine, WorkerBackend, WorkerShared};
use crate::backend::{BackendError, FinishReason, GenRequest, JobEvent, Limits, Message, ModelInfo};

/// mlx-lm's `prefill_step_size`.
const PREFILL_STEP: usize = 2048;
/// How often the gauge's MLX figures are refreshed during a generation.
const GAUGE_EVERY: Duration = Duration::from_millis(200);

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
}

impl MlxOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into(), limits: Limits::default(), wired_bytes: 0, clear_cache_every: 256 }
    }
}

pub(crate) struct MlxEngine {
    model: Model,
    chat: Chat,
    clear_cache_every: u32,
    alloc: Allocator,
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
        let model = Model::new(cfg.clone(), &mut weights).map_err(load)?;
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
            "mlx model loaded"
        );
        Ok((Self { model, chat, clear_cache_every: opts.clear_cache_every, alloc }, info))
    }

    fn prompt(&self, messages: &[Message]) -> Result<Vec<u32>, String> {
        let text = self.chat.render(messages).map_err(|e| e.to_string())?;
        self.chat.encode(&text).map_err(|e| e.to_string())
    }
}

/// Token ids as an int32 `[rows, len]` array.
fn token_array(rows: &[&[u32]]) -> Array {
    let len = rows.first().map_or(0, |r| r.len());
    let flat: Vec<i32> = rows.iter().flat_map(|r| r.iter().map(|&t| t as i32)).collect();
    Array::from_slice(&flat, &[rows.len() as i32, len as i32])
}

/// mlx-lm's prefill: every prompt token but the last, in chunks, caches evaluated after
/// each; returns false when cancelled (the logits of these positions are never needed).
fn prefill(model: &Model, prompt: &[u32], caches: &mut [KvCache], cancel: &CancellationToken) -> R<bool> {
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
fn forward(model: &Model, tokens: &Array, caches: &mut [KvCache]) -> R<Array> {
    let h = model.hidden(tokens, caches)?;
    model.logits_last(&h)
}

/// The next token of every row, lazily. Plain greedy is mlx-lm's sampler exactly: the argmax of
/// the log-probabilities (`logits - logsumexp`, which in bf16 can tie where the logits do not).
fn choose(sampler: &mut RowSampler, logits: &Array) -> R<Array> {
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

/// Where a request's decode steps spend their time, for the log: building and submitting the
/// next step's graph, waiting for the device to finish the current one, and the host's work on
/// its tokens (streaming, stops, rows leaving the batch). With the decode pipelined, a device
/// that is the bottleneck shows as `wait`; a host that is, as `build` + `host`.
#[derive(Default)]
struct StepSplit {
    build: Duration,
    wait: Duration,
    host: Duration,
}

/// A candidate in the batch: its bookkeeping and its detokenizer.
struct Row {
    cand: Candidate,
    detok: Detokenizer,
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

/// Candidates still owed an answer, and why they failed.
struct Failure(Vec<u32>, String);

fn fail(owed: &[u32], why: String) -> Failure {
    Failure(owed.to_vec(), why)
}

impl MlxEngine {
    fn run(
        &mut self,
        req: &GenRequest,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
        shared: &WorkerShared,
        cache_high: &mut u64,
    ) -> Result<(), Failure> {
        let started = Instant::now();
        let n = req.n.max(1);
        let all: Vec<u32> = (0..n).collect();
        let prompt = self.prompt(&req.messages).map_err(|e| fail(&all, e))?;
        if prompt.is_empty() {
            return Err(fail(&all, "the prompt encodes to no tokens".into()));
        }
        let prompt_len = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        let ctx = u32::try_from(self.model.cfg.max_position_embeddings).unwrap_or(u32::MAX);
        if prompt_len.saturating_add(8) > ctx {
            return Err(fail(&all, format!("prompt is {prompt_len} tokens; the model's context is {ctx}")));
        }
        // lem-tui's own hold on `memory_limit` (MLX's is not enforced): as many candidates at
        // a time as fit next to what MLX already holds.
        let limit = shared.limits().memory_bytes;
        let positions = u64::from(prompt_len) + u64::from(req.sampling.max_tokens);
        let held = readings(0).active;
        let plan = alloc::kv_plan(&self.model.cfg, n, positions, self.model.activation_bytes(), held, limit);
        shared.set_kv_bytes(plan.need.min(plan.per_row * u64::from(plan.width.max(1))));
        if plan.width == 0 {
            return Err(fail(
                &all,
                format!(
                    "over the memory limit: one candidate needs {} MiB of KV cache on top of {} MiB held; the limit \
                     is {} MiB (raise distill.memory_limit / --mem-limit, or lower max_tokens)",
                    plan.per_row / MIB,
                    held / MIB,
                    limit / MIB
                ),
            ));
        }
        if plan.width < n {
            tracing::warn!(
                n,
                width = plan.width,
                need_mib = plan.need / MIB,
                held_mib = held / MIB,
                limit_mib = limit / MIB,
                "mlx: the batch does not fit under the memory limit; candidates run {} at a time",
                plan.width
            );
        }
        for wave in all.chunks(plan.width as usize) {
            if cancel.is_cancelled() {
                let at = wave.first().copied().unwrap_or(0) as usize;
                candidate::cancelled(events, &all[at..], prompt_len, started);
                return Ok(());
            }
            self.wave(req, &prompt, wave, started, events, cancel, shared, cache_high)?;
        }
        Ok(())
    }

    /// Prefills the prompt once and decodes the candidates `wave` as one batch.
    #[allow(clippy::too_many_arguments)]
    fn wave(
        &mut self,
        req: &GenRequest,
        prompt: &[u32],
        wave: &[u32],
        started: Instant,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
        shared: &WorkerShared,
        cache_high: &mut u64,
    ) -> Result<(), Failure> {
        let Self { model, chat, clear_cache_every, alloc } = self;
        let model = &*model;
        let prompt_len = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
        let rows_n = wave.len() as i32;
        let mut caches = model.new_cache();
        match prefill(model, prompt, &mut caches, cancel) {
            Ok(true) => {}
            Ok(false) => {
                candidate::cancelled(events, wave, prompt_len, started);
                return Ok(());
            }
            Err(e) => return Err(fail(wave, format!("prefill: {e}"))),
        }
        let mut sampler = RowSampler::new(&req.sampling, wave);
        // The last prompt token, once; its logits serve every candidate's first pick.
        let mut first = || -> R<Array> {
            let logits = forward(model, &token_array(&[&prompt[prompt.len() - 1..]]), &mut caches)?;
            if rows_n > 1 {
                take_axis(&logits, Array::from_slice(&vec![0i32; wave.len()], &[rows_n]), 0)
            } else {
                Ok(logits)
            }
        };
        let mut cur = first()
            .and_then(|logits| choose(&mut sampler, &logits))
            .map_err(|e| fail(wave, format!("prefill: {e}")))?;
        cur.eval().map_err(|e| fail(wave, format!("prefill: {e}")))?;
        let prefill_time = started.elapsed();
        let clock = RequestClock {
            started,
            prompt_tokens: prompt_len,
            prefill_tok_s: crate::backend::Metrics::rate(prompt_len, prefill_time),
        };
        let _ = events.blocking_send(JobEvent::Prefilled { prompt_tokens: prompt_len, elapsed: prefill_time });
        if rows_n > 1 {
            Model::repeat_rows(&mut caches, rows_n).map_err(|e| fail(wave, format!("kv: {e}")))?;
        }
        let mut rows: Vec<Row> =
            wave.iter().map(|&c| Row { cand: Candidate::new(c), detok: Detokenizer::default() }).collect();
        shared.set_mlx(readings(*cache_high));
        let max_tokens = req.sampling.max_tokens;
        let mut gauge_at = Instant::now();
        let mut steps = 0_u32;
        let mut split = StepSplit::default();
        loop {
            if cancel.is_cancelled() {
                for r in &mut rows {
                    let tail = r.detok.finish(chat).unwrap_or_default();
                    r.cand.done(&tail, FinishReason::Cancelled, &clock, events);
                }
                return Ok(());
            }
            let owed: Vec<u32> = rows.iter().map(|r| r.cand.candidate).collect();
            // Submit step k+1 before reading step k, unless step k is every row's last.
            let last_step = rows.iter().all(|r| r.cand.generated + 1 >= max_tokens);
            let t_build = Instant::now();
            let next = if last_step {
                None
            } else {
                let tokens = cur.reshape(&[-1, 1]).map_err(|e| fail(&owed, format!("decode: {e}")))?;
                let ids = forward(model, &tokens, &mut caches)
                    .and_then(|logits| choose(&mut sampler, &logits))
                    .map_err(|e| fail(&owed, format!("decode: {e}")))?;
                transforms::async_eval([&ids]).map_err(|e| fail(&owed, format!("decode: {e}")))?;
                Some(ids)
            };
            let t_wait = Instant::now();
            cur.eval().map_err(|e| fail(&owed, format!("decode: {e}")))?;
            let ids = cur.as_slice::<u32>().to_vec();
            let t_host = Instant::now();
            split.build += t_wait - t_build;
            split.wait += t_host - t_wait;
            let mut keep = Vec::with_capacity(rows.len());
            for (i, (r, &id)) in rows.iter_mut().zip(&ids).enumerate() {
                let stop = chat.is_stop(id) && !req.sampling.ignore_eos;
                if !stop {
                    let piece = r.detok.push(chat, id).unwrap_or_default();
                    r.cand.token(piece, events, cancel);
                }
                match r.cand.finish_reason(stop, max_tokens) {
                    Some(finish) => {
                        let tail = r.detok.finish(chat).unwrap_or_default();
                        r.cand.done(&tail, finish, &clock, events);
                    }
                    None => keep.push(i),
                }
            }
            let Some(mut next) = next.filter(|_| !keep.is_empty()) else {
                split.host += t_host.elapsed();
                let per_step = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(steps.max(1));
                tracing::info!(
                    n = wave.len(),
                    prompt_tokens = prompt_len,
                    steps,
                    wall_ms = started.elapsed().as_millis() as u64,
                    step_build_ms = per_step(split.build),
                    step_wait_ms = per_step(split.wait),
                    step_host_ms = per_step(split.host),
                    "mlx generation"
                );
                return Ok(());
            };
            if keep.len() < rows.len() {
                // Rows that stopped leave the batch: their part of the step already submitted
                // is dropped with them.
                let owed: Vec<u32> = keep.iter().map(|&i| rows[i].cand.candidate).collect();
                let idx: Vec<i32> = keep.iter().map(|&i| i as i32).collect();
                let idx_arr = Array::from_slice(&idx, &[idx.len() as i32]);
                let kv = |e| fail(&owed, format!("kv: {e}"));
                Model::select_rows(&mut caches, &idx).map_err(kv)?;
                next = take_axis(&next, &idx_arr, 0).map_err(kv)?;
                sampler.keep(&keep, &idx_arr).map_err(kv)?;
                let mut k = 0;
                rows.retain(|_| {
                    let stay = keep.contains(&k);
                    k += 1;
                    stay
                });
            }
            cur = next;
            steps += 1;
            split.host += t_host.elapsed();
            let every = *clear_cache_every;
            if every > 0 && steps.is_multiple_of(every) {
                *cache_high = (*cache_high).max(readings(0).cache);
                let _ = memory::clear_cache();
            }
            if gauge_at.elapsed() >= GAUGE_EVERY {
                gauge_at = Instant::now();
                let now = readings(*cache_high);
                *cache_high = now.cache_high;
                shared.set_mlx(now);
                shared.set_kv_bytes(caches.iter().map(|c| c.nbytes() as u64).sum());
                // Limits the operator changed while this request runs apply now.
                alloc.follow(shared);
            }
        }
    }
}

/// Starts the MLX backend on its own thread and waits for the model to load.
pub fn spawn(opts: MlxOptions) -> Result<WorkerBackend, BackendError> {
    tracing::info!(dir = %opts.dir.display(), "loading MLX model");
    WorkerBackend::spawn("mlx", opts.limits, move || MlxEngine::load(opts))
}
