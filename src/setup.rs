//! From command-line flags to a ready engine: config, probes, output path, model file, backend.
//! Shared by the headless run and the TUI so both start from exactly the same settings.

mod remote;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::backend::{Backend, Limits, Sampling};
use crate::cli::{BackendArg, DistillArgs};
use crate::config::{self, BackendChoice, Flags, Resolved};
use crate::distill::DistillConfig;
use crate::probes::{self, Probe};
use crate::scorer::{Mode, Scorer, Thresholds};

mod checks;
mod session;

pub use checks::CheckError;
pub use session::open_store;

pub use remote::Remote;

/// Which engine a run uses, after `--backend` and ai.yaml are reconciled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Llama,
    Mlx,
    OpenAi,
}

impl BackendKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Llama => "llama.cpp",
            Self::Mlx => "mlx",
            Self::OpenAi => "openai",
        }
    }
}

pub struct Prepared {
    pub resolved: Resolved,
    pub probes: Vec<Probe>,
    pub phase: Option<i64>,
    pub distill: DistillConfig,
    pub backend: BackendKind,
    pub model_name: String,
    pub limits: Limits,
    pub threads: u32,
    pub scorer: Arc<Scorer>,
    pub notes: Vec<String>,
    /// The openai backend's endpoints and settings (only for that backend).
    pub remote: Option<Remote>,
    /// `--probes` as given: part of the session key.
    pub probes_spec: String,
    /// The session store; `None` with `--no-store`.
    pub store: Option<PathBuf>,
    /// `--fresh`: a new session even if this command line has one.
    pub fresh: bool,
    architecture: std::sync::OnceLock<String>,
    /// `--gpu-layers` as given (`None`: all layers when llama.cpp has a GPU backend).
    pub gpu_layers: Option<u32>,
    /// `--sampler` as given.
    pub sampler: crate::cli::SamplerArg,
    /// `--kv` as given.
    pub kv: crate::cli::KvArg,
    /// `--lanes` as given (0 = auto).
    pub lanes: u32,
    /// MLX: `--wired-limit` in bytes (0 = leave it) and `--clear-cache-every`.
    pub wired_bytes: u64,
    pub clear_cache_every: u32,
    /// Headless: the JSONL of memory readings per decided probe (`--memory-log`).
    pub memory_log: Option<PathBuf>,
    /// Where the model runs, as [`start_backend`] found it ("cpu", "CUDA0 (NVIDIA H100…), 18 layers").
    device: std::sync::OnceLock<String>,
    /// Opened by [`open_store`], handed to the engine by [`engine`].
    session: std::sync::Mutex<Option<crate::store::Opened>>,
    resume: std::sync::OnceLock<crate::store::ResumeReport>,
}

impl Prepared {
    pub fn architecture(&self) -> &str {
        self.architecture.get().map_or("unknown", String::as_str)
    }

    pub fn set_architecture(&self, arch: &str) {
        let _ = self.architecture.set(arch.to_owned());
    }

    /// Where the model runs ("cpu", or the GPU and the layers offloaded); "unknown" before
    /// [`start_backend`].
    pub fn device(&self) -> &str {
        self.device.get().map_or("unknown", String::as_str)
    }

    /// What the session store found and did when [`engine`] started the run (`None` before
    /// that, and with `--no-store`).
    pub fn resume_report(&self) -> Option<&crate::store::ResumeReport> {
        self.resume.get()
    }

    /// LEM's dry-run block.
    pub fn plan(&self) -> String {
        config::dry_run_text(&self.resolved, &self.probes, &self.distill.output, self.backend.label())
    }
}

pub fn flags_of(args: &DistillArgs) -> Flags {
    Flags {
        model: args.model.clone(),
        probes: args.probes.clone(),
        output: args.output.clone(),
        lesson: args.lesson,
        min_score: args.min_score,
        runs: args.runs,
        root: args.root.clone(),
        cache_limit_gb: args.cache_limit,
        mem_limit_gb: args.mem_limit,
    }
}

