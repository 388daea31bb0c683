//! Command-line definitions (clap). Flags of `distill` are LEM's, with lem-tui's additions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod review;
pub use review::ReviewArgs;

#[derive(Debug, Parser)]
#[command(
    name = "lem-tui",
    version,
    about = "A terminal workbench for curating LLM distillation data (LEM's `distill`, watched live)",
    long_about = "lem-tui runs LEM's distill loop — N candidates per probe, grammar v3 scoring, best-of-N, \
                  quality gate, lesson JSONL — on a local model (llama.cpp, MLX) or remote OpenAI-compatible \
                  engines. It reads LEM's own .core/ai configuration unchanged.\n\n\
                  With no subcommand it runs `distill` on the default model and the demo probes. Without a \
                  .core/ai/ in --root (the current folder) or its parents, the built-in configuration and \
                  demo probes are used; `lem-tui init` writes them out for editing.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub distill: DistillArgs,
    /// Log file (default: lem-tui.log in the XDG state directory).
    #[arg(long, global = true, value_name = "FILE", env = "LEM_TUI_LOG")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run LEM's distill loop: generate, score, pick the best of N, gate, append to the lesson file.
    Distill(DistillArgs),
    /// Score JSONL records {id, prompt, response} with grammar v3 (one JSON line out per record).
    Score(ScoreArgs),
    /// Fetch or list the models named by the model configs.
    Models(ModelsArgs),
    /// Curate an existing dataset: ingest and score JSONL files (lesson, SFT, prompt/completion, DPO)
    /// into the session store and open the workbench on them.
    Review(ReviewArgs),
    /// Write the session store's decisions as training data (lesson, SFT, DPO, KTO) with a manifest.
    Export(ExportArgs),
    /// Measure throughput against a peer (llama-cpp-python) on the same GGUF, side by side.
    Bench(BenchArgs),
    /// Write the built-in configuration (.core/ai/) and demo probes (assets/probes/) into a
    /// folder, to edit them.
    Init(InitArgs),
}

/// How llama.cpp lays a batch's sequences out in its KV cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum KvArg {
    /// `split` when candidates are sampled on the host, else `unified`.
    #[default]
    Auto,
    /// One cache all sequences share: a prompt's cells once, but every step's attention spans
    /// every sequence's cells.
    Unified,
    /// A stream per sequence: the prompt copied to each, each candidate attending to its own.
    Split,
}

#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// The folder to write into (created if needed).
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub distill: DistillArgs,
    /// Candidates per probe to measure (best-of-N), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,3,8")]
    pub n: Vec<u32>,
    /// How many probes of the set to use.
    #[arg(long, default_value_t = 3)]
    pub prompts: usize,
    /// Python interpreter for the peer (llama-cpp-python; mlx-lm for `--backend mlx`), or `none`.
    #[arg(long, default_value = "python3")]
    pub peer: String,
    /// The MLX peer's script (default: <root>/scripts/peer_mlx_lm.py).
    #[arg(long, value_name = "FILE")]
    pub peer_script: Option<PathBuf>,
    /// MLX: sampling modes to measure (greedy; sampled = LEM's temperature 0.8, top-k 40,
    /// top-p 0.95, repeat penalty 1.1).
    #[arg(long, value_delimiter = ',', default_value = "greedy,sampled")]
    pub modes: Vec<String>,
    /// MLX: greedy token ids of the first prompt compared with the peer's (0 = skip).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub ids: usize,
    /// Also write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// From ai.yaml's `backend` (metal → MLX where built, otherwise llama.cpp).
    Auto,
    /// llama.cpp in process (GGUF).
    Llama,
    /// MLX through mlx-rs (Apple Silicon).
    Mlx,
    /// An OpenAI-compatible HTTP server.
    Openai,
}

/// Where llama.cpp samples candidates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum SamplerArg {
    /// `cpu`, on a GPU too: the shortlist made the host chain faster than the graph's at
    /// N = 1, 8 and 32 on an H200 (assets/bench/h200-sampler-shortlist.md).
    #[default]
    Auto,
    /// In the decode graph (llama.cpp backend sampling): only token ids come back per step.
    Backend,
    /// From each candidate's logits row on the host, over the entries the chain's top-k can keep.
    Cpu,
    /// From each candidate's logits row on the host, over every entry (the reference chain).
    CpuFull,
}

