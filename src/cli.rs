//! Command-line definitions (clap). Flags of `distill` are LEM's, with lem-tui's additions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "lem-tui",
    version,
    about = "A terminal workbench for curating LLM distillation data (LEM's `distill`, watched live)",
    long_about = "lem-tui runs LEM's distill loop — N candidates per probe, grammar v3 scoring, best-of-N, \
                  quality gate, lesson JSONL — on a local model (llama.cpp, MLX) or remote OpenAI-compatible \
                  engines. It reads LEM's own .core/ai configuration unchanged.\n\n\
                  With no subcommand it runs `distill` on the default model and the demo probes.",
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
    /// Run without the screen: LEM's progress lines on stderr.
    #[arg(long)]
    pub headless: bool,
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
    /// Override max_tokens from the configs (lem-tui extension; 0 = use config).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_tokens: u32,
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
        "max-tokens",
        "mode",
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
