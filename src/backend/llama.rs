//! llama.cpp in process, through `llama-cpp-2`.
//!
//! The model and its context live on one worker thread ([`super::worker`]). A request with `n`
//! candidates is answered as one batch: the prompt is prefilled once on sequence 0, its KV
//! cells are shared with sequences 1..n (`seq_cp` on a unified cache), and every step decodes
//! one token of each live sequence in a single `decode` call. Each sequence has its own
//! sampler chain and seed; finished sequences leave the batch.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend as GgmlBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::candidate::{self, Candidate, RequestClock};
use super::memory::MIB;
use super::utf8::Utf8Stream;
use super::worker::{Engine, WorkerShared};
use super::{BackendError, FinishReason, GenRequest, JobEvent, Limits, Metrics, ModelInfo, Sampling};

/// How to load a GGUF.
#[derive(Clone, Debug)]
pub struct LlamaOptions {
    pub path: PathBuf,
    /// CPU threads for decode and prefill; 0 = llama.cpp's default.
    pub threads: u32,
    /// A llama.cpp template name (`chatml`, `gemma`, `llama3`, …) used when the GGUF has no
    /// template, or always when `force_template` is set.
    pub fallback_template: Option<String>,
    pub force_template: bool,
    /// Layers to offload to a GPU (CUDA builds); 0 keeps everything on the CPU.
    pub gpu_layers: u32,
    pub limits: Limits,
}

fn ggml() -> Result<&'static GgmlBackend, BackendError> {
    static GGML: OnceLock<Result<GgmlBackend, String>> = OnceLock::new();
    GGML.get_or_init(|| {
        // llama.cpp logs to stderr by default, which would garble the TUI and LEM's progress lines.
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
        GgmlBackend::init().map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| BackendError::Other(format!("llama.cpp init: {e}")))
}

/// The GPUs llama.cpp can offload to, as "CUDA0 (NVIDIA H100 80GB HBM3)"; empty in a CPU-only
/// build. A binary built with `llama-dynamic` sees whatever the shared libraries it loads offer.
pub fn gpu_devices() -> Vec<String> {
    use llama_cpp_2::LlamaBackendDeviceType as Kind;
    if ggml().is_err() {
        return Vec::new();
    }
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| matches!(d.device_type, Kind::Gpu | Kind::IntegratedGpu))
        .map(|d| format!("{} ({})", d.name, d.description))
        .collect()
}

/// Threads that sample a batched step's sequences: `LEM_TUI_SAMPLE_THREADS` (1 = one after
/// another on the decode thread), else one per live sequence up to the core count. Sampling a
/// 262k-token vocabulary (Gemma 3) costs milliseconds per sequence on the CPU, which a GPU
/// step would otherwise wait for N times over.
fn sample_threads(live: usize) -> usize {
    static SET: OnceLock<Option<usize>> = OnceLock::new();
    let set = *SET.get_or_init(|| std::env::var("LEM_TUI_SAMPLE_THREADS").ok().and_then(|v| v.parse().ok()));
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    set.unwrap_or(cores).clamp(1, live.max(1))
}

/// What `llama_sampler_sample` does (candidates from the logits, the chain, accept), on logits
/// already copied out of the context, so that sequences can be sampled on several threads.
fn sample_logits(sampler: &mut LlamaSampler, logits: &[f32], buf: &mut Vec<LlamaTokenData>) -> LlamaToken {
    let mut cands = std::mem::take(buf);
    cands.clear();
    cands.extend((0_i32..).zip(logits).map(|(id, &logit)| LlamaTokenData::new(LlamaToken::new(id), logit, 0.0)));
    let mut array = LlamaTokenDataArray::new(cands, false);
    array.apply_sampler(sampler);
    let token = array.selected_token().unwrap_or_else(|| {
        // Every chain ends in a selecting sampler (dist or greedy); fall back to the best logit.
        let best = (0_i32..).zip(logits).max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(id, _)| id);
        LlamaToken::new(best)
    });
    *buf = array.data;
    sampler.accept(token);
    token
}