#[derive(Debug, Clone, Args)]
pub struct DistillArgs {
    /// Model config under .core/ai/models/, as <family>/<size> (".yaml" is appended).
    #[arg(long, default_value = "smollm2/135m", value_name = "FAMILY/SIZE")]
    pub model: String,
    /// A probe set name from .core/ai/probes.yaml, or a path to a JSON array of {id, domain, prompt}.
    #[arg(long, default_value = "demo", value_name = "SET|FILE")]
    pub probes: String,
    /// Output JSONL (default: <model training dir>/<lesson file> from the model config).
    #[arg(long, value_name = "FILE")]
    pub output: Option<String>,
    /// Lesson number for output routing; negative means the probe set's phase.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    pub lesson: i64,
    /// Gate on the grammar v3 composite; 0 means ai.yaml's scorer.min_score.
    #[arg(long, default_value_t = 0.0, value_name = "SCORE")]
    pub min_score: f64,
    /// Generations per probe; 0 means ai.yaml's distill.runs.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub runs: i64,
    /// Print the plan and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Project root holding .core/ai/ and the probe files.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub root: PathBuf,
    /// Cache limit in GB (> 0 overrides distill.cache_limit; MLX's buffer cache).
    #[arg(long, default_value_t = 0, value_name = "GB")]
    pub cache_limit: i64,
    /// Memory limit in GB (> 0 overrides distill.memory_limit; 0 = no limit).
    #[arg(long, default_value_t = 0, value_name = "GB")]
    pub mem_limit: i64,
    /// MLX: Metal wired-memory limit in GB (0 = leave it).
    #[arg(long, default_value_t = 0, value_name = "GB")]
    pub wired_limit: u64,
    /// MLX: clear the buffer cache every N decode steps (mlx-lm: 256; 0 = between probes only).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub clear_cache_every: u32,
    /// Run without the screen: LEM's progress lines on stderr.
    #[arg(long)]
    pub headless: bool,
    /// Headless: append the backend's memory readings (MLX active / cache / peak, RSS) as one
    /// JSON line per decided probe to FILE.
    #[arg(long, value_name = "FILE")]
    pub memory_log: Option<PathBuf>,
    /// Who decides what is kept: review (the operator; the workbench's default) or auto (LEM's
    /// gate; the headless default).
    #[arg(long, value_enum, value_name = "MODE")]
    pub mode: Option<CurationArg>,
    /// Colour theme: dark, light, high-contrast, a theme in <config dir>/themes/, or a YAML file.
    #[arg(long, value_name = "NAME|FILE", env = "LEM_TUI_THEME")]
    pub theme: Option<String>,
    /// Inference backend.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    pub backend: BackendArg,
    /// Base sampling seed (candidate i of a probe uses seed + i); random when absent.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// CPU threads for inference (default: all cores).
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Generate a probe's candidates one after another, as LEM does, instead of as one batch.
    #[arg(long)]
    pub sequential: bool,
    /// Probes generated at once in auto mode (headless): their requests go out together, so an
    /// endpoint pool has N × runs candidates to spread over its servers, and an in-process
    /// llama.cpp model decodes all N × runs as one batch (MLX answers the requests one after
    /// another). Decisions and lesson lines keep probe order. Not with --sequential.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub probes_in_flight: u32,
    /// Model layers to offload to the GPU (llama.cpp); 0 keeps the model on the CPU. Default: all
    /// of them when llama.cpp has a GPU backend (a CUDA build), else 0.
    #[arg(long, value_name = "N")]
    pub gpu_layers: Option<u32>,
    /// Where llama.cpp samples the candidates: cpu (on the host, over the part of each row the
    /// chain's top-k can keep), cpu-full (on the host over the whole row: the reference),
    /// backend (inside the decode graph, so a GPU step returns N token ids instead of N logits
    /// rows), or auto (cpu).
    #[arg(long, value_enum, value_name = "WHERE", env = "LEM_TUI_SAMPLER", default_value_t = SamplerArg::Auto)]
    pub sampler: SamplerArg,
    /// How llama.cpp keeps a batch's sequences in its KV cache: unified (one cache they share:
    /// each prompt once, but each step attends over every candidate's cells), split (a stream
    /// per candidate, the prompt copied to each), or auto (split, unified with `--sampler backend`).
    #[arg(long, value_enum, value_name = "LAYOUT", env = "LEM_TUI_KV", default_value_t = KvArg::Auto)]
    pub kv: KvArg,
    /// Contexts llama.cpp decodes a batch's candidates in, each on its own thread, so that one
    /// lane's host work (queueing its graph, sampling its rows) overlaps another's turn on the
    /// GPU. 0 = auto: on a GPU 4 for a GGUF of up to 640 MiB, 2 up to 4 GiB, else 1.
    #[arg(long, value_name = "N", env = "LEM_TUI_LANES", default_value_t = 0)]
    pub lanes: u32,
    /// Override max_tokens from the configs (lem-tui extension; 0 = use config).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_tokens: u32,
    /// An OpenAI-compatible server (repeatable: candidates are spread over all of them).
    /// Replaces ai.yaml's api.endpoints and implies `--backend openai` unless one is named.
    #[arg(long = "endpoint", value_name = "URL", value_parser = endpoint_url)]
    pub endpoints: Vec<String>,
    /// The model name sent to the servers (default: ai.yaml's api.model, else the first one
    /// the server lists).
    #[arg(long, value_name = "NAME")]
    pub api_model: Option<String>,
    /// Requests in flight per endpoint (default: ai.yaml's api.concurrency, else 4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: Option<u32>,
    /// How long to wait for an endpoint to come back while none is up before stopping the run
    /// (exit code 75; the same command resumes it). Default: ai.yaml's api.endpoint_wait, else 90.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub endpoint_wait: Option<u32>,
    /// Session store (SQLite; default: one per project root in the XDG data dir).
    #[arg(long, value_name = "FILE", env = "LEM_TUI_STORE")]
    pub store: Option<PathBuf>,
    /// Start a new session even if this command line has one to resume.
    #[arg(long, conflicts_with = "no_store")]
    pub fresh: bool,
    /// Run without a session store, as LEM does: no resume, no dedup, no record of decisions.
    #[arg(long)]
    pub no_store: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// LEM's lesson JSONL, byte-compatible with `lem distill` (sandwiched user turn).
    Lesson,
    /// {"messages": [user, assistant]} for SFT (datasets, mlx-lm).
    Sft,
    /// {"prompt", "chosen", "rejected"} preference pairs (TRL's DPO columns).
    Dpo,
    /// {"prompt", "completion", "label"} (TRL's KTO columns).
    Kto,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[arg(value_enum)]
    pub format: ExportFormat,
    /// Output file; with --valid, a directory that gets train.jsonl, valid.jsonl and manifest.json.
    #[arg(long, short, value_name = "PATH")]
    pub out: PathBuf,
    /// Project root whose session store to read.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub root: PathBuf,
    /// Session store to read (default: the root's, in the XDG data dir).
    #[arg(long, value_name = "FILE", env = "LEM_TUI_STORE")]
    pub store: Option<PathBuf>,
    /// Only these sessions (repeatable; ids as printed by distill).
    #[arg(long, value_name = "ID")]
    pub session: Vec<i64>,
    /// Only sessions of this model config (<family>/<size>).
    #[arg(long, value_name = "FAMILY/SIZE")]
    pub model: Option<String>,
    /// Only sessions of this probe set (as given to distill --probes).
    #[arg(long, value_name = "SET|FILE")]
    pub probes: Option<String>,
    /// Only kept candidates scoring at least this (grammar v3 composite).
    #[arg(long, value_name = "SCORE")]
    pub min_score: Option<f64>,
    /// Only probes whose decision carries this tag (`t` in the workbench).
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,
    /// User turn = the bare probe (the default except for `lesson`).
    #[arg(long, conflicts_with = "sandwich")]
    pub plain: bool,
    /// User turn = kernel + probe + signature, as the lesson file has it (the default for `lesson`).
    #[arg(long)]
    pub sandwich: bool,
    /// Fraction of records for a validation split (0 < F < 1).
    #[arg(long, value_name = "F")]
    pub valid: Option<f64>,
    /// Seed of the train/valid split.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub split_seed: u64,
    /// DPO: pair a kept edit with any other candidate, not with the original it was edited from.
    #[arg(long)]
    pub no_edit_pairs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CurationArg {
    /// LEM's rule: the best composite, kept if it passes the gate.
    Auto,
    /// Stop at each probe with its candidates scored and the best pre-selected.
    Review,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// What LEM distill computes (go-i18n not initialised): the default.
    Cold,
    /// go-i18n's locale tables loaded before the tokeniser.
    Preloaded,
}

#[derive(Debug, Clone, Args)]
pub struct ScoreArgs {
    #[arg(long, value_enum, default_value_t = ModeArg::Cold)]
    pub mode: ModeArg,
    /// Echo above which (with low uplift) a response counts as sycophantic.
    #[arg(long, default_value_t = 0.6, value_name = "F")]
    pub echo_threshold: f64,
    /// Uplift below which (with high echo) a response counts as sycophantic.
    #[arg(long, default_value_t = 5.0, value_name = "F")]
    pub uplift_threshold: f64,
    /// JSONL input (default: stdin).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub action: ModelsAction,
    /// Project root holding .core/ai/.
    #[arg(long, default_value = ".", global = true, value_name = "DIR")]
    pub root: PathBuf,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ModelsAction {
    /// Download and verify the model files (all configs with a `fetch` section, or the ones named).
    Fetch { models: Vec<String> },
    /// List model configs and whether their files are present.
    List,
}

fn endpoint_url(s: &str) -> Result<String, String> {
    crate::config::check_endpoint_url(s).map(|()| s.to_owned())
}

/// LEM parses flags with Go's `flag` package, which takes `-model x` as well as `--model x`.
/// Rewrites single-dash long flags so LEM command lines work unchanged.
pub fn normalise_go_flags(args: impl IntoIterator<Item = String>) -> Vec<String> {
    const LONG: &[&str] = &[
        "model",
        "probes",
        "output",
        "lesson",
        "min-score",
        "runs",
        "dry-run",
        "root",
        "cache-limit",
        "mem-limit",
        "headless",
        "backend",
        "seed",
        "threads",
        "sequential",
        "probes-in-flight",
        "gpu-layers",
        "sampler",
        "kv",
        "lanes",
        "max-tokens",
        "endpoint",
        "api-model",
        "concurrency",
        "endpoint-wait",
        "store",
        "fresh",
        "no-store",
        "mode",
        "theme",
        "input",
        "echo-threshold",
        "uplift-threshold",
    ];
    args.into_iter()
        .map(|a| {
            let Some(rest) = a.strip_prefix('-') else { return a };
            if rest.starts_with('-') {
                return a;
            }
            let name = rest.split('=').next().unwrap_or(rest);
            if LONG.contains(&name) { format!("-{a}") } else { a }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_flags_are_accepted() {
        let args = normalise_go_flags(
            ["lem-tui", "distill", "-model", "gemma3/270m", "-runs=2", "--probes", "demo", "-h"].map(String::from),
        );
        assert_eq!(args, ["lem-tui", "distill", "--model", "gemma3/270m", "--runs=2", "--probes", "demo", "-h"]);
        let cli = Cli::try_parse_from(&args[..7]).expect("parses");
        let Some(Command::Distill(d)) = cli.command else { panic!("distill expected") };
        assert_eq!((d.model.as_str(), d.runs, d.probes.as_str()), ("gemma3/270m", 2, "demo"));
    }

    #[test]
    fn negative_lesson_and_defaults() {
        let cli = Cli::try_parse_from(["lem-tui", "distill", "--lesson", "-1"]).expect("parses");
        let Some(Command::Distill(d)) = cli.command else { panic!("distill expected") };
        assert_eq!(d.lesson, -1);
        assert_eq!(d.min_score, 0.0);
        assert_eq!(d.model, "smollm2/135m");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
