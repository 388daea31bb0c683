//! MLX through `mlx-rs`: Apple Silicon (Metal) first, and Linux against PyPI's `mlx[cpu]`
//! (scripts/mlx-linux) so the same code is built and run in CI.
//!
//! Everything MLX happens on the worker thread ([`super::worker`]): the model, the KV caches,
//! the allocator limits. A request with `n` candidates prefills the prompt once (batch 1, as
//! mlx-lm: all but the last token in chunks, then the last token alone), shares the prompt's
//! cache with `n` batch rows and decodes the live rows together; finished rows leave the batch.
//!
//! Memory: `cache_limit` / `memory_limit` (and an optional wired limit) are applied before the
//! weights load and again whenever the operator changes them, even mid-generation (the decode
//! loop looks at the shared limits every step). Active / cache / peak bytes go to the gauge a
//! few times a second; the peak is reset per request (its candidates run together), the buffer
//! cache is cleared between requests and every `clear_cache_every` decode steps.

pub mod config;

#[cfg(mlx)]
mod chat;
#[cfg(mlx)]
mod model;

#[cfg(mlx)]
pub use engine::{MlxOptions, greedy_ids, spawn};

#[cfg(mlx)]
mod engine {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use mlx_rs::ops::indexing::argmax_axis;
    use mlx_rs::{Array, Dtype, memory, transforms};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::chat::{Chat, Detokenizer};
    use super::config::{self, ModelConfig};
    use super::model::{KvCache, Model, R, Weights};
    use crate::backend::memory::{MIB, MlxMemory};
    use crate::backend::sampler::Sampler;
    use crate::backend::worker::{Engine, WorkerBackend, WorkerShared};
    use crate::backend::{BackendError, FinishReason, GenRequest, JobEvent, Limits, Message, Metrics, ModelInfo};

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

    fn mlx_err(e: impl std::fmt::Display) -> String {
        e.to_string()
    }

    /// MLX's own limits at start-up: what "0 = no limit" goes back to.
    #[derive(Clone, Copy, Debug)]
    struct Defaults {
        memory: usize,
        cache: usize,
    }

    /// Read once per process: a later backend must not mistake an earlier one's limits for
    /// MLX's defaults.
    static DEFAULTS: std::sync::OnceLock<Defaults> = std::sync::OnceLock::new();

    impl Defaults {
        fn get() -> Result<Self, BackendError> {
            if let Some(d) = DEFAULTS.get() {
                return Ok(*d);
            }
            let d = Self::read()?;
            Ok(*DEFAULTS.get_or_init(|| d))
        }

        fn read() -> Result<Self, BackendError> {
            let memory = memory::memory_limit().map_err(|e| BackendError::Other(mlx_err(e)))?;
            // There is no getter for the cache limit; setting returns the previous one.
            let cache = memory::set_cache_limit(memory).map_err(|e| BackendError::Other(mlx_err(e)))?;
            memory::set_cache_limit(cache).map_err(|e| BackendError::Other(mlx_err(e)))?;
            Ok(Self { memory, cache })
        }

        /// Metal's recommended working set: MLX's default memory limit is 1.5 × it.
        fn working_set(self) -> u64 {
            (self.memory as u64) / 3 * 2
        }
    }

    fn apply_limits(limits: Limits, wired: u64, defaults: Defaults) -> Result<(), String> {
        let pick = |v: u64, d: usize| if v > 0 { usize::try_from(v).unwrap_or(usize::MAX) } else { d };
        memory::set_memory_limit(pick(limits.memory_bytes, defaults.memory)).map_err(mlx_err)?;
        memory::set_cache_limit(pick(limits.cache_bytes, defaults.cache)).map_err(mlx_err)?;
        if wired > 0 {
            // Only Metal on macOS 15+ has wired memory; elsewhere MLX refuses, which is fine.
            if let Err(e) = memory::set_wired_limit(usize::try_from(wired).unwrap_or(usize::MAX)) {
                tracing::warn!("mlx: wired limit not applied: {e}");
            }
        }
        tracing::info!(
            cache_mib = limits.cache_bytes / MIB,
            memory_mib = limits.memory_bytes / MIB,
            wired_mib = wired / MIB,
            "mlx limits applied (0 = MLX default)"
        );
        Ok(())
    }

