//! The distill engine: LEM's loop over probes × runs, best-of-N and the gate.
//!
//! It is UI-agnostic. It reports everything as [`EngineEvent`]s on a bounded channel and takes
//! [`Control`] commands; the headless runner prints LEM's progress lines from those events and
//! the TUI renders them. There is exactly one implementation of the loop.
//!
//! Per probe: one request with `runs` candidates (decoded as one batch where the backend can,
//! or one after another with `sequential`), each response quick-rejected under `min_chars`
//! bytes after trimming, scored once (grammar + delta against the bare probe, sharing the
//! response's imprint), best chosen by strictly greater composite (ties keep the earliest),
//! kept when `composite >= min_score`. The kept line is written whole and synced before the
//! next probe starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, FinishReason, GenRequest, JobEvent, Message, Metrics, Sampling};
use crate::lesson::{ChatMessage, LessonWriter, TrainingExample};
use crate::probes::Probe;
use crate::scorer::{DeltaScore, GrammarScore, Scorer, Thresholds};

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

/// What became of one generation.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Scored { grammar: GrammarScore, delta: DeltaScore },
    /// Shorter than `min_chars` after trimming; not a candidate.
    TooShort,
    Failed(String),
    Cancelled,
}

/// One generated candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// 0-based run number within the probe.
    pub run: u32,
    pub text: String,
    pub outcome: Outcome,
    pub metrics: Metrics,
    pub seed: u64,
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

#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Kept { run: u32 },
    /// `best` is the best composite seen (0 when no candidate survived).
    Skipped { best: f64 },
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
    ProbeStarted { probe: usize },
    Prefilled { probe: usize, prompt_tokens: u32, elapsed: Duration },
    Token { probe: usize, run: u32, text: String },
    CandidateDone { probe: usize, candidate: Candidate },
    ProbeDecided { probe: usize, decision: Decision, best: Option<Candidate> },
    Paused { reason: String },
    Resumed,
    Finished(Summary),
}

