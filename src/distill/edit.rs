//! The operator's edits: a candidate's text changed by hand, scored at once as a generated one
//! is (grammar v3 and the delta against the bare probe) and kept as a candidate of its own,
//! derived from the one it edits.

use super::generate::next_after;
use super::run::Run;
use super::{Candidate, DistillError, EngineEvent};
use crate::backend::Metrics;

impl Run {
    /// Adds the operator's `text` as an edit of candidate `parent` of `probe`. Refused (with a
    /// reason) when there is no such candidate or nothing changed.
    pub(super) async fn add_edit(&mut self, probe: usize, parent: u32, text: String) -> Result<(), DistillError> {
        let refuse = |reason: String| EngineEvent::Refused { reason };
        let Some(p) = self.eng.probes.get(probe).cloned() else {
            self.emit(refuse(format!("no probe {probe} to edit"))).await;
            return Ok(());
        };
        let Some(original) = self.candidates[probe].iter().find(|c| c.run == parent) else {
            self.emit(refuse(format!("{}: no candidate {} to edit", p.id, parent + 1))).await;
            return Ok(());
        };
        if original.text == text {
            self.emit(refuse(format!("{}: candidate {} unchanged; no edit stored", p.id, parent + 1))).await;
            return Ok(());
        }
        if text.trim().is_empty() {
            self.emit(refuse(format!("{}: the edit is empty; no edit stored", p.id))).await;
            return Ok(());
        }
        let run = next_after(&self.candidates[probe]);
        let (scorer, thresholds, min_chars) =
            (std::sync::Arc::clone(&self.eng.scorer), self.eng.cfg.thresholds, self.eng.cfg.min_chars);
        let (prompt, scored_text) = (p.prompt.clone(), text.clone());
        // Scoring is pure CPU work (milliseconds to a second for a long answer): off the workers.
        let outcome = tokio::task::spawn_blocking(move || {
            let imprint = scorer.imprint(&prompt);
            super::generate::score_with(&scorer, &imprint, &scored_text, thresholds, min_chars)
        })
        .await
        .map_err(|e| DistillError::Persist(format!("scoring the edit failed: {e}")))?;
        let edit = Candidate {
            run,
            text,
            outcome,
            metrics: Metrics::default(),
            seed: 0,
            temperature: 0.0,
            derived_from: Some(parent),
        };
        let stored = edit.clone();
        self.persist(move |ps| match ps.journal.as_mut() {
            Some(j) => Ok(j.candidate(probe, &p, &stored)?),
            None => Ok(()),
        })
        .await?;
        self.candidates[probe].push(edit.clone());
        self.candidates[probe].sort_by_key(|c| c.run);
        self.emit(EngineEvent::EditAdded { probe, candidate: edit }).await;
        Ok(())
    }
}