    /// MLX's process-wide limits as this engine last applied them.
    struct Allocator {
        defaults: Defaults,
        wired: u64,
        applied: Limits,
    }

    impl Allocator {
        fn apply(&mut self, limits: Limits) -> Result<(), String> {
            apply_limits(limits, self.wired, self.defaults)?;
            self.applied = limits;
            Ok(())
        }

        /// Applies limits the operator changed: the shared copy moves at once, while the
        /// `SetLimits` command waits behind the request in flight.
        fn follow(&mut self, shared: &WorkerShared) {
            let wanted = shared.limits();
            if wanted != self.applied {
                if let Err(e) = self.apply(wanted) {
                    tracing::warn!("mlx: limits not applied: {e}");
                }
            }
        }
    }

    pub(crate) fn readings() -> MlxMemory {
        let get = |r: mlx_rs::error::Result<usize>| r.map_or(0, |v| v as u64);
        MlxMemory {
            active: get(memory::active_memory()),
            cache: get(memory::cache_memory()),
            peak: get(memory::peak_memory()),
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
            transforms::eval(model.weights())
                .map_err(|e| BackendError::Load { path: path.clone(), reason: mlx_err(e) })?;
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
                active_mib = readings().active / MIB,
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
    /// each; returns nothing (the logits of these positions are never needed).
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

    /// One step: logits of the last position for each row, and the log-probabilities
    /// (`logits - logsumexp(logits)`, as mlx-lm computes before sampling).
    fn step(model: &Model, tokens: &Array, caches: &mut [KvCache]) -> R<(Array, Array)> {
        let h = model.hidden(tokens, caches)?;
        let logits = model.logits_last(&h)?;
        let logprobs = logits.subtract(&logits.logsumexp_axis(-1, true)?)?;
        Ok((logits, logprobs))
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
        let mut next = token_array(&[&prompt[prompt.len() - 1..]]);
        let mut out = Vec::with_capacity(max_tokens);
        for _ in 0..max_tokens {
            let (_, logprobs) = step(model, &next, &mut caches).map_err(mlx_err)?;
            let id = argmax_axis(&logprobs, -1, None).map_err(mlx_err)?;
            id.eval().map_err(mlx_err)?;
            let id = id.as_slice::<u32>()[0];
            out.push(id);
            next = token_array(&[&[id]]);
        }
        Ok((prompt, out))
    }

    struct Row {
        candidate: u32,
        sampler: Sampler,
        detok: Detokenizer,
        text: String,
        next: u32,
        generated: u32,
        first_token: Option<Instant>,
    }

    impl Row {
        /// Sends the candidate's one `Done`, with whatever text the detokenizer still held.
        fn finish(
            &mut self,
            chat: &Chat,
            finish: FinishReason,
            events: &mpsc::Sender<JobEvent>,
            prompt_tokens: u32,
            prefill_tok_s: f64,
            started: Instant,
        ) {
            let tail = self.detok.finish(chat).unwrap_or_default();
            self.text.push_str(&tail);
            let metrics = self.metrics(prompt_tokens, prefill_tok_s, started);
            let text = std::mem::take(&mut self.text);
            let _ = events.blocking_send(JobEvent::Done { candidate: self.candidate, text, finish, metrics });
        }

        fn metrics(&self, prompt_tokens: u32, prefill_tok_s: f64, started: Instant) -> Metrics {
            let wall = started.elapsed();
            let ttft = self.first_token.map_or(Duration::ZERO, |t| t.duration_since(started));
            Metrics {
                prompt_tokens,
                generated_tokens: self.generated,
                ttft,
                prefill_tok_s,
                decode_tok_s: Metrics::rate(self.generated.saturating_sub(1), wall.saturating_sub(ttft)),
                wall,
            }
        }
    }

    /// Picks each row's next token from this step's logits.
    fn choose(rows: &mut [Row], logits: &Array, logprobs: &Array) -> R<()> {
        if rows.iter().all(|r| r.sampler.is_greedy() && !r.sampler.penalises()) {
            // Argmax on the device, of the log-probabilities, as mlx-lm's greedy sampler.
            let ids = argmax_axis(logprobs, -1, None)?;
            ids.eval()?;
            for (r, &id) in rows.iter_mut().zip(ids.as_slice::<u32>()) {
                r.next = id;
            }
            return Ok(());
        }
        let host = logits.as_dtype(Dtype::Float32)?;
        host.eval()?;
        let all = host.as_slice::<f32>();
        let vocab = all.len() / rows.len().max(1);
        for (r, row) in rows.iter_mut().zip(all.chunks(vocab)) {
            let mut row = row.to_vec();
            r.next = r.sampler.sample(&mut row);
        }
        Ok(())
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
            let outcome = self.run(&req, events, cancel, shared);
            // Between probes: hand the buffer cache back (mlx-lm and go-inference do the same).
            let _ = memory::clear_cache();
            shared.set_mlx(readings());
            if let Err(e) = outcome {
                for candidate in e.0 {
                    let _ = events.blocking_send(JobEvent::Failed { candidate, error: e.1.clone() });
                }
            }
        }

        fn started(&mut self, shared: &WorkerShared) {
            shared.set_mlx(readings());
        }

        fn set_limits(&mut self, limits: Limits) -> Result<(), BackendError> {
            self.alloc.apply(limits).map_err(BackendError::Other)
        }
    }

    /// Candidates still owed an answer, and why they failed.
    struct Failure(Vec<u32>, String);

    impl MlxEngine {
        fn run(
            &mut self,
            req: &GenRequest,
            events: &mpsc::Sender<JobEvent>,
            cancel: &CancellationToken,
            shared: &WorkerShared,
        ) -> Result<(), Failure> {
            let started = Instant::now();
            let n = req.n.max(1);
            let all: Vec<u32> = (0..n).collect();
            let fail = |owed: &[u32], why: String| Failure(owed.to_vec(), why);
            let prompt = self.prompt(&req.messages).map_err(|e| fail(&all, e))?;
            if prompt.is_empty() {
                return Err(fail(&all, "the prompt encodes to no tokens".into()));
            }
            let prompt_len = u32::try_from(prompt.len()).unwrap_or(u32::MAX);
            let ctx = u32::try_from(self.model.cfg.max_position_embeddings).unwrap_or(u32::MAX);
            if prompt_len.saturating_add(8) > ctx {
                return Err(fail(&all, format!("prompt is {prompt_len} tokens; the model's context is {ctx}")));
            }
            let Self { model, chat, clear_cache_every, alloc } = self;
            let model = &*model;
            let mut caches = model.new_cache();
            match prefill(model, &prompt, &mut caches, cancel) {
                Ok(true) => {}
                Ok(false) => {
                    cancelled(events, &all, prompt_len, started);
                    return Ok(());
                }
                Err(e) => return Err(fail(&all, format!("prefill: {e}"))),
            }
            let mut rows: Vec<Row> = all
                .iter()
                .map(|&candidate| Row {
                    candidate,
                    sampler: Sampler::new(&req.sampling, candidate),
                    detok: Detokenizer::default(),
                    text: String::new(),
                    next: 0,
                    generated: 0,
                    first_token: None,
                })
                .collect();
            // The last prompt token, once, then its logits serve every candidate's first pick.
            let last = token_array(&[&prompt[prompt.len() - 1..]]);
            let (logits, logprobs) =
                step(model, &last, &mut caches).map_err(|e| fail(&all, format!("prefill: {e}")))?;
            let prefill_time = started.elapsed();
            let prefill_tok_s = Metrics::rate(prompt_len, prefill_time);
            let _ = events.blocking_send(JobEvent::Prefilled { prompt_tokens: prompt_len, elapsed: prefill_time });
            let first = |rows: &mut [Row]| -> R<()> {
                let (lg, lp) = if rows.len() > 1 {
                    let zeros = Array::from_slice(&vec![0i32; rows.len()], &[rows.len() as i32]);
                    (
                        mlx_rs::ops::indexing::take_axis(&logits, &zeros, 0)?,
                        mlx_rs::ops::indexing::take_axis(&logprobs, &zeros, 0)?,
                    )
                } else {
                    (logits.clone(), logprobs.clone())
                };
                choose(rows, &lg, &lp)
            };
            first(&mut rows).map_err(|e| fail(&all, format!("sample: {e}")))?;
            if n > 1 {
                Model::repeat_rows(&mut caches, n as i32).map_err(|e| fail(&all, format!("kv: {e}")))?;
            }
            shared.set_mlx(readings());
            let mut gauge_at = Instant::now();
            let mut steps = 0_u32;
            loop {
                let end = |r: &mut Row, finish| r.finish(chat, finish, events, prompt_len, prefill_tok_s, started);
                if cancel.is_cancelled() {
                    rows.iter_mut().for_each(|r| end(r, FinishReason::Cancelled));
                    return Ok(());
                }
                // Emit this step's tokens; decide who goes on.
                let mut keep = Vec::with_capacity(rows.len());
                for (i, r) in rows.iter_mut().enumerate() {
                    let stop = chat.is_stop(r.next) && !req.sampling.ignore_eos;
                    if !stop {
                        r.first_token.get_or_insert_with(Instant::now);
                        r.generated += 1;
                        r.sampler.accept(r.next);
                        let piece = r.detok.push(chat, r.next).unwrap_or_default();
                        if !piece.is_empty() {
                            r.text.push_str(&piece);
                            if events.blocking_send(JobEvent::Token { candidate: r.candidate, text: piece }).is_err() {
                                cancel.cancel();
                            }
                        }
                    }
                    let finish = if stop {
                        Some(FinishReason::Stop)
                    } else if r.generated >= req.sampling.max_tokens {
                        Some(FinishReason::Length)
                    } else {
                        None
                    };
                    match finish {
                        Some(finish) => end(r, finish),
                        None => keep.push(i),
                    }
                }
                if keep.is_empty() {
                    tracing::info!(
                        n,
                        prompt_tokens = prompt_len,
                        steps,
                        wall_ms = started.elapsed().as_millis() as u64,
                        "mlx generation"
                    );
                    return Ok(());
                }
                if keep.len() < rows.len() {
                    let idx: Vec<i32> = keep.iter().map(|&i| i as i32).collect();
                    let owed: Vec<u32> = keep.iter().map(|&i| rows[i].candidate).collect();
                    Model::select_rows(&mut caches, &idx).map_err(|e| fail(&owed, format!("kv: {e}")))?;
                    let mut k = 0;
                    rows.retain(|_| {
                        let stay = keep.contains(&k);
                        k += 1;
                        stay
                    });
                }
                let owed: Vec<u32> = rows.iter().map(|r| r.candidate).collect();
                let ids: Vec<[u32; 1]> = rows.iter().map(|r| [r.next]).collect();
                let refs: Vec<&[u32]> = ids.iter().map(|a| a.as_slice()).collect();
                let (logits, logprobs) =
                    step(model, &token_array(&refs), &mut caches).map_err(|e| fail(&owed, format!("decode: {e}")))?;
                choose(&mut rows, &logits, &logprobs).map_err(|e| fail(&owed, format!("sample: {e}")))?;
                steps += 1;
                let every = *clear_cache_every;
                if every > 0 && steps.is_multiple_of(every) {
                    let _ = memory::clear_cache();
                }
                if gauge_at.elapsed() >= GAUGE_EVERY {
                    gauge_at = Instant::now();
                    shared.set_mlx(readings());
                    shared.set_kv_bytes(caches.iter().map(|c| c.nbytes() as u64).sum());
                    // Limits the operator changed while this request runs apply now.
                    alloc.follow(shared);
                }
            }
        }
    }

    fn cancelled(events: &mpsc::Sender<JobEvent>, owed: &[u32], prompt_tokens: u32, started: Instant) {
        for &candidate in owed {
            let metrics = Metrics { prompt_tokens, wall: started.elapsed(), ..Metrics::default() };
            let _ = events.blocking_send(JobEvent::Done {
                candidate,
                text: String::new(),
                finish: FinishReason::Cancelled,
                metrics,
            });
        }
    }

    /// Starts the MLX backend on its own thread and waits for the model to load.
    pub fn spawn(opts: MlxOptions) -> Result<WorkerBackend, BackendError> {
        tracing::info!(dir = %opts.dir.display(), "loading MLX model");
        WorkerBackend::spawn("mlx", opts.limits, move || MlxEngine::load(opts))
    }
}