/// Bytes of KV cache one token occupies: 2 (K and V) × layers × kv heads × head dim × f16.
fn kv_bytes_per_token(model: &LlamaModel) -> u64 {
    let arch = model.meta_val_str("general.architecture").unwrap_or_default();
    let meta_u64 = |key: &str| model.meta_val_str(&format!("{arch}.{key}")).ok().and_then(|v| v.parse::<u64>().ok());
    let layers = u64::from(model.n_layer());
    let heads = u64::from(model.n_head().max(1));
    let kv_heads = u64::from(model.n_head_kv().max(1));
    let embd = u64::try_from(model.n_embd()).unwrap_or(0);
    let head_dim = meta_u64("attention.key_length").unwrap_or(embd / heads);
    2 * layers * kv_heads * head_dim * 2
}

/// The estimate the loader compares against `memory_limit` before committing to a load.
pub fn estimate_bytes(file_bytes: u64, ctx_tokens: u64, kv_per_token: u64) -> u64 {
    // Weights are mmapped and mostly resident; compute buffers and the runtime add a margin.
    file_bytes + ctx_tokens * kv_per_token + 64 * MIB
}

/// A context sized for the largest request so far, kept between requests: creating one costs
/// its KV and compute buffers (~0.6 s for Gemma 3's 262k vocabulary on a CPU), which would
/// otherwise be paid again before every probe's first token.
struct KeptContext<'m> {
    ctx: LlamaContext<'m>,
    n_ctx: u64,
    n_seq: u32,
}

type MaybeContext<'m> = Option<KeptContext<'m>>;

self_cell::self_cell!(
    /// The model and the context that borrows it, in one place on the worker thread.
    struct ModelAndContext {
        owner: LlamaModel,
        #[covariant]
        dependent: MaybeContext,
    }
);

pub(crate) struct LlamaEngine {
    cell: ModelAndContext,
    cfg: EngineConfig,
}

/// What the engine knows besides the model and its context.
struct EngineConfig {
    opts: LlamaOptions,
    template: Template,
    kv_per_token: u64,
    /// End-of-generation tokens, for `ignore_eos`.
    eog: Vec<LlamaToken>,
}

enum Template {
    Named(LlamaChatTemplate, String),
}

impl LlamaEngine {
    pub(crate) fn load(opts: LlamaOptions) -> Result<(Self, ModelInfo), BackendError> {
        let path_s = opts.path.display().to_string();
        let file_bytes =
            std::fs::metadata(&opts.path).map_err(|_| BackendError::ModelMissing { path: path_s.clone() })?.len();
        if opts.limits.memory_bytes > 0 && file_bytes + 64 * MIB > opts.limits.memory_bytes {
            return Err(BackendError::OverLimit {
                path: path_s,
                need_mib: (file_bytes + 64 * MIB) / MIB,
                limit_mib: opts.limits.memory_bytes / MIB,
            });
        }
        let backend = ggml()?;
        let params = LlamaModelParams::default().with_n_gpu_layers(opts.gpu_layers);
        let model = LlamaModel::load_from_file(backend, &opts.path, &params)
            .map_err(|e| BackendError::Load { path: path_s.clone(), reason: e.to_string() })?;
        let template = pick_template(&model, &opts)?;
        let kv_per_token = kv_bytes_per_token(&model);
        let eog: Vec<LlamaToken> = {
            let vocab = model.vocab();
            vocab.tokens().filter(|t| vocab.is_eog(*t)).collect()
        };
        let Template::Named(_, template_name) = &template;
        let info = ModelInfo {
            backend: "llama.cpp".into(),
            architecture: model.meta_val_str("general.architecture").unwrap_or_else(|_| "unknown".into()),
            layers: model.n_layer(),
            path: path_s,
            file_bytes,
            context_train: model.n_ctx_train(),
            template: template_name.clone(),
            warnings: Vec::new(),
        };
        let cell = ModelAndContext::new(model, |_| None);
        Ok((Self { cell, cfg: EngineConfig { opts, template, kv_per_token, eog } }, info))
    }
}

impl EngineConfig {
    fn render(&self, model: &LlamaModel, req: &GenRequest) -> Result<String, String> {
        let Template::Named(tmpl, _) = &self.template;
        let msgs = req
            .messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("message: {e}"))?;
        model.apply_chat_template(tmpl, &msgs, true).map_err(|e| format!("chat template: {e}"))
    }
}

