//! Decisions: the gate, the operator's review, the commit of a decision and its undo.

use super::run::{Applied, Job, Record, Run};
use super::{Candidate, CurationMode, Decider, Decision, DistillError, EngineEvent, MAX_RUNS, Review, best_of};
use crate::lesson::TrainingExample;

/// How a review ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReviewOutcome {
    /// The probe was decided (by the operator, or by the gate after a switch to auto mode).
    Decided,
    /// An undo reopened an earlier probe; this one waits behind it in the queue.
    Reopened,
    /// Stopped or cancelled (or nobody is left to decide): the probe stays undecided and
    /// resumes next time.
    Stopped,
}

impl Run {
    /// Takes back the most recent decision (see [`Run::take_back`]). Returns whether it happened.
    pub(super) async fn undo(&mut self, reviewing: Option<usize>) -> Result<bool, DistillError> {
        let Some(rec) = self.history.pop() else {
            self.emit(EngineEvent::Refused { reason: "nothing to undo".into() }).await;
            return Ok(false);
        };
        self.take_back(rec, reviewing).await
    }

    /// Takes back the decision standing for `probe`, however old: this run's, or an earlier
    /// run's as the store has it. Returns whether it happened.
    pub(super) async fn reopen(&mut self, probe: usize, reviewing: Option<usize>) -> Result<bool, DistillError> {
        let id = self.eng.probes.get(probe).map_or_else(|| "?".to_owned(), |p| p.id.clone());
        if reviewing == Some(probe) {
            self.emit(EngineEvent::Refused { reason: format!("{id} is already awaiting review") }).await;
            return Ok(false);
        }
        let rec = match self.history.iter().rposition(|r| r.probe == probe) {
            Some(at) => self.history.remove(at),
            None => {
                let standing = self
                    .persist(move |p| match p.journal.as_mut() {
                        Some(j) => Ok(j.standing(probe)?),
                        None => Ok(None),
                    })
                    .await?;
                let Some(st) = standing else {
                    self.emit(EngineEvent::Refused { reason: format!("{id} has no decision to reopen") }).await;
                    return Ok(false);
                };
                if self.candidates[probe].is_empty() {
                    self.candidates[probe] = st.candidates;
                }
                Record {
                    probe,
                    decision: st.decision,
                    journal_id: Some(st.id),
                    line: None,
                    kept: st.kept,
                    earlier: true,
                }
            }
        };
        self.take_back(rec, reviewing).await
    }

