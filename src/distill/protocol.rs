//! The engine's protocol: what it is told ([`Control`], [`Review`]), what it reports
//! ([`EngineEvent`]) and the values both carry (candidates, decisions, settings).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backend::{Limits, Metrics};
use crate::scorer::{DeltaScore, GrammarScore};

/// The most candidates a probe may ask for at once (runs, and `More`).
pub const MAX_RUNS: u32 = 64;

/// Who decides what is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CurationMode {
    /// LEM's rule: the best composite, kept if it passes the gate.
    #[default]
    Auto,
    /// Stop at each probe with its candidates scored and the best pre-selected.
    Review,
}

/// What became of one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Scored {
        grammar: GrammarScore,
        delta: DeltaScore,
    },
    /// Shorter than `min_chars` after trimming; not a candidate.
    TooShort,
    Failed(String),
    Cancelled,
}

/// One generated candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// 0-based run number within the probe.
    pub run: u32,
    pub text: String,
    pub outcome: Outcome,
    pub metrics: Metrics,
    pub seed: u64,
    pub temperature: f32,
    /// The run this candidate is the operator's edit of (`e`); the original is kept beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<u32>,
}

impl Candidate {
    pub fn composite(&self) -> Option<f64> {
        match &self.outcome {
            Outcome::Scored { grammar, .. } => Some(grammar.composite),
            _ => None,
        }
    }
}

/// LEM's best-of-N: the first candidate with the strictly greatest composite.
pub fn best_of(candidates: &[Candidate]) -> Option<&Candidate> {
    let mut best: Option<&Candidate> = None;
    for c in candidates {
        if let Some(g) = c.composite() {
            if best.and_then(Candidate::composite).is_none_or(|b| g > b) {
                best = Some(c);
            }
        }
    }
    best
}

/// Who made a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decider {
    /// LEM's gate (`auto:gate` in the store).
    #[serde(rename = "auto:gate")]
    Gate,
    #[serde(rename = "operator")]
    Operator,
}

impl Decider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gate => "auto:gate",
            Self::Operator => "operator",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The candidate `run` went into the lesson file.
    Kept { run: u32, by: Decider },
    /// Nothing was written; `best` is the best composite seen (0 when no candidate survived).
    Skipped { best: f64, by: Decider },
    /// The operator rejected every candidate (they are negative examples for preference data).
    Rejected,
}

/// The operator's answer to [`EngineEvent::AwaitingReview`].
#[derive(Clone, Debug, PartialEq)]
pub enum Review {
    /// Keep candidate `run`. Below the gate this needs `below_gate_ok`, the explicit confirmation.
    Accept {
        run: u32,
        below_gate_ok: bool,
    },
    RejectAll,
    /// Generate `n` more candidates for this probe, then ask again.
    More {
        n: u32,
    },
    /// Decide nothing about quality; move on.
    Skip,
}

/// Free-text tags and an optional note on a probe's decision (a reject's reason is a note).
/// Each change is stored as a new row holding the whole set: the latest row stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tagging {
    pub tags: Vec<String>,
    pub note: Option<String>,
}

impl Tagging {
    /// Tags trimmed, without empties or repeats (first spelling kept); a blank note is none.
    #[must_use]
    pub fn new(tags: impl IntoIterator<Item = impl AsRef<str>>, note: Option<&str>) -> Self {
        let mut out: Vec<String> = Vec::new();
        for t in tags {
            let t = t.as_ref().trim();
            if !t.is_empty() && !out.iter().any(|o| o == t) {
                out.push(t.to_owned());
            }
        }
        let note = note.map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned);
        Self { tags: out, note }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.note.is_none()
    }
}

/// What a bulk control does to each probe of its list.
#[derive(Clone, Debug, PartialEq)]
pub enum BulkAction {
    /// Keep the best candidate by composite (the operator confirmed the count, gate or not).
    Accept,
    Reject,
    Skip,
    /// Replace the probes' tags and note.
    Tag(Tagging),
}