fn pick_template(model: &LlamaModel, opts: &LlamaOptions) -> Result<Template, BackendError> {
    let named = |name: &str| {
        LlamaChatTemplate::new(name)
            .map(|t| Template::Named(t, name.to_owned()))
            .map_err(|e| BackendError::Other(format!("template {name}: {e}")))
    };
    if opts.force_template {
        if let Some(name) = &opts.fallback_template {
            return named(name);
        }
    }
    match model.chat_template(None) {
        Ok(t) => Ok(Template::Named(t, "embedded".into())),
        Err(_) => match &opts.fallback_template {
            Some(name) => named(name),
            None => Err(BackendError::Load {
                path: opts.path.display().to_string(),
                reason: "the GGUF has no chat template; set `template:` in the model config (chatml, gemma, llama3)"
                    .into(),
            }),
        },
    }
}

fn sampler_for(s: &Sampling, candidate: u32, n_vocab: i32, eog: &[LlamaToken]) -> LlamaSampler {
    let seed = u32::try_from((s.seed.wrapping_add(u64::from(candidate))) & u64::from(u32::MAX)).unwrap_or(0);
    let mut chain = Vec::new();
    if s.ignore_eos {
        let bias: Vec<_> = eog.iter().map(|t| LlamaLogitBias::new(*t, f32::NEG_INFINITY)).collect();
        chain.push(LlamaSampler::logit_bias(n_vocab, &bias));
    }
    if s.repeat_penalty > 1.0 {
        // Only generated tokens are ever accepted into this sampler, so the penalty covers the
        // response alone, as go-mlx does. -1 = the whole context window.
        chain.push(LlamaSampler::penalties(n_vocab, -1, s.repeat_penalty, 0.0, 0.0));
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
        return LlamaSampler::chain_simple(chain);
    }
    if s.top_k > 0 {
        chain.push(LlamaSampler::top_k(s.top_k));
    }
    if s.top_p > 0.0 && s.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(s.top_p, 1));
    }
    if s.min_p > 0.0 {
        chain.push(LlamaSampler::min_p(s.min_p, 1));
    }
    chain.push(LlamaSampler::temp(s.temperature));
    chain.push(LlamaSampler::dist(seed));
    LlamaSampler::chain_simple(chain)
}

struct Seq {
    cand: Candidate,
    sampler: LlamaSampler,
    utf8: Utf8Stream,
    /// Where in the last batch this sequence's logits are.
    logits_at: i32,
    /// The token sampled for this step.
    next: LlamaToken,
    /// The candidate buffer the sampler works in (n_vocab entries), reused every step.
    cands: Vec<LlamaTokenData>,
    live: bool,
}

impl Engine for LlamaEngine {
    fn generate(
        &mut self,
        req: GenRequest,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
        shared: &WorkerShared,
    ) {
        let cfg = &self.cfg;
        self.cell.with_dependent_mut(|model, kept| cfg.generate(model, kept, req, events, cancel, shared));
    }

    fn set_limits(&mut self, limits: Limits) -> Result<(), BackendError> {
        // llama.cpp has no allocator limit to set: lem-tui enforces `memory_limit` itself (at
        // load, per request, and in the engine's RSS check). A cache limit has no meaning here.
        // A tighter limit frees the kept context; the next request sizes a new one against it.
        let old = self.cfg.opts.limits.memory_bytes;
        if limits.memory_bytes > 0 && (old == 0 || limits.memory_bytes < old) {
            self.cell.with_dependent_mut(|_, kept| *kept = None);
        }
        self.cfg.opts.limits = limits;
        Ok(())
    }
}