fn choose_backend(arg: BackendArg, resolved: &Resolved, notes: &mut Vec<String>) -> BackendKind {
    let mlx_built = cfg!(mlx);
    match arg {
        BackendArg::Llama => BackendKind::Llama,
        BackendArg::Mlx => BackendKind::Mlx,
        BackendArg::Openai => BackendKind::OpenAi,
        BackendArg::Auto => match resolved.ai.backend_kind() {
            BackendChoice::Mlx if mlx_built => BackendKind::Mlx,
            BackendChoice::Mlx => {
                notes.push(format!(
                    "ai.yaml asks for backend `{}`, which needs MLX (Apple Silicon); using llama.cpp",
                    resolved.ai.backend
                ));
                BackendKind::Llama
            }
            BackendChoice::OpenAi => BackendKind::OpenAi,
            BackendChoice::Llama => BackendKind::Llama,
            BackendChoice::Unknown(other) => {
                if !other.is_empty() {
                    notes.push(format!("ai.yaml backend `{other}` is not one lem-tui knows; using llama.cpp"));
                }
                BackendKind::Llama
            }
        },
    }
}

pub fn prepare(args: &DistillArgs) -> anyhow::Result<Prepared> {
    // From here on `--root` is where the configuration is read: the project found at or above
    // it, or the built-in files. The session store stays keyed by the project.
    let located = config::builtin::locate(&args.root)?;
    let args = &DistillArgs { root: located.root.clone(), ..args.clone() };
    let flags = flags_of(args);
    let resolved = config::resolve(&flags).map_err(|e| builtin_hint(e, &located))?;
    let mut notes: Vec<String> = located.note().into_iter().collect();
    notes.extend(resolved.warnings.iter().map(ToString::to_string));
    let set = probes::load_probes(&args.root, &args.probes)?;
    notes.extend(set.warnings.iter().map(ToString::to_string));
    checks::probes(&set, &args.probes)?;
    // A probe file keys its session by where it is, however the path was written.
    let probes_spec = if set.files == [PathBuf::from(&args.probes)] {
        crate::store::canonical(Path::new(&args.probes)).display().to_string()
    } else {
        args.probes.clone()
    };
    let output = config::output_path(&resolved, &flags, set.phase);
    checks::output(&output)?;
    // Naming an endpoint is asking for the HTTP backend.
    let backend = if args.backend == BackendArg::Auto && !args.endpoints.is_empty() {
        BackendKind::OpenAi
    } else {
        choose_backend(args.backend, &resolved, &mut notes)
    };
    if backend != BackendKind::OpenAi && !args.endpoints.is_empty() {
        notes.push(format!("--endpoint is ignored by the {} backend", backend.label()));
    }
    let g = &resolved.generate;
    let max_tokens = if args.max_tokens > 0 { args.max_tokens } else { u32::try_from(g.max_tokens).unwrap_or(0) };
    #[allow(clippy::cast_possible_truncation)]
    let sampling = Sampling {
        // go-inference's default when max_tokens resolves to 0.
        max_tokens: if max_tokens == 0 { 256 } else { max_tokens },
        temperature: g.temperature as f32,
        top_p: g.top_p as f32,
        top_k: i32::try_from(g.top_k).unwrap_or(0),
        repeat_penalty: g.repeat_penalty as f32,
        min_p: g.min_p as f32,
        seed: args.seed.unwrap_or_else(random_seed),
        ignore_eos: false,
    };
    checks::settings(args, &resolved, &sampling)?;
    let distill = DistillConfig {
        runs: resolved.runs,
        min_chars: resolved.min_chars,
        min_score: resolved.min_score,
        thresholds: Thresholds { echo: resolved.echo_threshold, uplift: resolved.uplift_threshold },
        sampling,
        kernel: resolved.kernel.as_ref().map(|k| k.text.clone()),
        signature: resolved.signature.as_ref().map(|k| k.text.clone()),
        sequential: args.sequential,
        probes_in_flight: args.probes_in_flight,
        output,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1)));
    let limits = Limits::from_gb(resolved.cache_limit_gb, resolved.memory_limit_gb);
    let model_name = resolved.model.name.clone();
    let remote = match backend {
        BackendKind::OpenAi => Some(remote::plan(args, &resolved, limits)?),
        _ => None,
    };
    Ok(Prepared {
        remote,
        probes: set.probes,
        phase: set.phase,
        distill,
        backend,
        model_name,
        limits,
        threads,
        scorer: Arc::new(Scorer::new(Mode::Cold)),
        notes,
        resolved,
        probes_spec,
        store: (!args.no_store).then(|| crate::store::store_path(&located.project, args.store.as_deref())),
        fresh: args.fresh,
        architecture: std::sync::OnceLock::new(),
        gpu_layers: args.gpu_layers,
        sampler: args.sampler,
        kv: args.kv,
        lanes: args.lanes,
        wired_bytes: args.wired_limit.saturating_mul(crate::backend::memory::GIB),
        clear_cache_every: args.clear_cache_every,
        memory_log: args.memory_log.clone(),
        device: std::sync::OnceLock::new(),
        session: std::sync::Mutex::new(None),
        resume: std::sync::OnceLock::new(),
    })
}

