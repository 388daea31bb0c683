//! The engine's write-through journal over the store. Every call is one autocommitted statement,
//! so each returns only once its row is durable.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::lessonfile::{ContentKey, LessonIndex, content_key};
use super::resume::{SessionSpec, effective, to_decision};
use super::rows::{CANDIDATE_COLUMNS, candidate_from_row, decision_columns, insert_candidate, sql_u64};
use super::{Opened, Store, StoreError};
use crate::backend::Sampling;
use crate::distill::{Candidate, Decision, Journal, JournalError, Standing, Tagging};
use crate::lesson::{TrainingExample, training_line};
use crate::probes::Probe;

/// Journals one run of a session. Holds the session lock until dropped.
pub struct SessionJournal {
    opened: Opened,
    run: i64,
    output: PathBuf,
    kernel: Option<String>,
    signature: Option<String>,
    sampling: Sampling,
    /// Probe list index → probe row.
    probe_rows: Vec<i64>,
    /// (probe index, run number) → candidate row.
    candidates: HashMap<(usize, u32), i64>,
    /// Kept decisions of this run → their content, for `written` and `undo`.
    kept: HashMap<i64, ContentKey>,
    written: HashSet<i64>,
    /// Undos under way → the decision each takes back.
    undos: HashMap<i64, i64>,
    /// What the lesson file holds, by content (dedup).
    index: LessonIndex,
}

impl std::fmt::Debug for SessionJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionJournal").field("run", &self.run).field("output", &self.output).finish_non_exhaustive()
    }
}

fn err(e: impl std::fmt::Display) -> JournalError {
    JournalError(e.to_string())
}

impl SessionJournal {
    pub(super) fn new(
        opened: Opened,
        run: i64,
        spec: &SessionSpec,
        probe_rows: Vec<i64>,
        candidates: HashMap<(usize, u32), i64>,
        index: LessonIndex,
    ) -> Self {
        Self {
            opened,
            run,
            output: spec.output.clone(),
            kernel: spec.kernel.clone(),
            signature: spec.signature.clone(),
            sampling: spec.sampling,
            probe_rows,
            candidates,
            kept: HashMap::new(),
            written: HashSet::new(),
            undos: HashMap::new(),
            index,
        }
    }

    #[must_use]
    pub fn store(&self) -> &Store {
        &self.opened.store
    }

    #[must_use]
    pub fn run_id(&self) -> i64 {
        self.run
    }

    fn row(&self, probe: usize) -> Result<i64, JournalError> {
        self.probe_rows.get(probe).copied().ok_or_else(|| err(format!("probe {probe} is not in this session")))
    }

    fn user_turn(&self, prompt: &str) -> String {
        crate::config::sandwich(self.kernel.as_deref(), self.signature.as_deref(), prompt)
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> JournalError + '_ {
        let path = self.opened.store.path.clone();
        move |source| err(StoreError::Sql { path: path.clone(), source })
    }
}

impl Journal for SessionJournal {
    fn candidate(&mut self, probe: usize, _p: &Probe, c: &Candidate) -> Result<(), JournalError> {
        let row = self.row(probe)?;
        let parent = match c.derived_from {
            Some(run) => Some(
                *self
                    .candidates
                    .get(&(probe, run))
                    .ok_or_else(|| err(format!("probe {probe}: no stored candidate {run} to derive from")))?,
            ),
            None => None,
        };
        let id =
            insert_candidate(&self.opened.store.conn, row, self.run, c, &self.sampling, parent).map_err(self.sql())?;
        self.candidates.insert((probe, c.run), id);
        crate::failpoint::hit("candidate-stored");
        Ok(())
    }

    fn decision(
        &mut self,
        probe: usize,
        p: &Probe,
        d: &Decision,
        candidates: &[Candidate],
    ) -> Result<i64, JournalError> {
        let row = self.row(probe)?;
        let (kind, decider, best) = decision_columns(d);
        let mut kept = None;
        if let Decision::Kept { run, .. } = d {
            let c = candidates
                .iter()
                .find(|c| c.run == *run)
                .ok_or_else(|| err(format!("{}: no candidate {run} to keep", p.id)))?;
            let id = match self.candidates.get(&(probe, *run)) {
                Some(id) => *id,
                None => insert_candidate(&self.opened.store.conn, row, self.run, c, &self.sampling, None)
                    .map_err(self.sql())?,
            };
            let user = self.user_turn(&p.prompt);
            let line = training_line(&TrainingExample::user_assistant(user.clone(), c.text.clone()));
            kept = Some((id, content_key(&user, &c.text), user, line));
        }
        let (candidate_id, user, line) = match &kept {
            Some((id, _, user, line)) => (Some(*id), Some(user.as_str()), Some(line.as_str())),
            None => (None, None, None),
        };
        self.opened
            .store
            .conn
            .execute(
                "INSERT INTO decisions (probe_row, run_id, kind, decider, candidate_id, best, user_text, line)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![row, self.run, kind, decider, candidate_id, best, user, line],
            )
            .map_err(self.sql())?;
        let id = self.opened.store.conn.last_insert_rowid();
        if let Some((_, key, _, _)) = kept {
            self.kept.insert(id, key);
        }
        crate::failpoint::hit("decision-committed");
        Ok(id)
    }

    fn written(&mut self, decision: i64, range: Range<u64>) -> Result<(), JournalError> {
        crate::failpoint::hit("line-appended");
        self.opened
            .store
            .conn
            .execute(
                "INSERT INTO lesson_writes (decision_id, output, start, end, how) VALUES (?1, ?2, ?3, ?4, 'appended')",
                params![decision, self.output.to_string_lossy(), sql_u64(range.start), sql_u64(range.end)],
            )
            .map_err(self.sql())?;
        if let Some(key) = self.kept.get(&decision) {
            self.index.add(*key, range);
            self.written.insert(decision);
        }
        Ok(())
    }

