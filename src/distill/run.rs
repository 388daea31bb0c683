//! The run loop: the queue of probes, the controls between them, pause and memory checks, and
//! the one door to the session store and the lesson file (off the async workers).

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{
    Candidate, Control, CurationMode, Decision, DistillError, Engine, EngineEvent, Journal, MAX_RUNS, Outcome,
    ProbeStart, Review, Settings, Summary,
};
use crate::backend::{BackendError, Limits, LimitsReply};
use crate::lesson::LessonWriter;

pub(super) enum Job {
    Generate(usize),
    /// A probe with candidates stored by an earlier session: generate the runs it is missing,
    /// then decide it (gate or operator) as if it had just been generated.
    Resume(usize),
    Review(usize),
}

pub(super) struct Record {
    pub(super) probe: usize,
    pub(super) decision: Decision,
    pub(super) journal_id: Option<i64>,
    /// Where the line was written (later removals before it shift it; it is checked first).
    pub(super) line: Option<Range<u64>>,
    /// The user turn and response of a written line, to find it by content.
    pub(super) kept: Option<(String, String)>,
    /// Decided by an earlier session (reopened from the store): not in this run's counts.
    pub(super) earlier: bool,
}

/// What the session store and the lesson file are reached through. Both block (SQLite with
/// full sync, an fsync per line), so they are only ever used on a blocking thread.
pub(super) struct Persist {
    pub(super) journal: Option<Box<dyn Journal>>,
    pub(super) writer: LessonWriter,
}

/// What applying a command did, for the loop that waits on the operator.
pub(super) enum Applied {
    Nothing,
    /// A decision for the probe under review.
    Review(Review),
    /// The most recent decision was taken back; its probe is at the front of the queue.
    Undid,
    /// The mode changed (a probe under review is then decided by the gate if it is now auto).
    Mode(CurationMode),
    /// A bulk decided the probe under review.
    Decided,
    Stop,
}

/// The mutable state of one run; owned by the engine task alone.
pub(super) struct Run {
    pub(super) eng: Engine,
    pub(super) events: mpsc::Sender<EngineEvent>,
    pub(super) control: mpsc::Receiver<Control>,
    pub(super) control_open: bool,
    pub(super) cancel: CancellationToken,
    /// `None` only while a blocking task holds it.
    pub(super) persist: Option<Persist>,
    pub(super) summary: Summary,
    pub(super) settings: Settings,
    pub(super) stop: bool,
    pub(super) queue: VecDeque<Job>,
    pub(super) candidates: Vec<Vec<Candidate>>,
    pub(super) history: Vec<Record>,
    /// Controls that arrived while generating and must wait for a safe point.
    pub(super) deferred: VecDeque<Control>,
    /// Limits sent to the backend and not yet answered, oldest first.
    pub(super) pending_limits: VecDeque<(Limits, LimitsReply)>,
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
        let output = self.cfg.output.clone();
        let writer = tokio::task::spawn_blocking(move || LessonWriter::open(&output))
            .await
            .map_err(|e| DistillError::Persist(e.to_string()))??;
        let n = self.probes.len();
        let settings = Settings {
            mode: self.mode,
            runs: self.cfg.runs.clamp(1, MAX_RUNS),
            temperature: self.cfg.sampling.temperature,
            limits: self.backend.memory().limits,
            paused: false,
        };
        let mut candidates = vec![Vec::new(); n];
        let mut queue = VecDeque::new();
        let (mut done, mut undecided) = (Vec::new(), Vec::new());
        for (i, slot) in candidates.iter_mut().enumerate() {
            match self.start.get(i).cloned().unwrap_or(ProbeStart::Fresh) {
                ProbeStart::Fresh => queue.push_back(Job::Generate(i)),
                ProbeStart::Review(stored) => {
                    undecided.push((i, stored.clone()));
                    *slot = stored;
                    queue.push_back(Job::Resume(i));
                }
                ProbeStart::Done(decision) => done.push((i, decision)),
            }
        }
        // Oldest decision first, as the store made them (probes it does not name stay last).
        let mut rank = vec![usize::MAX; n];
        for (r, &i) in self.decided_order.iter().enumerate() {
            if let Some(slot) = rank.get_mut(i) {
                *slot = r;
            }
        }
        done.sort_by_key(|(i, _)| rank.get(*i).copied().unwrap_or(usize::MAX));
        let mut eng = self;
        let journal = eng.journal.take();
        let mut run = Run {
            summary: Summary { probes: n, probes_done: done.len(), ..Summary::default() },
            eng,
            events,
            control,
            control_open: true,
            cancel,
            persist: Some(Persist { journal, writer }),
            settings,
            stop: false,
            queue,
            candidates,
            history: Vec::new(),
            deferred: VecDeque::new(),
            pending_limits: VecDeque::new(),
        };
        run.emit(EngineEvent::Settings(run.settings)).await;
        if !done.is_empty() || !undecided.is_empty() {
            run.emit(EngineEvent::Resumed { done, undecided }).await;
        }
        let result = match run.report_stored_tags().await {
            Ok(()) => run.main_loop().await,
            Err(e) => Err(e),
        };
        run.summary.duration = started.elapsed();
        let summary = run.summary.clone();
        run.emit(EngineEvent::Finished(summary.clone())).await;
        result.map(|()| summary)
    }
}

