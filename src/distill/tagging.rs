//! Curation beyond one decision at a time: tags and notes, and bulk actions over many probes.

use std::collections::HashSet;

use super::run::{Job, Run};
use super::{BulkAction, Candidate, Decider, Decision, DistillError, EngineEvent, Tagging, best_of};

/// How often a bulk reports its progress (in probes handled).
const PROGRESS_EVERY: usize = 64;

impl Job {
    pub(super) fn probe(&self) -> usize {
        match self {
            Job::Generate(i) | Job::Resume(i) | Job::Review(i) => *i,
        }
    }
}

impl Run {
    /// Stores the tags (one commit) and reports the ones that now stand.
    pub(super) async fn tag(&mut self, items: Vec<(usize, Tagging)>) -> Result<(), DistillError> {
        let n = self.eng.probes.len();
        if let Some((bad, _)) = items.iter().find(|(i, _)| *i >= n) {
            let reason = format!("no probe {} to tag ({n} in this run)", bad + 1);
            self.emit(EngineEvent::Refused { reason }).await;
            return Ok(());
        }
        if items.is_empty() {
            return Ok(());
        }
        let stored = items.clone();
        let result = self
            .persist(move |p| {
                Ok(match p.journal.as_mut() {
                    Some(j) => j.tag(&stored),
                    None => Ok(()),
                })
            })
            .await?;
        match result {
            Ok(()) => self.emit(EngineEvent::Tagged { tags: items }).await,
            // A tag that could not be stored is not shown as if it were; the run goes on.
            Err(e) => self.emit(EngineEvent::Refused { reason: format!("tags not stored: {e}") }).await,
        }
        Ok(())
    }

    /// The tags an earlier session stored, reported once at start.
    pub(super) async fn report_stored_tags(&mut self) -> Result<(), DistillError> {
        let tags = self.persist(|p| Ok(p.journal.as_mut().map(|j| j.tags()).transpose()?)).await?;
        if let Some(tags) = tags.filter(|t| !t.is_empty()) {
            self.emit(EngineEvent::Tagged { tags }).await;
        }
        Ok(())
    }

    /// Applies `action` to each probe of `probes` in order. Returns whether the probe under
    /// review (`reviewing`) was decided by it.
    pub(super) async fn bulk(
        &mut self,
        probes: Vec<usize>,
        action: BulkAction,
        reviewing: Option<usize>,
    ) -> Result<bool, DistillError> {
        let total = probes.len();
        if let BulkAction::Tag(tagging) = action {
            let n = self.eng.probes.len();
            let items: Vec<_> = probes.into_iter().filter(|&i| i < n).map(|i| (i, tagging.clone())).collect();
            let tagged = items.len();
            self.tag(items).await?;
            self.emit(EngineEvent::BulkProgress { done: total, total, decided: tagged }).await;
            return Ok(false);
        }
        // Undecided probes are the ones still queued (or the one under review).
        let open: HashSet<usize> = self.queue.iter().map(Job::probe).chain(reviewing).collect();
        let mut decided = HashSet::new();
        for (k, i) in probes.into_iter().enumerate() {
            if self.eng_cancelled() {
                break;
            }
            if open.contains(&i) && !decided.contains(&i) && !self.candidates[i].is_empty() {
                let best = best_of(&self.candidates[i]).cloned();
                let decision = match (&action, &best) {
                    (BulkAction::Accept, Some(b)) => Some(Decision::Kept { run: b.run, by: Decider::Operator }),
                    // Nothing scored: nothing to keep; the probe stays open.
                    (BulkAction::Accept, None) | (BulkAction::Tag(_), _) => None,
                    (BulkAction::Reject, _) => Some(Decision::Rejected),
                    (BulkAction::Skip, _) => Some(Decision::Skipped {
                        best: best.as_ref().and_then(Candidate::composite).unwrap_or(0.0),
                        by: Decider::Operator,
                    }),
                };
                if let Some(decision) = decision {
                    self.commit(i, decision, best).await?;
                    decided.insert(i);
                }
            }
            if (k + 1) % PROGRESS_EVERY == 0 && k + 1 < total {
                self.emit(EngineEvent::BulkProgress { done: k + 1, total, decided: decided.len() }).await;
            }
        }
        self.queue.retain(|j| !decided.contains(&j.probe()));
        self.emit(EngineEvent::BulkProgress { done: total, total, decided: decided.len() }).await;
        Ok(reviewing.is_some_and(|r| decided.contains(&r)))
    }
}
