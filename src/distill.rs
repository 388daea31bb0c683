//! The distill engine: LEM's loop over probes × runs, best-of-N, the gate and the operator's
//! decisions.
//!
//! It is UI-agnostic. It reports everything as [`EngineEvent`]s on a bounded channel and obeys
//! [`Control`] commands; the headless runner prints LEM's progress lines from those events and
//! the TUI renders them. There is exactly one implementation of the loop.
//!
//! Per probe: one request with `runs` candidates (decoded as one batch where the backend can,
//! or one after another with `sequential`), each response quick-rejected under `min_chars`
//! bytes after trimming, scored once (grammar + delta against the bare probe, sharing the
//! response's imprint), best chosen by strictly greater composite (ties keep the earliest).
//! In [`CurationMode::Auto`] the gate (`composite >= min_score`) decides, as in LEM; in
//! [`CurationMode::Review`] the engine waits for the operator. A decision is journalled
//! (write-through to the session store) *before* its lesson line is appended, and the line is
//! written whole and synced before the next probe starts.

mod edit;
mod generate;
mod protocol;
mod review;
mod run;
mod state;
mod tagging;

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::{Backend, MemorySnapshot, Sampling};
use crate::probes::Probe;
use crate::scorer::{Scorer, Thresholds};

pub use protocol::{
    BulkAction, Candidate, Control, CurationMode, Decider, Decision, EngineEvent, MAX_RUNS, Outcome, Review, Settings,
    Summary, Tagging, best_of,
};
pub use state::{Journal, JournalError, ProbeStart, Standing};

/// Settings the loop needs, already merged from ai.yaml, the model config and the flags.
#[derive(Clone, Debug)]
pub struct DistillConfig {
    pub runs: u32,
    pub min_chars: usize,
    pub min_score: f64,
    pub thresholds: Thresholds,
    pub sampling: Sampling,
    /// Kernel and signature for the sandwich written to the lesson file (never shown to the model).
    pub kernel: Option<String>,
    pub signature: Option<String>,
    /// Generate a probe's candidates one after another (as LEM does) instead of as one batch.
    pub sequential: bool,
    /// Probes generated at once in auto mode (1: one at a time). Their requests go out
    /// together, so a backend that serves requests side by side (an endpoint pool) has
    /// `probes_in_flight × runs` candidates to spread; decisions still follow probe order.
    pub probes_in_flight: u32,
    pub output: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error("backend: {0}")]
    Backend(#[from] crate::backend::BackendError),
    #[error("{0}")]
    Lesson(#[from] crate::lesson::LessonError),
    #[error("session store: {0}")]
    Journal(#[from] JournalError),
    #[error("session store: {0}")]
    Persist(String),
    /// The backend's endpoints stayed down past its wait ([`JobEvent::Unavailable`]): the run
    /// stopped with the probe in progress undecided, so the same command resumes it.
    #[error("{0}")]
    Unavailable(String),
}

pub struct Engine {
    pub cfg: DistillConfig,
    pub backend: Arc<dyn Backend>,
    pub scorer: Arc<Scorer>,
    pub probes: Vec<Probe>,
    pub mode: CurationMode,
    /// Write-through persistence; `None` runs without a session store (as LEM does).
    pub journal: Option<Box<dyn Journal>>,
    /// Where each probe starts (resume); empty means every probe is fresh.
    pub start: Vec<ProbeStart>,
    /// The probes an earlier session decided, oldest decision first ([`ResumeReport`]'s
    /// `decided_order`): the order `Resumed` reports them in. Empty: probe order.
    ///
    /// [`ResumeReport`]: crate::store::ResumeReport
    pub decided_order: Vec<usize>,
    /// The memory sampler's latest reading, for the over-limit pause; `None` checks nothing.
    /// The engine never reads memory itself (on macOS a reading forks `sysctl`).
    pub memory: Option<tokio::sync::watch::Receiver<MemorySnapshot>>,
}