    /// Takes back a decision. The undo is recorded as an intent (where its lesson line is)
    /// before the lesson file is touched, and finished (or rolled back) after, so a kill at any
    /// point leaves something the next start's reconcile can complete. The line is found where
    /// it was written, or by its content if lines before it were taken out since. The probe is
    /// then reviewed again by the operator (in auto mode too: the operator took it in hand).
    async fn take_back(&mut self, rec: Record, reviewing: Option<usize>) -> Result<bool, DistillError> {
        let (id, hint, kept) = (rec.journal_id, rec.line.clone(), rec.kept.clone());
        let removed = self
            .persist(move |p| {
                let line = match &kept {
                    Some((user, response)) => p.writer.locate(hint, user, response)?,
                    None => None,
                };
                let intent = match (p.journal.as_mut(), id) {
                    (Some(j), Some(id)) => Some(j.undo(id, line.clone())?),
                    _ => None,
                };
                crate::failpoint::hit("undo-intent");
                if let Some(range) = line.clone() {
                    if let Err(e) = p.writer.remove(range) {
                        if let (Some(j), Some(u)) = (p.journal.as_mut(), intent) {
                            j.undo_finished(u, false)?;
                        }
                        return Ok(Err(e));
                    }
                    crate::failpoint::hit("undo-truncated");
                }
                if let (Some(j), Some(u)) = (p.journal.as_mut(), intent) {
                    j.undo_finished(u, true)?;
                }
                Ok(Ok(line))
            })
            .await?;
        let cut = match removed {
            Ok(cut) => cut,
            Err(e) => {
                let at = self.history.len();
                self.history.insert(at, rec);
                self.emit(EngineEvent::Refused { reason: format!("cannot undo: {e}") }).await;
                return Ok(false);
            }
        };
        if let Some(cut) = cut {
            // Lines after the one taken out moved up.
            let n = cut.end - cut.start;
            for r in &mut self.history {
                if let Some(l) = r.line.as_mut().filter(|l| l.start >= cut.end) {
                    *l = l.start - n..l.end - n;
                }
            }
        }
        // This run's counts hold only this run's decisions; one reopened from an earlier
        // session was never in them (its new decision will be).
        match rec.decision {
            _ if rec.earlier => {}
            Decision::Kept { .. } => self.summary.kept = self.summary.kept.saturating_sub(1),
            Decision::Skipped { .. } | Decision::Rejected => {
                self.summary.skipped = self.summary.skipped.saturating_sub(1)
            }
        }
        self.summary.probes_done = self.summary.probes_done.saturating_sub(1);
        // The probe in review (if any) waits behind the one being reopened.
        if let Some(r) = reviewing {
            self.queue.push_front(Job::Review(r));
        }
        self.queue.push_front(Job::Review(rec.probe));
        self.emit(EngineEvent::Undone { probe: rec.probe, decision: rec.decision }).await;
        Ok(true)
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
    pub(super) async fn commit(
        &mut self,
        i: usize,
        decision: Decision,
        best: Option<Candidate>,
    ) -> Result<(), DistillError> {
        let probe = self.eng.probes[i].clone();
        let kept = match &decision {
            Decision::Kept { run, .. } => self.candidates[i].iter().find(|c| c.run == *run).cloned(),
            _ => None,
        };
        let candidates = self.candidates[i].clone();
        let user =
            crate::config::sandwich(self.eng.cfg.kernel.as_deref(), self.eng.cfg.signature.as_deref(), &probe.prompt);
        let user_turn = user.clone();
        let (decision, journal_id, line, duplicate) = self
            .persist(move |p| {
                let duplicate = match (&kept, p.journal.as_ref()) {
                    (Some(k), Some(j)) => j.is_duplicate(&probe.prompt, &k.text),
                    _ => false,
                };
                let decision = match &kept {
                    Some(k) if duplicate => Decision::Skipped { best: k.composite().unwrap_or(0.0), by: Decider::Gate },
                    _ => decision,
                };
                let kept = kept.filter(|_| matches!(decision, Decision::Kept { .. }));
                let journal_id = match p.journal.as_mut() {
                    Some(j) => Some(j.decision(i, &probe, &decision, &candidates)?),
                    None => None,
                };
                let line = match &kept {
                    Some(k) => {
                        let range = p.writer.append(&TrainingExample::user_assistant(user, k.text.clone()))?;
                        if let (Some(j), Some(id)) = (p.journal.as_mut(), journal_id) {
                            j.written(id, range.clone())?;
                        }
                        Some(range)
                    }
                    None => None,
                };
                Ok((decision, journal_id, line, duplicate))
            })
            .await?;
        if duplicate {
            let reason =
                format!("{}: this response is already in the lesson file; not written twice", self.eng.probes[i].id);
            self.emit(EngineEvent::Refused { reason }).await;
        }
        if line.is_some() {
            self.summary.kept += 1;
        } else {
            self.summary.skipped += 1;
        }
        self.summary.probes_done += 1;
        let kept = match &decision {
            Decision::Kept { run, .. } if line.is_some() => {
                self.candidates[i].iter().find(|c| c.run == *run).map(|c| (user_turn, c.text.clone()))
            }
            _ => None,
        };
        self.history.push(Record { probe: i, decision: decision.clone(), journal_id, line, kept, earlier: false });
        self.emit(EngineEvent::ProbeDecided { probe: i, decision, best }).await;
        Ok(())
    }

    /// Waits for the operator's decision on probe `i` (settings, pauses and undos may come
    /// first) and carries it out.
    pub(super) async fn review(&mut self, i: usize) -> Result<ReviewOutcome, DistillError> {
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
                    return Ok(ReviewOutcome::Stopped);
                };
                match self.apply(c, Some(i)).await? {
                    Applied::Review(r) => break r,
                    Applied::Undid => return Ok(ReviewOutcome::Reopened),
                    Applied::Decided => return Ok(ReviewOutcome::Decided),
                    Applied::Stop => {
                        self.queue.push_front(Job::Review(i));
                        return Ok(ReviewOutcome::Stopped);
                    }
                    Applied::Mode(CurationMode::Auto) => {
                        self.auto_decide(i).await?;
                        return Ok(ReviewOutcome::Decided);
                    }
                    Applied::Mode(CurationMode::Review) | Applied::Nothing => {}
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
                    self.commit(i, Decision::Kept { run, by: Decider::Operator }, Some(c)).await?;
                    return Ok(ReviewOutcome::Decided);
                }
                Review::RejectAll => {
                    let best = best_of(&self.candidates[i]).cloned();
                    self.commit(i, Decision::Rejected, best).await?;
                    return Ok(ReviewOutcome::Decided);
                }
                Review::Skip => {
                    let best = best_of(&self.candidates[i]).cloned();
                    let decision = Decision::Skipped {
                        best: best.as_ref().and_then(Candidate::composite).unwrap_or(0.0),
                        by: Decider::Operator,
                    };
                    self.commit(i, decision, best).await?;
                    return Ok(ReviewOutcome::Decided);
                }
                Review::More { n } => {
                    self.generate(i, n.clamp(1, MAX_RUNS)).await?;
                    if self.eng_cancelled() {
                        self.queue.push_front(Job::Review(i));
                        return Ok(ReviewOutcome::Stopped);
                    }
                }
            }
        }
    }
}
