//! Generating a probe's candidates: requests to the backend, their token streams, scoring.

use std::collections::HashSet;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::run::{Run, limits_answer};
use super::{Candidate, Control, DistillError, EngineEvent, Outcome};
use crate::backend::{FinishReason, GenRequest, JobEvent, Message, Metrics, Sampling};
use crate::scorer::Imprint;

/// Capacity of the token channel between a backend and the engine: small, so a slow consumer
/// slows generation instead of growing memory.
const TOKEN_CHANNEL: usize = 256;

impl Run {
    /// Generates `count` more candidates for probe `i`, numbered by [`next_runs`].
    pub(super) async fn generate(&mut self, i: usize, count: u32) -> Result<(), DistillError> {
        let probe = self.eng.probes[i].clone();
        let runs = next_runs(&self.candidates[i], count);
        self.emit(EngineEvent::ProbeStarted { probe: i, runs: runs.clone() }).await;
        let prompt_imprint = self.eng.scorer.imprint(&probe.prompt);
        let per_request = if self.eng.cfg.sequential { 1 } else { count.max(1) as usize };
        let mut cancelled = false;
        for chunk in requests(&runs, per_request) {
            if cancelled || self.eng_cancelled() {
                break;
            }
            let (run0, req) = self.request(&probe.prompt, &chunk);
            let sampling = req.sampling;
            let (tx, mut rx) = mpsc::channel(TOKEN_CHANNEL);
            let job = self.cancel.child_token();
            self.eng.backend.generate(req, tx, job.clone())?;
            loop {
                tokio::select! {
                    ev = rx.recv() => {
                        let Some(ev) = ev else { break };
                        self.on_job_event(i, run0, &prompt_imprint, sampling, ev).await?;
                    }
                    c = self.control.recv(), if self.control_open => {
                        // The rest of this probe's candidates are not generated either.
                        cancelled |= self.on_control_while_generating(c, std::slice::from_ref(&job)).await?;
                    }
                    (limits, answer) = limits_answer(&mut self.pending_limits), if !self.pending_limits.is_empty() => {
                        self.on_limits_answer(limits, answer).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The request for one run of consecutive run numbers (`chunk`) of a prompt, and its first
    /// run. Seeds follow the run number, so a candidate is reproducible from (seed, run).
    fn request(&self, prompt: &str, chunk: &[u32]) -> (u32, GenRequest) {
        let (run0, n) = (chunk[0], u32::try_from(chunk.len()).unwrap_or(u32::MAX));
        let mut sampling = self.eng.cfg.sampling;
        sampling.temperature = self.settings.temperature;
        sampling.seed = self.eng.cfg.sampling.seed.wrapping_add(u64::from(run0));
        (run0, GenRequest { messages: vec![Message::user(prompt.to_owned())], sampling, n })
    }

    /// Generates several probes' missing candidates at once (`(probe, count)` each, one
    /// request per run of consecutive run numbers, all sent before any is read), so a backend
    /// that serves requests side by side has them all. Each candidate is stored as it finishes,
    /// as in [`Self::generate`]; the probes are decided afterwards, in order, by the caller.
    pub(super) async fn generate_wave(&mut self, wave: &[(usize, u32)]) -> Result<(), DistillError> {
        struct Sent {
            probe: usize,
            run0: u32,
            sampling: Sampling,
            /// The probe's prompt in `imprints`.
            imprint: usize,
        }
        let mut sent: Vec<Sent> = Vec::new();
        let mut imprints: Vec<Imprint> = Vec::new();
        let mut jobs: Vec<CancellationToken> = Vec::new();
        // Every request's events, tagged with the request, on one bounded channel; each
        // forwarder ends when its request's channel closes (the request is over) or this side
        // is gone.
        let (tx, mut rx) = mpsc::channel::<(usize, JobEvent)>(TOKEN_CHANNEL);
        let mut guards = Vec::new();
        for &(i, count) in wave {
            let runs = next_runs(&self.candidates[i], count);
            self.emit(EngineEvent::ProbeStarted { probe: i, runs: runs.clone() }).await;
            let prompt = self.eng.probes[i].prompt.clone();
            imprints.push(self.eng.scorer.imprint(&prompt));
            for chunk in requests(&runs, runs.len().max(1)) {
                let (run0, req) = self.request(&prompt, &chunk);
                let sampling = req.sampling;
                let (job_tx, mut job_rx) = mpsc::channel(TOKEN_CHANNEL);
                let job = self.cancel.child_token();
                // Returning early (an error) cancels the requests still running.
                guards.push(job.clone().drop_guard());
                self.eng.backend.generate(req, job_tx, job.clone())?;
                let (tx, k) = (tx.clone(), sent.len());
                tokio::spawn(async move {
                    while let Some(ev) = job_rx.recv().await {
                        if tx.send((k, ev)).await.is_err() {
                            break;
                        }
                    }
                });
                sent.push(Sent { probe: i, run0, sampling, imprint: imprints.len() - 1 });
                jobs.push(job);
            }
        }
        drop(tx);
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some((k, ev)) = ev else { break };
                    let r = &sent[k];
                    let (probe, run0, sampling) = (r.probe, r.run0, r.sampling);
                    self.on_job_event(probe, run0, &imprints[r.imprint], sampling, ev).await?;
                }
                c = self.control.recv(), if self.control_open => {
                    self.on_control_while_generating(c, &jobs).await?;
                }
                (limits, answer) = limits_answer(&mut self.pending_limits), if !self.pending_limits.is_empty() => {
                    self.on_limits_answer(limits, answer).await;
                }
            }
        }
        Ok(())
    }

    /// A control that arrives while candidates are generating (`jobs`: the requests in flight).
    /// Returns true when it cancelled them.
    async fn on_control_while_generating(
        &mut self,
        c: Option<Control>,
        jobs: &[CancellationToken],
    ) -> Result<bool, DistillError> {
        match c {
            None => self.control_open = false,
            Some(Control::CancelGeneration) => {
                jobs.iter().for_each(CancellationToken::cancel);
                return Ok(true);
            }
            Some(Control::Stop { now: true }) => {
                self.stop = true;
                self.cancel.cancel();
            }
            Some(
                c @ (Control::Review { .. }
                | Control::Undo
                | Control::Tag { .. }
                | Control::Bulk { .. }
                | Control::Reopen { .. }
                | Control::AddEdit { .. }),
            ) => self.deferred.push_back(c),
            Some(c) => {
                self.apply(c, None).await?;
            }
        }
        Ok(false)
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
            JobEvent::Unavailable { error } => return Err(DistillError::Unavailable(error)),
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
                    derived_from: None,
                }
            }
            JobEvent::Failed { candidate, error } => Candidate {
                run: run0 + candidate,
                text: String::new(),
                outcome: Outcome::Failed(error),
                metrics: Metrics::default(),
                seed: seed(candidate),
                temperature: sampling.temperature,
                derived_from: None,
            },
        };
        self.summary.generations += 1;
        self.summary.generated_tokens += u64::from(done.metrics.generated_tokens);
        self.summary.decode_time += done.metrics.wall.saturating_sub(done.metrics.ttft);
        let (probe, stored) = (self.eng.probes[i].clone(), done.clone());
        self.persist(move |p| match p.journal.as_mut() {
            Some(j) => Ok(j.candidate(i, &probe, &stored)?),
            None => Ok(()),
        })
        .await?;
        self.emit(EngineEvent::CandidateDone { probe: i, candidate: done.clone() }).await;
        self.candidates[i].push(done);
        self.candidates[i].sort_by_key(|c| c.run);
        Ok(())
    }

    pub(super) fn score(&self, prompt: &Imprint, text: &str) -> Outcome {
        score_with(&self.eng.scorer, prompt, text, self.eng.cfg.thresholds, self.eng.cfg.min_chars)
    }
}

