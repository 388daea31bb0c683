//! Generating a probe's candidates: requests to the backend, their token streams, scoring.

use tokio::sync::mpsc;

use super::run::Run;
use super::{Candidate, Control, DistillError, EngineEvent, Outcome};
use crate::backend::{FinishReason, GenRequest, JobEvent, Message, Metrics, Sampling};
use crate::scorer::Imprint;

/// Capacity of the token channel between a backend and the engine: small, so a slow consumer
/// slows generation instead of growing memory.
const TOKEN_CHANNEL: usize = 256;

impl Run {
    /// Generates `count` more candidates for probe `i` (numbered after the ones it has).
    pub(super) async fn generate(&mut self, i: usize, count: u32) -> Result<(), DistillError> {
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

    pub(super) async fn on_job_event(
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

    pub(super) fn score(&self, prompt: &Imprint, text: &str) -> Outcome {
        if text.trim().len() < self.eng.cfg.min_chars {
            return Outcome::TooShort;
        }
        let (grammar, delta) = self.eng.scorer.score_against(prompt, text, self.eng.cfg.thresholds);
        Outcome::Scored { grammar, delta }
    }
}