/// Commands the engine obeys between (and, for cancel, during) generations.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    Pause,
    Resume,
    /// Stop after the probe in progress has been written (or at once if `now`).
    Stop { now: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum DistillError {
    #[error("backend: {0}")]
    Backend(#[from] crate::backend::BackendError),
    #[error("writing {path}: {source}")]
    Output { path: PathBuf, source: std::io::Error },
}

pub struct Engine {
    pub cfg: DistillConfig,
    pub backend: Arc<dyn Backend>,
    pub scorer: Arc<Scorer>,
    pub probes: Vec<Probe>,
}

/// Capacity of the token channel between a backend and the engine: small, so a slow consumer
/// slows generation instead of growing memory.
const TOKEN_CHANNEL: usize = 256;

impl Engine {
    /// Runs every probe. Returns when done, stopped or cancelled; `events` gets `Finished` last.
    pub async fn run(
        self,
        events: mpsc::Sender<EngineEvent>,
        mut control: mpsc::Receiver<Control>,
        cancel: CancellationToken,
    ) -> Result<Summary, DistillError> {
        let started = Instant::now();
        let mut writer = LessonWriter::open(&self.cfg.output)
            .map_err(|e| DistillError::Output { path: self.cfg.output.clone(), source: e.into_io() })?;
        let mut summary = Summary { probes: self.probes.len(), ..Summary::default() };
        let mut paused = false;
        let mut stop_after_probe = false;

        for (index, probe) in self.probes.iter().enumerate() {
            while let Ok(cmd) = control.try_recv() {
                apply_control(cmd, &mut paused, &mut stop_after_probe, &cancel);
            }
            let memory = self.backend.memory();
            if memory.over_limit() {
                paused = true;
                let reason = format!(
                    "process memory {} MiB is over the limit of {} MiB; paused before {}",
                    memory.rss / crate::backend::memory::MIB,
                    memory.limits.memory_bytes / crate::backend::memory::MIB,
                    probe.id
                );
                let _ = events.send(EngineEvent::Paused { reason }).await;
            }
            while paused && !stop_after_probe && !cancel.is_cancelled() {
                tokio::select! {
                    cmd = control.recv() => match cmd {
                        Some(cmd) => apply_control(cmd, &mut paused, &mut stop_after_probe, &cancel),
                        // No controller: a pause can never be lifted, so stop cleanly.
                        None => stop_after_probe = true,
                    },
                    () = cancel.cancelled() => {}
                }
                if !paused {
                    let _ = events.send(EngineEvent::Resumed).await;
                }
            }
            if stop_after_probe || cancel.is_cancelled() {
                summary.stopped_early = Some(format!("stopped before probe {} of {}", index + 1, self.probes.len()));
                break;
            }

            let _ = events.send(EngineEvent::ProbeStarted { probe: index }).await;
            let candidates = self.generate_probe(index, probe, &events, &mut control, &cancel, &mut paused, &mut stop_after_probe).await?;
            summary.generations += candidates.len();
            for c in &candidates {
                summary.generated_tokens += u64::from(c.metrics.generated_tokens);
                summary.decode_time += c.metrics.wall.saturating_sub(c.metrics.ttft);
            }
            if cancel.is_cancelled() {
                summary.stopped_early = Some(format!("cancelled during {}", probe.id));
                break;
            }
            let best = best_of(&candidates).cloned();
            let decision = match &best {
                Some(b) if b.composite().is_some_and(|g| g >= self.cfg.min_score) => {
                    let ex = self.lesson_example(probe, &b.text);
                    writer
                        .append(&ex)
                        .map_err(|e| DistillError::Output { path: self.cfg.output.clone(), source: e.into_io() })?;
                    summary.kept += 1;
                    Decision::Kept { run: b.run }
                }
                _ => {
                    summary.skipped += 1;
                    Decision::Skipped { best: best.as_ref().and_then(Candidate::composite).unwrap_or(0.0) }
                }
            };
            summary.probes_done += 1;
            let _ = events.send(EngineEvent::ProbeDecided { probe: index, decision, best }).await;
        }
        summary.duration = started.elapsed();
        let _ = events.send(EngineEvent::Finished(summary.clone())).await;
        Ok(summary)
    }

    fn lesson_example(&self, probe: &Probe, response: &str) -> TrainingExample {
        let user = crate::config::sandwich(self.cfg.kernel.as_deref(), self.cfg.signature.as_deref(), &probe.prompt);
        TrainingExample {
            messages: vec![
                ChatMessage { role: "user".into(), content: user },
                ChatMessage { role: "assistant".into(), content: response.to_owned() },
            ],
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn generate_probe(
        &self,
        index: usize,
        probe: &Probe,
        events: &mpsc::Sender<EngineEvent>,
        control: &mut mpsc::Receiver<Control>,
        cancel: &CancellationToken,
        paused: &mut bool,
        stop_after_probe: &mut bool,
    ) -> Result<Vec<Candidate>, DistillError> {
        let runs = self.cfg.runs.max(1);
        let prompt_imprint = self.scorer.imprint(&probe.prompt);
        let mut candidates: Vec<Option<Candidate>> = vec![None; runs as usize];
        let per_request = if self.cfg.sequential { 1 } else { runs };
        let mut first_run = 0;
        while first_run < runs {
            let n = per_request.min(runs - first_run);
            let mut sampling = self.cfg.sampling;
            sampling.seed = self.cfg.sampling.seed.wrapping_add(u64::from(first_run));
            let req = GenRequest { messages: vec![Message::user(probe.prompt.clone())], sampling, n };
            let (tx, mut rx) = mpsc::channel(TOKEN_CHANNEL);
            let job = cancel.child_token();
            self.backend.generate(req, tx, job.clone())?;
            let mut control_open = true;
            loop {
                tokio::select! {
                    ev = rx.recv() => {
                        let Some(ev) = ev else { break };
                        match ev {
                            JobEvent::Prefilled { prompt_tokens, elapsed } => {
                                let _ = events.send(EngineEvent::Prefilled { probe: index, prompt_tokens, elapsed }).await;
                            }
                            JobEvent::Token { candidate, text } => {
                                let run = first_run + candidate;
                                let _ = events.send(EngineEvent::Token { probe: index, run, text }).await;
                            }
                            JobEvent::Done { candidate, text, finish, metrics } => {
                                let run = first_run + candidate;
                                let outcome = if finish == FinishReason::Cancelled {
                                    Outcome::Cancelled
                                } else {
                                    self.score(&prompt_imprint, &text)
                                };
                                let c = Candidate { run, text, outcome, metrics, seed: sampling.seed.wrapping_add(u64::from(candidate)) };
                                let _ = events.send(EngineEvent::CandidateDone { probe: index, candidate: c.clone() }).await;
                                candidates[run as usize] = Some(c);
                            }
                            JobEvent::Failed { candidate, error } => {
                                let run = first_run + candidate;
                                let c = Candidate { run, text: String::new(), outcome: Outcome::Failed(error), metrics: Metrics::default(), seed: sampling.seed.wrapping_add(u64::from(candidate)) };
                                let _ = events.send(EngineEvent::CandidateDone { probe: index, candidate: c.clone() }).await;
                                candidates[run as usize] = Some(c);
                            }
                        }
                    }
                    cmd = control.recv(), if control_open => {
                        match cmd {
                            Some(Control::Stop { now: true }) => { *stop_after_probe = true; job.cancel(); cancel.cancel(); }
                            Some(cmd) => apply_control(cmd, paused, stop_after_probe, cancel),
                            None => control_open = false,
                        }
                    }
                }
            }
            first_run += n;
        }
        Ok(candidates.into_iter().flatten().collect())
    }

    fn score(&self, prompt: &crate::scorer::Imprint, text: &str) -> Outcome {
        if text.trim().len() < self.cfg.min_chars {
            return Outcome::TooShort;
        }
        let (grammar, delta) = self.scorer.score_against(prompt, text, self.cfg.thresholds);
        Outcome::Scored { grammar, delta }
    }
}

fn apply_control(cmd: Control, paused: &mut bool, stop_after_probe: &mut bool, cancel: &CancellationToken) {
    match cmd {
        Control::Pause => *paused = true,
        Control::Resume => *paused = false,
        Control::Stop { now } => {
            *stop_after_probe = true;
            if now {
                cancel.cancel();
            }
        }
    }
}