/// Commands the engine obeys. Settings apply to the next request; `CancelGeneration` and
/// `Stop { now: true }` act between tokens.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Start no new generation (the request in flight runs to its end; reviews go on).
    Pause,
    Resume,
    /// Stop after the probe in progress has been decided and written (or at once if `now`).
    Stop {
        now: bool,
    },
    /// End the request in flight; its candidates finish as cancelled.
    CancelGeneration,
    SetMode(CurationMode),
    /// New memory/cache limits for the backend. [`EngineEvent::Settings`] reports them once the
    /// backend has applied them, [`EngineEvent::LimitsRefused`] if it would not.
    SetLimits(Limits),
    SetRuns(u32),
    SetTemperature(f32),
    /// A decision for the probe awaiting review.
    Review {
        probe: usize,
        review: Review,
    },
    /// Take back the most recent decision: its lesson line is removed and the probe is
    /// reviewed again by the operator (in auto mode too: the operator took it in hand).
    Undo,
    /// Tag a probe's decision (or the probe, before it is decided).
    Tag {
        probe: usize,
        tagging: Tagging,
    },
    /// One action over many probes, applied in order, each decision committed and written as a
    /// single one is. Probes already decided (or with nothing generated) are left as they are,
    /// except by `Tag`. One control carries the whole list so a large bulk never floods the
    /// bounded channel.
    Bulk {
        probes: Vec<usize>,
        action: BulkAction,
    },
    /// The operator's edit of candidate `parent`: scored at once against the probe's prompt and
    /// stored as a new candidate derived from it (the parent is kept). Answered by
    /// [`EngineEvent::EditAdded`].
    AddEdit {
        probe: usize,
        parent: u32,
        text: String,
    },
    /// Take back the standing decision of `probe`, however old (its lesson line is removed from
    /// wherever it is in the file, crash-safely as an undo's), and review the probe again.
    Reopen {
        probe: usize,
    },
}

/// Live settings, reported whenever they change.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub mode: CurationMode,
    pub runs: u32,
    pub temperature: f32,
    pub limits: Limits,
    pub paused: bool,
}

/// Figures for the end-of-run summary.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub probes: usize,
    pub probes_done: usize,
    pub kept: usize,
    pub skipped: usize,
    pub generations: usize,
    pub generated_tokens: u64,
    pub decode_time: Duration,
    pub duration: Duration,
    pub stopped_early: Option<String>,
}

/// What the engine reports. `probe` is the 0-based index into the probe list.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineEvent {
    Settings(Settings),
    /// What an earlier session left (resume), reported once at start: the probes it decided,
    /// and the stored candidates of those it did not (their run numbers may have gaps: a kill
    /// loses the runs in flight).
    Resumed {
        /// Decided by earlier sessions, oldest decision first.
        done: Vec<(usize, Decision)>,
        undecided: Vec<(usize, Vec<Candidate>)>,
    },
    /// Candidates for `probe` are being generated, with these run numbers (the engine is the
    /// one place that numbers runs; views never work them out).
    ProbeStarted {
        probe: usize,
        runs: Vec<u32>,
    },
    Prefilled {
        probe: usize,
        prompt_tokens: u32,
        elapsed: Duration,
    },
    Token {
        probe: usize,
        run: u32,
        text: String,
    },
    /// The text streamed for `run` is void: the backend is generating it again (a remote
    /// endpoint failed mid-stream). Clear its stream; its `CandidateDone` is still to come.
    Restarted {
        probe: usize,
        run: u32,
        reason: String,
    },
    CandidateDone {
        probe: usize,
        candidate: Candidate,
    },
    AwaitingReview {
        probe: usize,
        candidates: Vec<Candidate>,
        best: Option<u32>,
        gate: f64,
    },
    ProbeDecided {
        probe: usize,
        decision: Decision,
        best: Option<Candidate>,
    },
    Undone {
        probe: usize,
        decision: Decision,
    },
    /// The tags that now stand for these probes (at start: those stored earlier).
    Tagged {
        tags: Vec<(usize, Tagging)>,
    },
    /// A bulk control's progress: `done` of `total` probes handled (`decided` of them got a
    /// decision); the last report has `done == total`.
    BulkProgress {
        done: usize,
        total: usize,
        decided: usize,
    },
    /// An operator's edit, stored and scored (`candidate.derived_from` names its parent).
    EditAdded {
        probe: usize,
        candidate: Candidate,
    },
    /// A command that could not be carried out, and why.
    Refused {
        reason: String,
    },
    /// The backend refused new limits; the ones in [`Settings`] still hold.
    LimitsRefused {
        limits: Limits,
        reason: String,
    },
    Paused {
        reason: String,
    },
    Unpaused,
    Finished(Summary),
}
