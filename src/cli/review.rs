//! `lem-tui review`: curate an existing dataset.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ReviewArgs {
    /// JSONL files: lesson lines (sandwiched or plain), SFT chats {"messages": [...]},
    /// {"prompt", "completion"} or DPO {"prompt", "chosen", "rejected"}.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Lesson file that accepted answers append to (default: <first file>.reviewed.jsonl).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Project root whose session store to use.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub root: PathBuf,
    /// Session store (SQLite; default: one per project root in the XDG data dir).
    #[arg(long, value_name = "FILE", env = "LEM_TUI_STORE")]
    pub store: Option<PathBuf>,
    /// The kernel wrapped around every prompt (default: found in each lesson file, if shared by all
    /// its prompts).
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// The signature after every prompt (with --kernel).
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub signature: Option<PathBuf>,
    /// Ingest and score, print the summary, and exit without opening the workbench.
    #[arg(long)]
    pub ingest_only: bool,
    /// Also write the ingest report (every bad and duplicate line) as JSON.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Scoring threads (default: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub threads: usize,
    /// Composite under which accepting an answer asks for a yes (the gate the workbench shows).
    #[arg(long, default_value_t = 0.0, value_name = "SCORE")]
    pub min_score: f64,
    /// Colour theme: dark, light, high-contrast, a theme in <config dir>/themes/, or a YAML file.
    #[arg(long, value_name = "NAME|FILE", env = "LEM_TUI_THEME")]
    pub theme: Option<String>,
    /// Echo above which (with low uplift) an answer counts as sycophantic.
    #[arg(long, default_value_t = 0.6, value_name = "F")]
    pub echo_threshold: f64,
    /// Uplift below which (with high echo) an answer counts as sycophantic.
    #[arg(long, default_value_t = 5.0, value_name = "F")]
    pub uplift_threshold: f64,
    /// A model (config under .core/ai/models/, or the built-in ones) for `r`: more candidates
    /// for an ingested prompt. Without it (or --endpoint) review has no backend.
    #[arg(long, value_name = "FAMILY/SIZE")]
    pub model: Option<String>,
    /// An OpenAI-compatible server for `r` (repeatable), as for `distill --endpoint`.
    #[arg(long = "endpoint", value_name = "URL")]
    pub endpoints: Vec<String>,
}
