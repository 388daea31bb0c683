//! What the engine persists and resumes from. The session store implements [`Journal`]; the
//! engine calls it write-through: a candidate the moment it finishes, a decision before its
//! lesson line is written, and `written` once the line is synced.

use std::ops::Range;

use crate::probes::Probe;

use super::{Candidate, Decision, Tagging};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JournalError(pub String);

/// Write-through persistence of a run. `probe` is the index into the run's probe list.
pub trait Journal: Send {
    fn candidate(&mut self, probe: usize, p: &Probe, c: &Candidate) -> Result<(), JournalError>;
    /// Records a decision (append-only) and returns its id. Called before any lesson line.
    fn decision(
        &mut self,
        probe: usize,
        p: &Probe,
        d: &Decision,
        candidates: &[Candidate],
    ) -> Result<i64, JournalError>;
    /// The decision's line is now in the lesson file at `range`.
    fn written(&mut self, decision: i64, range: Range<u64>) -> Result<(), JournalError>;
    /// The decision is being taken back: recorded (as a new row; nothing is deleted) *before*
    /// its line at `line` is cut from the lesson file, so a kill in between leaves an intent
    /// that the next start finishes or rolls back. Returns the undo's id.
    fn undo(&mut self, decision: i64, line: Option<Range<u64>>) -> Result<i64, JournalError>;
    /// The undo is complete (`removed`: its line is out of the file, or it had none) or rolled
    /// back (the line could not be removed; the decision stands).
    fn undo_finished(&mut self, undo: i64, removed: bool) -> Result<(), JournalError>;
    /// Records the tags and note that now stand for each probe (a new row each; nothing is
    /// overwritten), attached to its standing decision if it has one. One commit for the lot.
    fn tag(&mut self, _items: &[(usize, Tagging)]) -> Result<(), JournalError> {
        Ok(())
    }
    /// The tags that stand for each probe of the run, stored earlier (resume).
    fn tags(&mut self) -> Result<Vec<(usize, Tagging)>, JournalError> {
        Ok(Vec::new())
    }
    /// The decision standing for `probe` from an earlier run, so it can be reopened (this run's
    /// own the engine knows). `None` when the probe is undecided or there is no store.
    fn standing(&mut self, _probe: usize) -> Result<Option<Standing>, JournalError> {
        Ok(None)
    }
    /// True when this (prompt, response) is already in the lesson file.
    fn is_duplicate(&self, _prompt: &str, _response: &str) -> bool {
        false
    }
}

/// A decision of an earlier run, as [`Journal::standing`] finds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    pub id: i64,
    pub decision: Decision,
    /// The probe's stored candidates (the engine does not load a decided probe's).
    pub candidates: Vec<Candidate>,
    /// The user turn and response of the lesson line a kept decision wrote.
    pub kept: Option<(String, String)>,
}

/// Where a probe starts when a run is resumed.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeStart {
    Fresh,
    /// Generated earlier (perhaps only in part: a kill loses the runs in flight) and not
    /// decided. The engine generates the runs still missing, then decides as usual: the gate
    /// in auto mode, the operator in review mode.
    Review(Vec<Candidate>),
    /// Decided earlier; not generated again.
    Done(Decision),
}
