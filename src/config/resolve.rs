use std::fs;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, ConfigWarning, ConfigWarningKind};
use super::load::{load_ai_config, load_model_config};
use super::schema::{AiConfig, GenerateConfig, ModelConfig};

/// `lem distill`'s flags that affect configuration, with LEM's defaults (see [`Flags::default`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Flags {
    /// `<family>/<size>` under `.core/ai/models/`.
    pub model: String,
    /// Probe set name from probes.yaml, or a path to a JSON array file.
    pub probes: String,
    /// Used verbatim when set.
    pub output: Option<String>,
    /// Negative = use the probe set's phase.
    pub lesson: i64,
    /// 0 = use `scorer.min_score`.
    pub min_score: f64,
    /// 0 = use `distill.runs`.
    pub runs: i64,
    pub root: PathBuf,
    /// GB; 0 = use `distill.cache_limit`.
    pub cache_limit_gb: i64,
    /// GB; 0 = use `distill.memory_limit`.
    pub mem_limit_gb: i64,
}

impl Default for Flags {
    fn default() -> Self {
        Self {
            model: "gemma3/27b".into(),
            probes: String::new(),
            output: None,
            lesson: -1,
            min_score: 0.0,
            runs: 0,
            root: PathBuf::from("."),
            cache_limit_gb: 0,
            mem_limit_gb: 0,
        }
    }
}

/// A text file named by the model config (`kernel:` or `signature:`), already `TrimSpace`d.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub text: String,
    /// The path actually read (see [`resolve`] for the fallback).
    pub path: PathBuf,
}

/// Everything `lem distill` decides before loading probes.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub root: PathBuf,
    pub model_spec: String,
    pub ai: AiConfig,
    pub ai_path: PathBuf,
    pub model: ModelConfig,
    pub model_path: PathBuf,
    pub generate: GenerateConfig,
    pub min_score: f64,
    pub runs: u32,
    pub min_chars: usize,
    pub cache_limit_gb: u64,
    pub memory_limit_gb: u64,
    pub echo_threshold: f64,
    pub uplift_threshold: f64,
    pub kernel: Option<Kernel>,
    pub signature: Option<Kernel>,
    pub warnings: Vec<ConfigWarning>,
}

/// LEM's `MergeGenerate`: start from ai.yaml, each model value > 0 wins, so a model file cannot
/// force a value back to 0.
#[must_use]
pub fn merge(global: &GenerateConfig, model: &GenerateConfig) -> GenerateConfig {
    let mut m = *global;
    if model.max_tokens > 0 {
        m.max_tokens = model.max_tokens;
    }
    if model.temperature > 0.0 {
        m.temperature = model.temperature;
    }
    if model.top_p > 0.0 {
        m.top_p = model.top_p;
    }
    if model.top_k > 0 {
        m.top_k = model.top_k;
    }
    if model.repeat_penalty > 0.0 {
        m.repeat_penalty = model.repeat_penalty;
    }
    if model.min_p > 0.0 {
        m.min_p = model.min_p;
    }
    m
}

