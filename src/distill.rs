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

mod state;

use std::collections::VecDeque;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, FinishReason, GenRequest, JobEvent, Limits, Message, Metrics, Sampling};
use crate::lesson::{LessonWriter, TrainingExample};
use crate::probes::Probe;
use crate::scorer::{DeltaScore, GrammarScore, Imprint, Scorer, Thresholds};

pub use state::{Journal, JournalError, ProbeStart};

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
    pub output: PathBuf,
}

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

/// Commands the engine obeys. Settings apply to the next request; `CancelGeneration` and
/// `Stop { now: true }` act between tokens.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    Pause,
    Resume,
    /// Stop after the probe in progress has been decided and written (or at once if `now`).
    Stop {
        now: bool,
    },
    /// End the request in flight; its candidates finish as cancelled.
    CancelGeneration,
    SetMode(CurationMode),
    /// New memory/cache limits, applied to the running backend at once.
    SetLimits(Limits),
    SetRuns(u32),
    SetTemperature(f32),
    /// A decision for the probe awaiting review.
    Review {
        probe: usize,
        review: Review,
    },
    /// Take back the most recent decision: its lesson line is removed and the probe is
    /// reviewed again.
    Undo,
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
    /// Probes already decided in an earlier session (resume), reported once at start.
    Resumed {
        done: Vec<(usize, Decision)>,
    },
    ProbeStarted {
        probe: usize,
        runs: u32,
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
    /// A command that could not be carried out, and why.
    Refused {
        reason: String,
    },
    Paused {
        reason: String,
    },
    Unpaused,
    Finished(Summary),
}