impl EngineConfig {
    /// A context for `n_ctx` cells shared by `n` sequences, refused when it would not fit
    /// under the memory limit next to what the process already holds.
    fn new_context<'m>(
        &self,
        model: &'m LlamaModel,
        n_ctx: u64,
        n: u32,
        shared: &WorkerShared,
    ) -> Result<LlamaContext<'m>, String> {
        let limits = shared.limits();
        let estimate = estimate_bytes(0, n_ctx, self.kv_per_token);
        shared.set_kv_bytes(n_ctx * self.kv_per_token);
        if limits.memory_bytes > 0 && shared.rss() + estimate > limits.memory_bytes {
            return Err(format!(
                "this request needs about {} MiB of KV cache on top of {} MiB in use; the memory limit is {} MiB",
                estimate / MIB,
                shared.rss() / MIB,
                limits.memory_bytes / MIB
            ));
        }
        let threads = i32::try_from(self.opts.threads).unwrap_or(0);
        let mut params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(u32::try_from(n_ctx).unwrap_or(u32::MAX)))
            .with_n_seq_max(n)
            .with_n_batch(512)
            .with_kv_unified(true);
        if threads > 0 {
            params = params.with_n_threads(threads).with_n_threads_batch(threads);
        }
        let backend = ggml().map_err(|e| e.to_string())?;
        model.new_context(backend, params).map_err(|e| format!("context ({n_ctx} tokens × {n} sequences): {e}"))
    }

    fn generate<'m>(
        &self,
        model: &'m LlamaModel,
        kept: &mut MaybeContext<'m>,
        req: GenRequest,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
        shared: &WorkerShared,
    ) {
        let started = Instant::now();
        let n = req.n.max(1);
        let all: Vec<u32> = (0..n).collect();
        let fail_all = |error: String| candidate::failed(events, &all, &error);
        let prompt = match self.render(model, &req) {
            Ok(p) => p,
            Err(e) => return fail_all(e),
        };
        let vocab = model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        let prompt_len = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        let need = u64::from(prompt_len) + u64::from(n) * u64::from(req.sampling.max_tokens) + 8;
        let train = u64::from(model.n_ctx_train());
        if u64::from(prompt_len) + 8 > train {
            return fail_all(format!("prompt is {prompt_len} tokens; the model's context is {train}"));
        }
        let n_ctx = need.min(train.saturating_mul(u64::from(n))).next_multiple_of(256);
        let fits = kept.as_ref().is_some_and(|k| k.n_ctx >= n_ctx && k.n_seq >= n);
        let ctx = if let (true, Some(k)) = (fits, kept.as_mut()) {
            // Forget every sequence's cells; the buffers stay allocated.
            if let Err(e) = k.ctx.clear_kv_cache_seq(None, None, None) {
                return fail_all(format!("kv clear: {e}"));
            }
            &mut k.ctx
        } else {
            // Grow to cover both this request and the largest before it, so alternating
            // request shapes do not rebuild the context every time.
            let (n_ctx, n) = kept.as_ref().map_or((n_ctx, n), |k| (k.n_ctx.max(n_ctx), k.n_seq.max(n)));
            *kept = None;
            match self.new_context(model, n_ctx, n, shared) {
                Ok(ctx) => &mut kept.insert(KeptContext { ctx, n_ctx, n_seq: n }).ctx,
                Err(e) => return fail_all(e),
            }
        };

        // Prefill in chunks of the batch size; only the last prompt token needs logits.
        let mut batch = LlamaBatch::new(512.max(n as usize), i32::try_from(n).unwrap_or(1));
        let last = tokens.len().saturating_sub(1);
        for (chunk_i, chunk) in tokens.chunks(512).enumerate() {
            batch.clear();
            for (j, tok) in chunk.iter().enumerate() {
                let pos = chunk_i * 512 + j;
                if let Err(e) = batch.add(*tok, i32::try_from(pos).unwrap_or(i32::MAX), &[0], pos == last) {
                    return fail_all(format!("batch: {e}"));
                }
            }
            if let Err(e) = ctx.decode(&mut batch) {
                return fail_all(format!("prefill: {e}"));
            }
            if cancel.is_cancelled() {
                return candidate::cancelled(events, &all, prompt_len, started);
            }
        }
        let prefill = started.elapsed();
        let clock =
            RequestClock { started, prompt_tokens: prompt_len, prefill_tok_s: Metrics::rate(prompt_len, prefill) };
        let _ = events.blocking_send(JobEvent::Prefilled { prompt_tokens: prompt_len, elapsed: prefill });
        for s in 1..n {
            if let Err(e) = ctx.copy_kv_cache_seq(0, i32::try_from(s).unwrap_or(0), None, None) {
                return fail_all(format!("kv copy: {e}"));
            }
        }

        let n_vocab = model.n_vocab();
        let last_idx = batch.n_tokens() - 1;
        let mut seqs: Vec<Seq> = (0..n)
            .map(|candidate| Seq {
                cand: Candidate::new(candidate),
                sampler: sampler_for(&req.sampling, candidate, n_vocab, &self.eog),
                utf8: Utf8Stream::default(),
                logits_at: last_idx,
                next: LlamaToken::new(0),
                cands: Vec::new(),
                live: true,
            })
            .collect();
        let mut piece = Vec::with_capacity(32);
        let mut pos = prompt_len;
        // Where the decode loop's time goes (logged per request): sampling on the CPU, decode calls.
        let (mut t_sample, mut t_decode, mut steps) = (Duration::ZERO, Duration::ZERO, 0_u32);
        loop {
            if cancel.is_cancelled() {
                for seq in seqs.iter_mut().filter(|s| s.live) {
                    seq.live = false;
                    let tail = seq.utf8.finish();
                    seq.cand.done(&tail, FinishReason::Cancelled, &clock, events);
                }
                return;
            }
            let t = Instant::now();
            sample_step(ctx, &mut seqs);
            t_sample += t.elapsed();
            batch.clear();
            let mut added = 0;
            for seq in seqs.iter_mut().filter(|s| s.live) {
                let token = seq.next;
                let eog = vocab.is_eog(token) && !req.sampling.ignore_eos;
                if !eog {
                    piece.clear();
                    vocab.token_to_piece_into(token, &mut piece, false, None);
                    let text = seq.utf8.push(&piece);
                    seq.cand.token(text, events, cancel);
                }
                if let Some(finish) = seq.cand.finish_reason(eog, req.sampling.max_tokens) {
                    seq.live = false;
                    let tail = seq.utf8.finish();
                    seq.cand.done(&tail, finish, &clock, events);
                    continue;
                }
                let seq_id = i32::try_from(seq.cand.candidate).unwrap_or(0);
                seq.logits_at = added;
                if let Err(e) = batch.add(token, i32::try_from(pos).unwrap_or(i32::MAX), &[seq_id], true) {
                    seq.live = false;
                    let _ =
                        events.blocking_send(JobEvent::Failed { candidate: seq.cand.candidate, error: e.to_string() });
                    continue;
                }
                added += 1;
            }
            if added == 0 {
                tracing::info!(
                    n,
                    prompt_tokens = prompt_len,
                    steps,
                    sample_threads = sample_threads(n as usize),
                    prefill_ms = prefill.as_secs_f64() * 1e3,
                    sample_ms = t_sample.as_secs_f64() * 1e3,
                    decode_ms = t_decode.as_secs_f64() * 1e3,
                    wall_ms = started.elapsed().as_secs_f64() * 1e3,
                    "batched generation"
                );
                return;
            }
            pos += 1;
            steps += 1;
            let t = Instant::now();
            let decoded = ctx.decode(&mut batch);
            t_decode += t.elapsed();
            if let Err(e) = decoded {
                for seq in seqs.iter_mut().filter(|s| s.live) {
                    seq.live = false;
                    let _ = events.blocking_send(JobEvent::Failed {
                        candidate: seq.cand.candidate,
                        error: format!("decode: {e}"),
                    });
                }
                return;
            }
        }
    }
}

