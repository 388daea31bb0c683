//! Decisions: the gate, the operator's review, the commit of a decision and its undo.

use super::run::{Job, Record, Run};
use super::{Candidate, Decider, Decision, DistillError, EngineEvent, MAX_RUNS, Review, best_of};
use crate::lesson::TrainingExample;

impl Run {
    pub(super) async fn undo(&mut self, reviewing: Option<usize>) -> Result<(), DistillError> {
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

    pub(super) async fn auto_decide(&mut self, i: usize) -> Result<(), DistillError> {
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
    pub(super) async fn commit(&mut self, i: usize, decision: Decision, best: Option<Candidate>) -> Result<(), DistillError> {
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

    pub(super) async fn review(&mut self, i: usize) -> Result<(), DistillError> {
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
                    self.generate(i, n.clamp(1, MAX_RUNS)).await?;
                    if self.eng_cancelled() {
                        return Ok(());
                    }
                }
            }
        }
    }

}