#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error("backend: {0}")]
    Backend(#[from] crate::backend::BackendError),
    #[error("{0}")]
    Lesson(#[from] crate::lesson::LessonError),
    #[error("session store: {0}")]
    Journal(#[from] JournalError),
}

/// Capacity of the token channel between a backend and the engine: small, so a slow consumer
/// slows generation instead of growing memory.
const TOKEN_CHANNEL: usize = 256;

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
}

enum Job {
    Generate(usize),
    /// A probe with candidates stored by an earlier session: generate the runs it is missing,
    /// then decide it (gate or operator) as if it had just been generated.
    Resume(usize),
    Review(usize),
}

struct Record {
    probe: usize,
    decision: Decision,
    journal_id: Option<i64>,
    line: Option<Range<u64>>,
}

/// The mutable state of one run; owned by the engine task alone.
struct Run {
    eng: Engine,
    events: mpsc::Sender<EngineEvent>,
    control: mpsc::Receiver<Control>,
    control_open: bool,
    cancel: CancellationToken,
    writer: LessonWriter,
    summary: Summary,
    settings: Settings,
    stop: bool,
    queue: VecDeque<Job>,
    candidates: Vec<Vec<Candidate>>,
    history: Vec<Record>,
    /// Controls that arrived while generating and must wait for a safe point.
    deferred: VecDeque<Control>,
}

impl Engine {
    /// Runs every probe. Returns when done, stopped or cancelled; `events` gets `Finished` last.
    pub async fn run(
        self,
        events: mpsc::Sender<EngineEvent>,
        control: mpsc::Receiver<Control>,
        cancel: CancellationToken,
    ) -> Result<Summary, DistillError> {
        let started = Instant::now();
        let writer = LessonWriter::open(&self.cfg.output)?;
        let n = self.probes.len();
        let settings = Settings {
            mode: self.mode,
            runs: self.cfg.runs.max(1),
            temperature: self.cfg.sampling.temperature,
            limits: self.backend.memory().limits,
            paused: false,
        };
        let mut candidates = vec![Vec::new(); n];
        let mut queue = VecDeque::new();
        let mut done = Vec::new();
        for (i, slot) in candidates.iter_mut().enumerate() {
            match self.start.get(i).cloned().unwrap_or(ProbeStart::Fresh) {
                ProbeStart::Fresh => queue.push_back(Job::Generate(i)),
                ProbeStart::Review(stored) => {
                    *slot = stored;
                    queue.push_back(Job::Resume(i));
                }
                ProbeStart::Done(decision) => done.push((i, decision)),
            }
        }
        let mut run = Run {
            summary: Summary { probes: n, probes_done: done.len(), ..Summary::default() },
            eng: self,
            events,
            control,
            control_open: true,
            cancel,
            writer,
            settings,
            stop: false,
            queue,
            candidates,
            history: Vec::new(),
            deferred: VecDeque::new(),
        };
        run.emit(EngineEvent::Settings(run.settings)).await;
        if !done.is_empty() {
            run.emit(EngineEvent::Resumed { done }).await;
        }
        let result = run.main_loop().await;
        run.summary.duration = started.elapsed();
        let summary = run.summary.clone();
        run.emit(EngineEvent::Finished(summary.clone())).await;
        result.map(|()| summary)
    }
}

impl Run {
    async fn emit(&mut self, ev: EngineEvent) {
        // A view that went away is not an error for the engine: it finishes its work.
        let _ = self.events.send(ev).await;
    }

    async fn main_loop(&mut self) -> Result<(), DistillError> {
        loop {
            self.drain_controls().await?;
            self.check_memory().await;
            self.wait_while_paused().await?;
            if self.stop || self.eng_cancelled() {
                if !self.queue.is_empty() {
                    self.summary.stopped_early = Some(format!("stopped with {} probe(s) left", self.queue.len()));
                }
                return Ok(());
            }
            let Some(job) = self.queue.pop_front() else {
                // In review mode the operator may still undo the last decision before leaving,
                // so the engine waits for a command until told to stop (or nobody is left).
                if self.settings.mode == CurationMode::Review && !self.history.is_empty() {
                    match self.next_control().await {
                        Some(c) => {
                            self.apply(c, None).await?;
                            continue;
                        }
                        None => return Ok(()),
                    }
                }
                return Ok(());
            };
            match job {
                Job::Generate(i) | Job::Resume(i) => {
                    let have = self.candidates[i].iter().filter(|c| c.outcome != Outcome::Cancelled).count();
                    let runs = self.settings.runs.saturating_sub(u32::try_from(have).unwrap_or(u32::MAX));
                    if runs > 0 {
                        self.generate(i, runs).await?;
                    }
                    if self.eng_cancelled() {
                        self.summary.stopped_early = Some(format!("cancelled during {}", self.eng.probes[i].id));
                        return Ok(());
                    }
                    match self.settings.mode {
                        CurationMode::Auto => self.auto_decide(i).await?,
                        CurationMode::Review => self.queue.push_front(Job::Review(i)),
                    }
                }
                Job::Review(i) => self.review(i).await?,
            }
        }
    }

    fn eng_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    async fn drain_controls(&mut self) -> Result<(), DistillError> {
        while let Some(c) = self.deferred.pop_front() {
            self.apply(c, None).await?;
        }
        while let Ok(c) = self.control.try_recv() {
            self.apply(c, None).await?;
        }
        Ok(())
    }

    async fn check_memory(&mut self) {
        let m = self.eng.backend.memory();
        if m.over_limit() && !self.settings.paused {
            self.settings.paused = true;
            let reason = format!(
                "process memory {} MiB is over the limit of {} MiB: paused (raise the limit or resume)",
                m.used() / crate::backend::memory::MIB,
                m.limits.memory_bytes / crate::backend::memory::MIB,
            );
            tracing::warn!("{reason}");
            self.emit(EngineEvent::Paused { reason }).await;
            self.emit(EngineEvent::Settings(self.settings)).await;
        }
    }

    async fn wait_while_paused(&mut self) -> Result<(), DistillError> {
        while self.settings.paused && !self.stop && !self.eng_cancelled() {
            match self.next_control().await {
                Some(c) => {
                    self.apply(c, None).await?;
                }
                // Nobody can lift the pause: stop cleanly, everything decided is written.
                None => self.stop = true,
            }
        }
        Ok(())
    }

    async fn next_control(&mut self) -> Option<Control> {
        if !self.control_open {
            return None;
        }
        tokio::select! {
            c = self.control.recv() => {
                if c.is_none() { self.control_open = false; }
                c
            }
            () = self.cancel.cancelled() => None,
        }
    }

    /// Applies a command. `reviewing` is the probe awaiting review, if any; review decisions
    /// elsewhere are refused.
    async fn apply(&mut self, c: Control, reviewing: Option<usize>) -> Result<Option<Review>, DistillError> {
        match c {
            Control::Pause => self.set(|s| s.paused = true).await,
            Control::Resume => {
                self.set(|s| s.paused = false).await;
                self.emit(EngineEvent::Unpaused).await;
            }
            Control::Stop { now } => {
                self.stop = true;
                if now {
                    self.cancel.cancel();
                }
            }
            Control::CancelGeneration => {
                self.emit(EngineEvent::Refused { reason: "nothing is being generated".into() }).await;
            }
            Control::SetMode(mode) => self.set(|s| s.mode = mode).await,
            Control::SetRuns(runs) if (1..=64).contains(&runs) => self.set(|s| s.runs = runs).await,
            Control::SetRuns(runs) => {
                self.emit(EngineEvent::Refused { reason: format!("runs must be 1-64, not {runs}") }).await;
            }
            Control::SetTemperature(t) if (0.0..=5.0).contains(&t) => self.set(|s| s.temperature = t).await,
            Control::SetTemperature(t) => {
                self.emit(EngineEvent::Refused { reason: format!("temperature must be 0-5, not {t}") }).await;
            }
            Control::SetLimits(limits) => match self.eng.backend.set_limits(limits) {
                Ok(()) => self.set(|s| s.limits = limits).await,
                Err(e) => self.emit(EngineEvent::Refused { reason: format!("limits: {e}") }).await,
            },
            Control::Review { probe, review } if Some(probe) == reviewing => return Ok(Some(review)),
            Control::Review { probe, .. } => {
                let id = self.eng.probes.get(probe).map_or("?", |p| p.id.as_str());
                self.emit(EngineEvent::Refused { reason: format!("{id} is not awaiting review") }).await;
            }
            Control::Undo => self.undo(reviewing).await?,
        }
        Ok(None)
    }

    async fn set(&mut self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.settings);
        self.emit(EngineEvent::Settings(self.settings)).await;
    }

    async fn undo(&mut self, reviewing: Option<usize>) -> Result<(), DistillError> {
        let Some(rec) = self.history.pop() else {
            self.emit(EngineEvent::Refused { reason: "nothing to undo".into() }).await;
            return Ok(());
        };
        if let Some(range) = rec.line.clone() {
            if let Err(e) = self.writer.remove_last(range) {
                let reason = format!("cannot undo: {e}");
                self.history.push(rec);
                self.emit(EngineEvent::Refused { reason }).await;
                return Ok(());
            }
        }
        if let (Some(j), Some(id)) = (self.eng.journal.as_mut(), rec.journal_id) {
            j.undo(id)?;
        }
        match rec.decision {
            Decision::Kept { .. } => self.summary.kept -= 1,
            Decision::Skipped { .. } | Decision::Rejected => self.summary.skipped -= 1,
        }
        self.summary.probes_done -= 1;
        // The probe in review (if any) waits behind the one being reopened.
        if let Some(r) = reviewing {
            self.queue.push_front(Job::Review(r));
        }
        self.queue.push_front(Job::Review(rec.probe));
        self.emit(EngineEvent::Undone { probe: rec.probe, decision: rec.decision }).await;
        Ok(())
    }

    async fn auto_decide(&mut self, i: usize) -> Result<(), DistillError> {
        let best = best_of(&self.candidates[i]).cloned();
        let decision = match &best {
            Some(b) if b.composite().is_some_and(|g| g >= self.eng.cfg.min_score) => {
                Decision::Kept { run: b.run, by: Decider::Gate }
            }
            _ => Decision::Skipped {
                best: best.as_ref().and_then(Candidate::composite).unwrap_or(0.0),
                by: Decider::Gate,
            },
        };
        self.commit(i, decision, best).await
    }

    /// Journals the decision, then writes the lesson line (if any), then marks it written.
    async fn commit(&mut self, i: usize, decision: Decision, best: Option<Candidate>) -> Result<(), DistillError> {
        let probe = self.eng.probes[i].clone();
        let kept = match &decision {
            Decision::Kept { run, .. } => self.candidates[i].iter().find(|c| c.run == *run).cloned(),
            _ => None,
        };
        let mut decision = decision;
        let duplicate = match (&kept, self.eng.journal.as_ref()) {
            (Some(k), Some(j)) => j.is_duplicate(&probe.prompt, &k.text),
            _ => false,
        };
        if let Some(k) = &kept {
            if duplicate {
                let reason = format!("{}: this response is already in the lesson file; not written twice", probe.id);
                self.emit(EngineEvent::Refused { reason }).await;
                decision = Decision::Skipped { best: k.composite().unwrap_or(0.0), by: Decider::Gate };
            }
        }
        let kept = if matches!(decision, Decision::Kept { .. }) { kept } else { None };
        let journal_id = match self.eng.journal.as_mut() {
            Some(j) => Some(j.decision(i, &probe, &decision, &self.candidates[i])?),
            None => None,
        };
        let line = match &kept {
            Some(k) => {
                let user = crate::config::sandwich(
                    self.eng.cfg.kernel.as_deref(),
                    self.eng.cfg.signature.as_deref(),
                    &probe.prompt,
                );
                let range = self.writer.append(&TrainingExample::user_assistant(user, k.text.clone()))?;
                if let (Some(j), Some(id)) = (self.eng.journal.as_mut(), journal_id) {
                    j.written(id, range.clone())?;
                }
                self.summary.kept += 1;
                Some(range)
            }
            None => {
                self.summary.skipped += 1;
                None
            }
        };
        self.summary.probes_done += 1;
        self.history.push(Record { probe: i, decision: decision.clone(), journal_id, line });
        self.emit(EngineEvent::ProbeDecided { probe: i, decision, best }).await;
        Ok(())
    }

    async fn review(&mut self, i: usize) -> Result<(), DistillError> {
        loop {
            let best = best_of(&self.candidates[i]).map(|c| c.run);
            let ev = EngineEvent::AwaitingReview {
                probe: i,
                candidates: self.candidates[i].clone(),
                best,
                gate: self.eng.cfg.min_score,
            };
            self.emit(ev).await;
            let review = loop {
                let Some(c) = self.next_control().await else {
                    // No operator (or cancelled): leave the probe undecided; it resumes next time.
                    self.stop = true;
                    self.queue.push_front(Job::Review(i));
                    return Ok(());
                };
                let queued = self.queue.len();
                if let Some(r) = self.apply(c, Some(i)).await? {
                    break r;
                }
                if self.queue.len() > queued || self.stop {
                    // An undo reopened an earlier probe (this one was re-queued behind it), or
                    // the operator stopped.
                    if self.stop && self.queue.len() == queued {
                        self.queue.push_front(Job::Review(i));
                    }
                    return Ok(());
                }
            };
            match review {
                Review::Accept { run, below_gate_ok } => {
                    let Some(c) = self.candidates[i].iter().find(|c| c.run == run).cloned() else {
                        self.emit(EngineEvent::Refused { reason: format!("no candidate {}", run + 1) }).await;
                        continue;
                    };
                    let Some(g) = c.composite() else {
                        let reason = format!("candidate {} has no score (too short or failed)", run + 1);
                        self.emit(EngineEvent::Refused { reason }).await;
                        continue;
                    };
                    if g < self.eng.cfg.min_score && !below_gate_ok {
                        let reason = format!(
                            "candidate {} scores {g:.1}, below the gate of {:.1}: confirm to keep it anyway",
                            run + 1,
                            self.eng.cfg.min_score
                        );
                        self.emit(EngineEvent::Refused { reason }).await;
                        continue;
                    }
                    let best = Some(c);
                    return self.commit(i, Decision::Kept { run, by: Decider::Operator }, best).await;
                }
                Review::RejectAll => {
                    let best = best_of(&self.candidates[i]).cloned();
                    return self.commit(i, Decision::Rejected, best).await;
                }
                Review::Skip => {
                    let best = best_of(&self.candidates[i]).cloned();
                    let decision = Decision::Skipped {
                        best: best.as_ref().and_then(Candidate::composite).unwrap_or(0.0),
                        by: Decider::Operator,
                    };
                    return self.commit(i, decision, best).await;
                }
                Review::More { n } => {
                    self.generate(i, n.clamp(1, 64)).await?;
                    if self.eng_cancelled() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Generates `count` more candidates for probe `i` (numbered after the ones it has).
    async fn generate(&mut self, i: usize, count: u32) -> Result<(), DistillError> {
        let probe = self.eng.probes[i].clone();
        self.emit(EngineEvent::ProbeStarted { probe: i, runs: count }).await;
        let prompt_imprint = self.eng.scorer.imprint(&probe.prompt);
        // After a resume the stored run numbers may have gaps (a kill loses the runs in flight).
        let base_run = self.candidates[i].iter().map(|c| c.run + 1).max().unwrap_or(0);
        let per_request = if self.eng.cfg.sequential { 1 } else { count };
        let mut first = 0;
        while first < count && !self.eng_cancelled() {
            let n = per_request.min(count - first);
            let mut sampling = self.eng.cfg.sampling;
            sampling.temperature = self.settings.temperature;
            // Seeds follow the run number, so a candidate is reproducible from (seed, run).
            sampling.seed = self.eng.cfg.sampling.seed.wrapping_add(u64::from(base_run + first));
            let req = GenRequest { messages: vec![Message::user(probe.prompt.clone())], sampling, n };
            let (tx, mut rx) = mpsc::channel(TOKEN_CHANNEL);
            let job = self.cancel.child_token();
            self.eng.backend.generate(req, tx, job.clone())?;
            loop {
                tokio::select! {
                    ev = rx.recv() => {
                        let Some(ev) = ev else { break };
                        self.on_job_event(i, base_run + first, &prompt_imprint, sampling, ev).await?;
                    }
                    c = self.control.recv(), if self.control_open => match c {
                        None => self.control_open = false,
                        Some(Control::CancelGeneration) => job.cancel(),
                        Some(Control::Stop { now: true }) => { self.stop = true; self.cancel.cancel(); }
                        Some(c @ (Control::Review { .. } | Control::Undo)) => self.deferred.push_back(c),
                        Some(c) => { self.apply(c, None).await?; }
                    },
                }
            }
            first += n;
        }
        Ok(())
    }

    async fn on_job_event(
        &mut self,
        i: usize,
        run0: u32,
        prompt: &Imprint,
        sampling: Sampling,
        ev: JobEvent,
    ) -> Result<(), DistillError> {
        let seed = |c: u32| sampling.seed.wrapping_add(u64::from(c));
        let done = match ev {
            JobEvent::Prefilled { prompt_tokens, elapsed } => {
                self.emit(EngineEvent::Prefilled { probe: i, prompt_tokens, elapsed }).await;
                return Ok(());
            }
            JobEvent::Token { candidate, text } => {
                crate::failpoint::hit("token");
                self.emit(EngineEvent::Token { probe: i, run: run0 + candidate, text }).await;
                return Ok(());
            }
            JobEvent::Restart { candidate, reason } => {
                self.emit(EngineEvent::Restarted { probe: i, run: run0 + candidate, reason }).await;
                return Ok(());
            }
            JobEvent::Done { candidate, text, finish, metrics } => {
                let outcome =
                    if finish == FinishReason::Cancelled { Outcome::Cancelled } else { self.score(prompt, &text) };
                Candidate {
                    run: run0 + candidate,
                    text,
                    outcome,
                    metrics,
                    seed: seed(candidate),
                    temperature: sampling.temperature,
                }
            }
            JobEvent::Failed { candidate, error } => Candidate {
                run: run0 + candidate,
                text: String::new(),
                outcome: Outcome::Failed(error),
                metrics: Metrics::default(),
                seed: seed(candidate),
                temperature: sampling.temperature,
            },
        };
        self.summary.generations += 1;
        self.summary.generated_tokens += u64::from(done.metrics.generated_tokens);
        self.summary.decode_time += done.metrics.wall.saturating_sub(done.metrics.ttft);
        if let Some(j) = self.eng.journal.as_mut() {
            j.candidate(i, &self.eng.probes[i], &done)?;
        }
        self.emit(EngineEvent::CandidateDone { probe: i, candidate: done.clone() }).await;
        self.candidates[i].push(done);
        self.candidates[i].sort_by_key(|c| c.run);
        Ok(())
    }

    fn score(&self, prompt: &Imprint, text: &str) -> Outcome {
        if text.trim().len() < self.eng.cfg.min_chars {
            return Outcome::TooShort;
        }
        let (grammar, delta) = self.eng.scorer.score_against(prompt, text, self.eng.cfg.thresholds);
        Outcome::Scored { grammar, delta }
    }
}
