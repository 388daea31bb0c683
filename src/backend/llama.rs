//! llama.cpp in process, through `llama-cpp-2` (and its raw bindings where it has no wrapper:
//! [`raw`]).
//!
//! The model and its context live on one worker thread ([`super::worker`]). A request with `n`
//! candidates is answered as one batch ([`batched`]): one decode per step carries a token of
//! every live sequence, and each sequence is sampled by its own seeded chain ([`chain`]), on the
//! host or inside the decode graph ([`SamplerMode`]).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend as GgmlBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::memory::MIB;
use super::worker::{Engine, Job, WorkerShared};
use super::{BackendError, GenRequest, JobEvent, Limits, ModelInfo};

mod batched;
mod chain;
mod raw;
mod shortlist;

pub use chain::SamplerMode;

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
    /// Where candidates are sampled: from logits rows on the host, or inside the decode graph.
    pub sampler: SamplerMode,
    /// How a batch's sequences share the KV cache.
    pub kv: KvLayout,
    /// Contexts a batch's sequences are dealt out to, each decoded on its own thread (1: one).
    pub lanes: u32,
    pub limits: Limits,
}

/// How a batch's sequences lie in llama.cpp's KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvLayout {
    /// One cache the sequences share: a prompt's cells are kept once for all its candidates, but
    /// every token's attention and its mask span every sequence's cells, so a step costs
    /// O(N² × length) for N candidates.
    #[default]
    Unified,
    /// A stream of cells per sequence: the prompt is copied to each candidate's stream, and a
    /// token attends only to its own, O(N × length) per step.
    Split,
}

impl KvLayout {
    pub fn name(self) -> &'static str {
        match self {
            Self::Unified => "unified",
            Self::Split => "split",
        }
    }

    /// The context's cells for `n` sequences of `per_seq` cells each: all of them share one
    /// cache when unified, each has its own stream when split.
    fn cells(self, per_seq: u64, n: u32) -> u64 {
        match self {
            Self::Unified => per_seq,
            Self::Split => per_seq * u64::from(n),
        }
    }
}

/// Lanes when none are asked for, on a GPU: four for a GGUF of up to 640 MiB, two up to 4 GiB,
/// else one; on a CPU one, since lanes would only share the same cores. A small model's step is
/// short on the GPU and long on the host (queueing the graph, sampling each row), so more lanes
/// overlap more of it. On an H200 (assets/bench/h200-kv-lanes.md, h200-gemma3-270m-bound.md):
/// Gemma 3 270M at N = 32 gained most from four (Q4_K_M and bf16, 253 and 543 MB); 1B and 4B
/// (Q4_K_M, 0.8 and 2.5 GB) from two; 12B and 27B lost 5% with two, their steps bound by the GPU.
pub fn default_lanes(on_gpu: bool, model_bytes: u64) -> u32 {
    match model_bytes {
        _ if !on_gpu => 1,
        b if b <= 640 << 20 => 4,
        b if b <= 4 << 30 => 2,
        _ => 1,
    }
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
    ctx: raw::Context<'m>,
    /// Cells each sequence can hold: all of them when unified, its stream's when split.
    per_seq: u64,
    n_seq: u32,
    kv: KvLayout,
}

/// One kept context per lane of a batch (`--lanes`).
type Kept<'m> = Vec<KeptContext<'m>>;

self_cell::self_cell!(
    /// The model and the context that borrows it, in one place on the worker thread.
    struct ModelAndContext {
        owner: LlamaModel,
        #[covariant]
        dependent: Kept,
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
        let cell = ModelAndContext::new(model, |_| Vec::new());
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

impl Engine for LlamaEngine {
    fn generate(
        &mut self,
        req: GenRequest,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
        shared: &WorkerShared,
    ) {
        let job = [Job { req, events: events.clone(), cancel: cancel.clone() }];
        let cfg = &self.cfg;
        self.cell.with_dependent_mut(|model, kept| cfg.generate(model, kept, &job, shared));
    }

    fn batch_sequences(&self) -> u32 {
        // llama.cpp's limit on sequences in one context (LLAMA_MAX_SEQ).
        256
    }

    fn generate_batch(&mut self, jobs: Vec<Job>, shared: &WorkerShared) {
        let cfg = &self.cfg;
        self.cell.with_dependent_mut(|model, kept| cfg.generate(model, kept, &jobs, shared));
    }

    fn set_limits(&mut self, limits: Limits) -> Result<(), BackendError> {
        // llama.cpp has no allocator limit to set: lem-tui enforces `memory_limit` itself (at
        // load, per request, and in the engine's RSS check). A cache limit has no meaning here.
        // A tighter limit frees the kept context; the next request sizes a new one against it.
        let old = self.cfg.opts.limits.memory_bytes;
        if limits.memory_bytes > 0 && (old == 0 || limits.memory_bytes < old) {
            self.cell.with_dependent_mut(|_, kept| kept.clear());
        }
        self.cfg.opts.limits = limits;
        Ok(())
    }

    fn started(&mut self, shared: &WorkerShared) {
        let offloaded = self.cfg.opts.gpu_layers;
        if offloaded == 0 || gpu_memory().is_none() {
            // On the CPU the gauge and the limit go by the RSS, as they always have.
            return;
        }
        let layers = self.cell.borrow_owner().n_layer();
        shared.set_gpu_probe(super::worker::GpuProbe { read: Box::new(gpu_memory), offloaded, layers });
    }
}

/// Free and total bytes over the GPUs llama.cpp can offload to (it spreads layers over all of
/// them); `None` without one. The device answers (CUDA: `cudaMemGetInfo`) from any thread.
fn gpu_memory() -> Option<(u64, u64)> {
    use llama_cpp_2::LlamaBackendDeviceType as Kind;
    ggml().ok()?;
    let gpus: Vec<_> = llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| matches!(d.device_type, Kind::Gpu | Kind::IntegratedGpu))
        .collect();
    if gpus.is_empty() {
        return None;
    }
    let sum = |f: fn(&llama_cpp_2::LlamaBackendDevice) -> usize| gpus.iter().map(|d| f(d) as u64).sum::<u64>();
    Some((sum(|d| d.memory_free), sum(|d| d.memory_total)))
}

/// Starts a llama.cpp backend on its own thread and waits for the model to load.
pub fn spawn(opts: LlamaOptions) -> Result<super::worker::WorkerBackend, BackendError> {
    let limits = opts.limits;
    let model_path: &Path = &opts.path;
    tracing::info!(path = %model_path.display(), threads = opts.threads, "loading GGUF");
    super::worker::WorkerBackend::spawn("llama.cpp", limits, move || LlamaEngine::load(opts))
}

#[cfg(test)]
mod tests {
    use super::default_lanes;

    #[test]
    fn lanes_by_model_size_and_only_on_a_gpu() {
        assert_eq!(default_lanes(true, 253_000_000), 4, "270M Q4_K_M");
        assert_eq!(default_lanes(true, 543_000_000), 4, "270M bf16");
        assert_eq!(default_lanes(true, 806_000_000), 2, "1B Q4_K_M");
        assert_eq!(default_lanes(true, 2_490_000_000), 2, "4B Q4_K_M");
        assert_eq!(default_lanes(true, 7_300_000_000), 1, "12B Q4_K_M");
        assert_eq!(default_lanes(false, 250_000_000), 1, "on the CPU");
    }
}