/// The one scoring path for a candidate, generated or edited: quick-rejected under `min_chars`
/// bytes after trimming, else grammar v3 and the delta against the prompt's imprint.
pub(super) fn score_with(
    scorer: &crate::scorer::Scorer,
    prompt: &Imprint,
    text: &str,
    thresholds: crate::scorer::Thresholds,
    min_chars: usize,
) -> Outcome {
    if text.trim().len() < min_chars {
        return Outcome::TooShort;
    }
    let (grammar, delta) = scorer.score_against(prompt, text, thresholds);
    Outcome::Scored { grammar, delta }
}

/// The run number for an edit: after the highest, so the gaps a kill left keep their seeds.
pub(super) fn next_after(have: &[Candidate]) -> u32 {
    have.iter().map(|c| c.run + 1).max().unwrap_or(0)
}

/// The run numbers for `count` new candidates: the gaps in the ones a probe has first (a kill
/// loses the runs in flight, and their seeds give the same candidates back), then after the
/// highest. The engine is the only place that numbers runs.
pub(super) fn next_runs(have: &[Candidate], count: u32) -> Vec<u32> {
    let taken: HashSet<u32> = have.iter().map(|c| c.run).collect();
    (0..u32::MAX).filter(|r| !taken.contains(r)).take(count as usize).collect()
}

/// Splits run numbers into requests: consecutive numbers (a request's candidate `k` is run
/// `run0 + k`, with seed `seed + run0 + k`), at most `per_request` each.
fn requests(runs: &[u32], per_request: usize) -> Vec<Vec<u32>> {
    let mut out: Vec<Vec<u32>> = Vec::new();
    for &r in runs {
        match out.last_mut() {
            Some(last) if last.len() < per_request && last.last().is_some_and(|&p| p + 1 == r) => last.push(r),
            _ => out.push(vec![r]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Metrics;

    fn cand(run: u32) -> Candidate {
        Candidate {
            run,
            text: String::new(),
            outcome: Outcome::TooShort,
            metrics: Metrics::default(),
            seed: 0,
            temperature: 0.0,
            derived_from: None,
        }
    }

    #[test]
    fn runs_fill_gaps_then_follow_the_highest() {
        assert_eq!(next_runs(&[], 3), [0, 1, 2]);
        assert_eq!(next_runs(&[cand(0), cand(2)], 3), [1, 3, 4]);
        assert_eq!(requests(&[1, 3, 4, 5], 8), [vec![1], vec![3, 4, 5]]);
        assert_eq!(requests(&[0, 1, 2], 1), [vec![0], vec![1], vec![2]]);
        assert_eq!(requests(&[0, 1, 2], 2), [vec![0, 1], vec![2]]);
    }
}