/// Samples the next token of every live sequence from the last decode's logits: on this thread
/// with `llama_sampler_sample` when one thread is asked for, else spread over scoped threads
/// (each sequence has its own sampler, so the tokens are the same either way).
fn sample_step(ctx: &LlamaContext<'_>, seqs: &mut [Seq]) {
    let mut live: Vec<&mut Seq> = seqs.iter_mut().filter(|s| s.live).collect();
    let threads = sample_threads(live.len());
    if threads <= 1 {
        for seq in live {
            seq.next = seq.sampler.sample(ctx, seq.logits_at);
        }
        return;
    }
    let logits: Vec<&[f32]> = live.iter().map(|s| ctx.get_logits_ith(s.logits_at)).collect();
    let per = live.len().div_ceil(threads);
    std::thread::scope(|scope| {
        for (chunk, logits) in live.chunks_mut(per).zip(logits.chunks(per)) {
            scope.spawn(move || {
                for (seq, l) in chunk.iter_mut().zip(logits) {
                    seq.next = sample_logits(&mut seq.sampler, l, &mut seq.cands);
                }
            });
        }
    });
}

/// Starts a llama.cpp backend on its own thread and waits for the model to load.
pub fn spawn(opts: LlamaOptions) -> Result<super::worker::WorkerBackend, BackendError> {
    let limits = opts.limits;
    let model_path: &Path = &opts.path;
    tracing::info!(path = %model_path.display(), threads = opts.threads, "loading GGUF");
    super::worker::WorkerBackend::spawn("llama.cpp", limits, move || LlamaEngine::load(opts))
}