/// Loads ai.yaml and the model file under `<root>/.core/ai/` and applies LEM's merge rules
/// (spec §1.3), then reads the kernel and signature.
///
/// Kernel and signature paths are tried as written first, i.e. relative to the process working
/// directory as LEM does; if that file does not exist, `<root>/<path>` is tried, so `--root`
/// works from any directory. Unlike LEM, negative flags and values that make the run
/// meaningless (`runs` resolving to 0, negative limits or `min_chars`) are errors, and an empty
/// `kernel:` means "no kernel" rather than a failed read.
pub fn resolve(flags: &Flags) -> Result<Resolved, ConfigError> {
    check_flags(flags)?;
    let ai = load_ai_config(&flags.root)?;
    let model = load_model_config(&flags.root, &flags.model)?;
    let mut warnings = ai.warnings;
    warnings.extend(model.warnings);
    let (ai_cfg, ai_path) = (ai.config, ai.path);
    let (model_cfg, model_path) = (model.config, model.path);

    let invalid =
        |field: &str, message: String| ConfigError::Invalid { path: ai_path.clone(), field: field.to_owned(), message };
    let non_negative =
        |field: &str, v: i64| u64::try_from(v).map_err(|_| invalid(field, format!("must not be negative (got {v})")));

    let runs = if flags.runs != 0 { flags.runs } else { ai_cfg.distill.runs };
    let runs = u32::try_from(runs)
        .map_err(|_| invalid("distill.runs", format!("must be between 1 and {} (got {runs})", u32::MAX)))?;
    if runs == 0 {
        return Err(invalid(
            "distill.runs",
            "is 0 (or missing) and --runs was not given, so nothing would be generated".into(),
        ));
    }
    let min_chars = non_negative("distill.min_chars", ai_cfg.distill.min_chars)?;
    let mut cache_limit_gb = non_negative("distill.cache_limit", ai_cfg.distill.cache_limit)?;
    if flags.cache_limit_gb > 0 {
        cache_limit_gb = flags.cache_limit_gb.unsigned_abs();
    }
    let mut memory_limit_gb = non_negative("distill.memory_limit", ai_cfg.distill.memory_limit)?;
    if flags.mem_limit_gb > 0 {
        memory_limit_gb = flags.mem_limit_gb.unsigned_abs();
    }
    // LEM compares with 0 exactly, so a literal `--min-score 0` cannot be requested.
    #[allow(clippy::float_cmp)]
    let min_score = if flags.min_score == 0.0 { ai_cfg.scorer.min_score } else { flags.min_score };

    let kernel = read_text(&flags.root, "kernel", &model_cfg.kernel, &model_path)?;
    if let Some(k) = &kernel {
        tracing::info!("kernel: {} chars from {}", k.text.len(), k.path.display());
        if k.text.is_empty() {
            let w = ConfigWarning {
                path: model_path.clone(),
                key: "kernel".into(),
                kind: ConfigWarningKind::EmptyKernel(k.path.clone()),
            };
            tracing::warn!("{w}");
            warnings.push(w);
        }
    }
    let signature = read_text(&flags.root, "signature", &model_cfg.signature, &model_path)?;
    if let Some(s) = &signature {
        tracing::info!("signature: {} chars from {}", s.text.len(), s.path.display());
    }

    Ok(Resolved {
        root: flags.root.clone(),
        model_spec: flags.model.clone(),
        generate: merge(&ai_cfg.generate, &model_cfg.generate),
        min_score,
        runs,
        min_chars: usize::try_from(min_chars).unwrap_or(usize::MAX),
        cache_limit_gb,
        memory_limit_gb,
        echo_threshold: ai_cfg.scorer.sycophancy_echo,
        uplift_threshold: ai_cfg.scorer.sycophancy_uplift,
        kernel,
        signature,
        warnings,
        ai: ai_cfg,
        ai_path,
        model: model_cfg,
        model_path,
    })
}

fn check_flags(flags: &Flags) -> Result<(), ConfigError> {
    let negative =
        |flag, value: String| ConfigError::Flag { flag, message: format!("must not be negative (got {value})") };
    if flags.model.trim().is_empty() {
        return Err(ConfigError::Flag {
            flag: "model",
            message: "is empty; expected <family>/<size>, e.g. gemma3/4b".into(),
        });
    }
    if flags.min_score.is_nan() {
        return Err(ConfigError::Flag { flag: "min-score", message: "is not a number".into() });
    }
    if flags.min_score < 0.0 {
        return Err(negative("min-score", flags.min_score.to_string()));
    }
    for (flag, v) in [("runs", flags.runs), ("cache-limit", flags.cache_limit_gb), ("mem-limit", flags.mem_limit_gb)] {
        if v < 0 {
            return Err(negative(flag, v.to_string()));
        }
    }
    Ok(())
}

/// Reads `kernel:`/`signature:`; an empty value means the model has none.
fn read_text(root: &Path, field: &'static str, value: &str, config: &Path) -> Result<Option<Kernel>, ConfigError> {
    if value.is_empty() {
        return Ok(None);
    }
    let path = find_file(root, value).ok_or_else(|| ConfigError::MissingFile {
        field,
        value: value.to_owned(),
        config: config.to_owned(),
        tried: candidates(root, value),
    })?;
    let bytes = fs::read(&path).map_err(|source| ConfigError::Read { path: path.clone(), source })?;
    // Go treats file contents as bytes; a stray invalid sequence must not make the run fail.
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    Ok(Some(Kernel { text, path }))
}

fn candidates(root: &Path, value: &str) -> Vec<PathBuf> {
    let direct = PathBuf::from(value);
    let mut out = vec![direct.clone()];
    if direct.is_relative() {
        out.push(root.join(value));
    }
    out
}

/// The first of `value` (cwd-relative, LEM's rule) and `<root>/value` that exists.
fn find_file(root: &Path, value: &str) -> Option<PathBuf> {
    candidates(root, value).into_iter().find(|p| p.exists())
}

/// Where the lesson JSONL goes (spec §1.5). `phase` is the probe set's (`None` for a file or a
/// null phase, which LEM treats as 0). A relative result is relative to the working directory,
/// as in LEM; `--root` does not apply to `training:`.
#[must_use]
pub fn output_path(resolved: &Resolved, flags: &Flags, phase: Option<i64>) -> PathBuf {
    if let Some(out) = flags.output.as_deref().filter(|s| !s.is_empty()) {
        return PathBuf::from(out);
    }
    let lesson = if flags.lesson >= 0 { flags.lesson } else { phase.unwrap_or(0) };
    // An empty entry would make the output path the training directory itself.
    let file = match resolved.model.lessons.get(&lesson) {
        Some(f) if !f.is_empty() => f.clone(),
        _ => format!("lesson-{lesson}.jsonl"),
    };
    Path::new(&resolved.model.training).join(file)
}