impl Run {
    pub(super) async fn emit(&mut self, ev: EngineEvent) {
        // A view that went away is not an error for the engine: it finishes its work.
        let _ = self.events.send(ev).await;
    }

    /// Runs `f` on the store and the lesson file on a blocking thread, so neither an fsync nor
    /// a SQLite commit ever holds one of the runtime's (two) workers.
    pub(super) async fn persist<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Persist) -> Result<R, DistillError> + Send + 'static,
    ) -> Result<R, DistillError> {
        let mut p = self.persist.take().ok_or_else(|| DistillError::Persist("the store is in use".into()))?;
        let (p, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut p);
            (p, r)
        })
        .await
        .map_err(|e| DistillError::Persist(format!("the store's thread failed: {e}")))?;
        self.persist = Some(p);
        r
    }

    pub(super) async fn main_loop(&mut self) -> Result<(), DistillError> {
        loop {
            self.drain_controls().await?;
            self.check_memory().await;
            // A pause holds new generation only: a probe awaiting review can still be decided.
            if matches!(self.queue.front(), Some(Job::Generate(_) | Job::Resume(_))) {
                self.wait_while_paused().await?;
            }
            if self.stop || self.eng_cancelled() {
                if !self.queue.is_empty() {
                    self.summary.stopped_early = Some(format!("stopped with {} probe(s) left", self.queue.len()));
                }
                return Ok(());
            }
            let Some(job) = self.queue.pop_front() else {
                // In review mode the operator may still undo or reopen a decision before leaving,
                // so the engine waits for a command until told to stop (or nobody is left).
                // (earlier runs' decisions too: any can be reopened).
                if self.settings.mode == CurationMode::Review && self.summary.probes_done > 0 {
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
                    let wave = self.wave_from(i);
                    let missing: Vec<(usize, u32)> =
                        wave.iter().map(|&p| (p, self.missing_runs(p))).filter(|&(_, runs)| runs > 0).collect();
                    match missing.as_slice() {
                        [] => {}
                        &[(p, runs)] if wave.len() == 1 => self.generate(p, runs).await?,
                        several => self.generate_wave(several).await?,
                    }
                    // Decided in queue order, as one at a time would: the lesson's lines and
                    // undo's order do not depend on how many probes were generated at once.
                    for (k, &p) in wave.iter().enumerate() {
                        if self.eng_cancelled() {
                            self.summary.stopped_early = Some(format!("cancelled during {}", self.eng.probes[p].id));
                            return Ok(());
                        }
                        match self.settings.mode {
                            CurationMode::Auto => self.auto_decide(p).await?,
                            CurationMode::Review => {
                                // Switched to review mid-wave: the rest wait for the operator.
                                for &q in wave[k..].iter().rev() {
                                    self.queue.push_front(Job::Review(q));
                                }
                                break;
                            }
                        }
                    }
                }
                // Whatever the operator did (decided, reopened an earlier probe, stopped), the
                // queue and `stop` now say what comes next.
                Job::Review(i) => {
                    let outcome = self.review(i).await?;
                    tracing::debug!(probe = %self.eng.probes[i].id, ?outcome, "review ended");
                }
            }
        }
    }

    /// Candidates probe `i` still needs for this run's `runs`.
    fn missing_runs(&self, i: usize) -> u32 {
        let have = self.candidates[i].iter().filter(|c| c.outcome != Outcome::Cancelled).count();
        self.settings.runs.saturating_sub(u32::try_from(have).unwrap_or(u32::MAX))
    }

    /// Probe `i` (just taken from the queue) and, in auto mode with `probes_in_flight` above 1,
    /// the probes queued right behind it to generate with it.
    fn wave_from(&mut self, i: usize) -> Vec<usize> {
        let mut wave = vec![i];
        let width = if self.settings.mode == CurationMode::Auto && !self.eng.cfg.sequential {
            self.eng.cfg.probes_in_flight.max(1) as usize
        } else {
            1
        };
        while wave.len() < width {
            match self.queue.front() {
                Some(&(Job::Generate(p) | Job::Resume(p))) => {
                    self.queue.pop_front();
                    wave.push(p);
                }
                _ => break,
            }
        }
        wave
    }

    pub(super) fn eng_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    pub(super) async fn drain_controls(&mut self) -> Result<(), DistillError> {
        while let Some(c) = self.deferred.pop_front() {
            self.apply(c, None).await?;
        }
        while let Ok(c) = self.control.try_recv() {
            self.apply(c, None).await?;
        }
        while let Some((limits, rx)) = self.pending_limits.front_mut() {
            let answer = match rx.try_recv() {
                Ok(a) => a,
                Err(oneshot::error::TryRecvError::Empty) => break,
                Err(oneshot::error::TryRecvError::Closed) => Err(BackendError::Gone),
            };
            let limits = *limits;
            self.pending_limits.pop_front();
            self.on_limits_answer(limits, answer).await;
        }
        Ok(())
    }

    /// Reads the sampler's latest figures (no syscall here: the view's sampler takes them).
    pub(super) async fn check_memory(&mut self) {
        let Some(rx) = &self.eng.memory else { return };
        // `used` counts MLX's device readings (its per-request peak included) where there are
        // any: a GPU's memory is not in the RSS.
        let used = rx.borrow().used();
        let limit = self.settings.limits.memory_bytes;
        if limit > 0 && used > limit && !self.settings.paused {
            self.settings.paused = true;
            let reason = format!(
                "memory in use {} MiB is over the limit of {} MiB: paused (raise the limit or resume)",
                used / crate::backend::memory::MIB,
                limit / crate::backend::memory::MIB,
            );
            tracing::warn!("{reason}");
            self.emit(EngineEvent::Paused { reason }).await;
            self.emit(EngineEvent::Settings(self.settings)).await;
        }
    }

    pub(super) async fn wait_while_paused(&mut self) -> Result<(), DistillError> {
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

    /// The next command; backend answers to limits that arrive meanwhile are reported.
    pub(super) async fn next_control(&mut self) -> Option<Control> {
        loop {
            if !self.control_open {
                return None;
            }
            tokio::select! {
                c = self.control.recv() => {
                    if c.is_none() { self.control_open = false; }
                    return c;
                }
                () = self.cancel.cancelled() => return None,
                (limits, answer) = limits_answer(&mut self.pending_limits), if !self.pending_limits.is_empty() => {
                    self.on_limits_answer(limits, answer).await;
                }
            }
        }
    }

    pub(super) async fn on_limits_answer(&mut self, limits: Limits, answer: Result<(), BackendError>) {
        match answer {
            Ok(()) => self.set(|s| s.limits = limits).await,
            Err(e) => {
                tracing::warn!("limits refused by the backend: {e}");
                self.emit(EngineEvent::LimitsRefused { limits, reason: e.to_string() }).await;
            }
        }
    }

    /// Applies a command. `reviewing` is the probe awaiting review, if any; review decisions
    /// elsewhere are refused.
    pub(super) async fn apply(&mut self, c: Control, reviewing: Option<usize>) -> Result<Applied, DistillError> {
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
                return Ok(Applied::Stop);
            }
            Control::CancelGeneration => {
                self.emit(EngineEvent::Refused { reason: "nothing is being generated".into() }).await;
            }
            Control::SetMode(mode) => {
                self.set(|s| s.mode = mode).await;
                return Ok(Applied::Mode(mode));
            }
            Control::SetRuns(runs) if (1..=MAX_RUNS).contains(&runs) => self.set(|s| s.runs = runs).await,
            Control::SetRuns(runs) => {
                self.emit(EngineEvent::Refused { reason: format!("runs must be 1-{MAX_RUNS}, not {runs}") }).await;
            }
            Control::SetTemperature(t) if (0.0..=5.0).contains(&t) => self.set(|s| s.temperature = t).await,
            Control::SetTemperature(t) => {
                self.emit(EngineEvent::Refused { reason: format!("temperature must be 0-5, not {t}") }).await;
            }
            // The views hear of new limits only once the backend has applied them.
            Control::SetLimits(limits) => match self.eng.backend.set_limits(limits) {
                Ok(reply) => self.pending_limits.push_back((limits, reply)),
                Err(e) => self.emit(EngineEvent::LimitsRefused { limits, reason: e.to_string() }).await,
            },
            Control::Review { probe, review } if Some(probe) == reviewing => return Ok(Applied::Review(review)),
            Control::Review { probe, .. } => {
                let id = self.eng.probes.get(probe).map_or("?", |p| p.id.as_str());
                self.emit(EngineEvent::Refused { reason: format!("{id} is not awaiting review") }).await;
            }
            Control::Undo => {
                if self.undo(reviewing).await? {
                    return Ok(Applied::Undid);
                }
            }
            Control::Tag { probe, tagging } => self.tag(vec![(probe, tagging)]).await?,
            Control::Bulk { probes, action } => {
                if self.bulk(probes, action, reviewing).await? {
                    return Ok(Applied::Decided);
                }
            }
            Control::Reopen { probe } => {
                if self.reopen(probe, reviewing).await? {
                    return Ok(Applied::Undid);
                }
            }
            Control::AddEdit { probe, parent, text } => self.add_edit(probe, parent, text).await?,
        }
        Ok(Applied::Nothing)
    }

    pub(super) async fn set(&mut self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.settings);
        self.emit(EngineEvent::Settings(self.settings)).await;
    }
}

/// The backend's answer to the oldest limits still pending (never resolves when none are).
pub(super) async fn limits_answer(pending: &mut VecDeque<(Limits, LimitsReply)>) -> (Limits, Result<(), BackendError>) {
    let Some((limits, rx)) = pending.front_mut() else { return std::future::pending().await };
    let answer = rx.await.unwrap_or(Err(BackendError::Gone));
    let limits = *limits;
    pending.pop_front();
    (limits, answer)
}