    fn undo(&mut self, decision: i64, line: Option<Range<u64>>) -> Result<i64, JournalError> {
        let conn = &self.opened.store.conn;
        let tx = conn.unchecked_transaction().map_err(self.sql())?;
        tx.execute(
            "INSERT INTO decisions (probe_row, run_id, kind, decider, undoes)
             SELECT probe_row, ?1, 'undo', 'operator', id FROM decisions WHERE id = ?2",
            params![self.run, decision],
        )
        .map_err(self.sql())?;
        let undo = tx.last_insert_rowid();
        if let Some(range) = line {
            tx.execute(
                "INSERT INTO lesson_removals (undo_id, output, start, end) VALUES (?1, ?2, ?3, ?4)",
                params![undo, self.output.to_string_lossy(), sql_u64(range.start), sql_u64(range.end)],
            )
            .map_err(self.sql())?;
        }
        tx.commit().map_err(self.sql())?;
        self.undos.insert(undo, decision);
        Ok(undo)
    }

    fn undo_finished(&mut self, undo: i64, removed: bool) -> Result<(), JournalError> {
        let how = if removed { "removed" } else { "rolled_back" };
        self.opened
            .store
            .conn
            .execute(
                "INSERT INTO lesson_removal_ends (undo_id, how)
                 SELECT undo_id, ?2 FROM lesson_removals WHERE undo_id = ?1",
                params![undo, how],
            )
            .map_err(self.sql())?;
        if let Some(decision) = self.undos.remove(&undo)
            && removed
            && self.written.remove(&decision)
            && let Some(key) = self.kept.get(&decision)
        {
            self.index.remove(key);
        }
        Ok(())
    }

    fn tag(&mut self, items: &[(usize, Tagging)]) -> Result<(), JournalError> {
        let tx = self.opened.store.conn.unchecked_transaction().map_err(self.sql())?;
        for (probe, tagging) in items {
            let row = self.row(*probe)?;
            let decision = super::resume::effective(&self.opened.store, row).map_err(err)?.map(|d| d.id);
            let tags = serde_json::to_string(&tagging.tags).map_err(err)?;
            tx.execute(
                "INSERT INTO decision_tags (probe_row, decision_id, run_id, tags, note) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![row, decision, self.run, tags, tagging.note],
            )
            .map_err(self.sql())?;
        }
        tx.commit().map_err(self.sql())
    }

    fn tags(&mut self) -> Result<Vec<(usize, Tagging)>, JournalError> {
        let index: HashMap<i64, usize> = self.probe_rows.iter().enumerate().map(|(i, r)| (*r, i)).collect();
        let standing = super::tags::standing(&self.opened.store).map_err(err)?;
        let mut out: Vec<(usize, Tagging)> =
            standing.into_iter().filter_map(|(row, t)| index.get(&row).map(|&i| (i, t))).collect();
        out.sort_by_key(|(i, _)| *i);
        Ok(out)
    }

    fn standing(&mut self, probe: usize) -> Result<Option<Standing>, JournalError> {
        let row = self.row(probe)?;
        let store = &self.opened.store;
        let Some(e) = effective(store, row).map_err(err)? else { return Ok(None) };
        let mut stmt = store
            .conn
            .prepare_cached(&format!(
                "SELECT {CANDIDATE_COLUMNS}, id FROM candidates WHERE probe_row = ?1 AND outcome != 'cancelled' ORDER BY id"
            ))
            .map_err(self.sql())?;
        let rows = stmt.query_map([row], |r| Ok((candidate_from_row(r)?, r.get::<_, i64>(10)?))).map_err(self.sql())?;
        let mut candidates: Vec<Candidate> = Vec::new();
        for r in rows {
            let (c, id) = r.map_err(self.sql())?;
            self.candidates.insert((probe, c.run), id);
            // A run number reused after a kill: the later row is the one the engine saw last.
            candidates.retain(|s| s.run != c.run);
            candidates.push(c);
        }
        candidates.sort_by_key(|c| c.run);
        let kept: Option<(String, String, bool)> = if e.kind == "kept" {
            store
                .conn
                .query_row(
                    "SELECT d.user_text, c.text, w.decision_id IS NOT NULL FROM decisions d
                     JOIN candidates c ON c.id = d.candidate_id
                     LEFT JOIN lesson_writes w ON w.decision_id = d.id WHERE d.id = ?1",
                    [e.id],
                    |r| Ok((r.get::<_, Option<String>>(0)?.unwrap_or_default(), r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(self.sql())?
        } else {
            None
        };
        if let Some((user, text, written)) = &kept {
            // So that taking it back updates what the duplicate check knows, as for this run's.
            self.kept.insert(e.id, content_key(user, text));
            if *written {
                self.written.insert(e.id);
            }
        }
        Ok(Some(Standing { id: e.id, decision: to_decision(&e), candidates, kept: kept.map(|(u, t, _)| (u, t)) }))
    }

    fn is_duplicate(&self, prompt: &str, response: &str) -> bool {
        self.index.contains(&content_key(&self.user_turn(prompt), response))
            || self.index.contains(&content_key(prompt, response))
    }
}

impl Drop for SessionJournal {
    fn drop(&mut self) {
        // Best effort: a run without an end row was killed, which is worth knowing too.
        let _ = self.opened.store.conn.execute("INSERT OR IGNORE INTO run_ends (run_id) VALUES (?1)", [self.run]);
    }
}