/// A config error about the built-in files says how to get files of one's own.
fn builtin_hint(e: config::ConfigError, located: &config::builtin::Located) -> anyhow::Error {
    if !located.builtin {
        return match e {
            config::ConfigError::Read { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                anyhow::anyhow!(
                    "cannot read {}: {source}; `lem-tui init {}` adds the missing default files",
                    path.display(),
                    located.root.display()
                )
            }
            other => other.into(),
        };
    }
    match e {
        config::ConfigError::ModelNotFound { model, available, .. } => anyhow::anyhow!(
            "--model {model}: the built-in configuration has {} (no .core/ai/ in {} or its parents);              run `lem-tui init` and add .core/ai/models/{model}.yaml",
            available.join(", "),
            located.project.display()
        ),
        other => other.into(),
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The GGUF a llama.cpp run loads: `paths.gguf`, else the fetched file, else `paths.base` if it
/// is a GGUF file.
pub fn gguf_path(p: &Prepared, say: &mut dyn FnMut(&str)) -> anyhow::Result<PathBuf> {
    let model = &p.resolved.model;
    let root = &p.resolved.root;
    let local = |s: &str| -> Option<PathBuf> {
        if s.is_empty() {
            return None;
        }
        let direct = PathBuf::from(s);
        if direct.exists() {
            return Some(direct);
        }
        let under_root = root.join(s);
        under_root.exists().then_some(under_root)
    };
    if let Some(g) = model.paths.gguf.as_deref().filter(|g| !g.is_empty()) {
        return local(g).with_context(|| format!("model {}: paths.gguf {g} does not exist", p.resolved.model_spec));
    }
    if let Some(fetch) = &model.fetch {
        return crate::models::ensure(fetch, say).map_err(Into::into);
    }
    if let Some(base) = local(&model.paths.base) {
        if base.is_file() && has_gguf_magic(&base) {
            return Ok(base);
        }
    }
    bail!(
        "model {} has no GGUF for llama.cpp: set paths.gguf (or a fetch section) in {}",
        p.resolved.model_spec,
        root.join(".core/ai/models").join(format!("{}.yaml", p.resolved.model_spec)).display()
    )
}

fn has_gguf_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == b"GGUF"
}

/// Loads the model on its backend thread.
pub fn start_backend(p: &Prepared, say: &mut dyn FnMut(&str)) -> anyhow::Result<Arc<dyn Backend>> {
    match p.backend {
        BackendKind::Llama => start_llama(p, say),
        BackendKind::Mlx => start_mlx(p, say),
        BackendKind::OpenAi => start_openai(p, say),
    }
}

fn start_openai(p: &Prepared, say: &mut dyn FnMut(&str)) -> anyhow::Result<Arc<dyn Backend>> {
    let plan = p.remote.as_ref().context("openai backend without endpoints")?;
    let opts = remote::with_key(plan)?;
    let urls: Vec<String> = opts.endpoints.iter().map(|e| e.url.clone()).collect();
    say(&format!("connecting to {}", urls.join(", ")));
    let backend = crate::backend::openai::connect(opts)?;
    p.set_architecture(backend.model());
    let down: Vec<String> = crate::backend::Backend::endpoints(&backend)
        .into_iter()
        .filter(|e| !e.up)
        .map(|e| format!("{} ({})", e.url, e.last_error.unwrap_or_default()))
        .collect();
    if !down.is_empty() {
        say(&format!("warning: not answering, retried in the background: {}", down.join(", ")));
    }
    say(&format!("model: {} via {} endpoint(s)", backend.model(), urls.len()));
    Ok(Arc::new(backend))
}

#[cfg(feature = "llama")]
fn start_llama(p: &Prepared, say: &mut dyn FnMut(&str)) -> anyhow::Result<Arc<dyn Backend>> {
    use crate::backend::llama::{KvLayout, LlamaOptions, SamplerMode, default_lanes, gpu_devices, spawn};
    let path = gguf_path(p, say)?;
    // What llama.cpp can offload to: a CUDA build (the `cuda` feature, or the `llama-dynamic`
    // binary run on a CUDA build of the shared libraries) lists its GPUs here.
    let gpus = gpu_devices();
    let template = p.resolved.model.template;
    let fallback = template
        .and_then(crate::config::ChatTemplate::llama_name)
        .map(str::to_owned)
        .or_else(|| family_template(&p.resolved.model.family));
    let gpu_layers = p.gpu_layers.unwrap_or(if gpus.is_empty() { 0 } else { 999 });
    let sampler = match p.sampler {
        crate::cli::SamplerArg::Backend => SamplerMode::Backend,
        crate::cli::SamplerArg::Cpu => SamplerMode::Cpu,
        crate::cli::SamplerArg::CpuFull => SamplerMode::CpuFull,
        // The shortlisted host chain beat the graph's samplers on an H200 at N = 1, 8 and 32.
        crate::cli::SamplerArg::Auto => SamplerMode::Cpu,
    };
    let kv = match p.kv {
        crate::cli::KvArg::Unified => KvLayout::Unified,
        crate::cli::KvArg::Split => KvLayout::Split,
        // A stream per candidate keeps each step's attention and mask O(N) instead of O(N²).
        crate::cli::KvArg::Auto if sampler.on_host() => KvLayout::Split,
        crate::cli::KvArg::Auto => KvLayout::Unified,
    };
    let on_gpu = gpu_layers > 0 && !gpus.is_empty();
    let lanes = match p.lanes {
        0 => default_lanes(on_gpu, std::fs::metadata(&path).map_or(u64::MAX, |m| m.len())),
        n => n,
    };
    let opts = LlamaOptions {
        path: path.clone(),
        threads: p.threads,
        force_template: template.is_some_and(|t| t != crate::config::ChatTemplate::Embedded),
        fallback_template: fallback,
        gpu_layers,
        sampler,
        kv,
        lanes,
        limits: p.limits,
    };
    say(&format!("loading model: {}", path.display()));
    let backend = spawn(opts)?;
    let info = crate::backend::Backend::info(&backend);
    p.set_architecture(&info.architecture);
    let device = match gpus.first() {
        Some(gpu) if gpu_layers > 0 => format!("{gpu}, {} of {} layers", gpu_layers.min(info.layers), info.layers),
        _ => "cpu".to_owned(),
    };
    let lanes = match lanes {
        1 => String::new(),
        n => format!(", {n} lanes"),
    };
    let device = format!("{device}, {} sampler, {} KV{lanes}", sampler.name(), kv.name());
    say(&format!("model loaded: {} {}-layer ({} template) on {device}", info.architecture, info.layers, info.template));
    let _ = p.device.set(device);
    Ok(Arc::new(backend))
}

/// The MLX model folder: `paths.base` (LEM's own key), absolute or under the project root.
#[cfg_attr(not(mlx), allow(dead_code))]
pub(crate) fn mlx_dir(p: &Prepared) -> anyhow::Result<PathBuf> {
    let base = &p.resolved.model.paths.base;
    let file = p.resolved.root.join(".core/ai/models").join(format!("{}.yaml", p.resolved.model_spec));
    if base.is_empty() {
        bail!("model {}: set paths.base to an MLX model folder in {}", p.resolved.model_spec, file.display());
    }
    let dir = [PathBuf::from(base), p.resolved.root.join(base)].into_iter().find(|d| d.join("config.json").is_file());
    dir.with_context(|| {
        format!(
            "model {}: paths.base {base} is not an MLX model folder (config.json, *.safetensors, tokenizer.json), \
             set in {}",
            p.resolved.model_spec,
            file.display()
        )
    })
}

#[cfg(mlx)]
fn start_mlx(p: &Prepared, say: &mut dyn FnMut(&str)) -> anyhow::Result<Arc<dyn Backend>> {
    use crate::backend::mlx::{MlxOptions, spawn};
    let dir = mlx_dir(p)?;
    let mut opts = MlxOptions::new(&dir);
    opts.limits = p.limits;
    opts.wired_bytes = p.wired_bytes;
    opts.clear_cache_every = p.clear_cache_every;
    say(&format!("loading MLX model: {}", dir.display()));
    let backend = spawn(opts)?;
    let info = crate::backend::Backend::info(&backend);
    for w in &info.warnings {
        say(&format!("warning: {w}"));
    }
    p.set_architecture(&info.architecture);
    let dev = crate::backend::mlx::alloc::device();
    let device = match (dev.gpu, cfg!(target_os = "macos")) {
        (true, true) => format!("metal ({})", dev.name),
        (true, false) => format!("{} (mlx cuda)", dev.name),
        (false, _) => "cpu (mlx)".to_owned(),
    };
    say(&format!("model loaded: {} {}-layer ({} template) on {device}", info.architecture, info.layers, info.template));
    let _ = p.device.set(device);
    Ok(Arc::new(backend))
}

#[cfg(not(mlx))]
fn start_mlx(_: &Prepared, _: &mut dyn FnMut(&str)) -> anyhow::Result<Arc<dyn Backend>> {
    bail!(crate::backend::BackendError::NotBuilt("MLX"))
}

#[cfg(not(feature = "llama"))]
fn start_llama(_: &Prepared, _: &mut dyn FnMut(&str)) -> anyhow::Result<Arc<dyn Backend>> {
    bail!(crate::backend::BackendError::NotBuilt("llama.cpp"))
}

/// llama.cpp template names for families whose GGUFs may lack one.
#[cfg_attr(not(feature = "llama"), allow(dead_code))]
fn family_template(family: &str) -> Option<String> {
    match family {
        "gemma" | "gemma2" | "gemma3" | "gemma3_text" => Some("gemma".into()),
        "llama" | "llama3" => Some("llama3".into()),
        "qwen2" | "qwen3" | "smollm2" => Some("chatml".into()),
        _ => None,
    }
}

/// The engine for a prepared run. The headless run and the TUI both start here, so they share
/// settings, journal and resume state: the session store is opened (if [`open_store`] has not
/// already), the run recorded, the lesson file reconciled, and [`Prepared::resume_report`] set.
pub fn engine(
    p: &Prepared,
    backend: Arc<dyn Backend>,
    mode: crate::distill::CurationMode,
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<crate::distill::Engine> {
    let (journal, start) = session::journal(p, &backend, mode, say)?;
    let decided_order = p.resume_report().map(|r| r.decided_order.clone()).unwrap_or_default();
    Ok(crate::distill::Engine {
        cfg: p.distill.clone(),
        backend,
        scorer: Arc::clone(&p.scorer),
        probes: p.probes.clone(),
        mode,
        journal,
        start,
        decided_order,
        memory: None,
    })
}
