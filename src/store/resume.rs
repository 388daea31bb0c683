//! Starting a run on a session: find or create the session, record the run, and turn what is
//! stored into the engine's plan (done / finish from stored candidates / generate). Then make
//! the lesson file agree with the store: a decision committed but not written is written, a
//! line already there is not written again, and a line torn by a kill is cut off.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use rusqlite::{OptionalExtension, params};

use super::journal::SessionJournal;
use super::reconcile::reconcile;
use super::rows::{CANDIDATE_COLUMNS, candidate_from_row, decider_from, sha256_hex};
use super::{ModelIdentity, Opened, StoreError};
use crate::backend::Sampling;
use crate::distill::{Decision, ProbeStart};
use crate::probes::Probe;

/// What identifies a session (the command line's root, model, probe set and output) and what a
/// run records about itself.
#[derive(Clone, Debug)]
pub struct SessionSpec {
    /// Canonical project root.
    pub root: PathBuf,
    pub model: String,
    pub probes: String,
    /// Canonical lesson file path.
    pub output: PathBuf,
    /// Start a new session even if one with this key exists.
    pub fresh: bool,
    pub kernel: Option<String>,
    pub signature: Option<String>,
    pub mode: String,
    pub sampling: Sampling,
    /// Every setting of the run, as JSON.
    pub config: serde_json::Value,
}

impl SessionSpec {
    #[must_use]
    pub fn key(&self) -> String {
        let parts =
            serde_json::json!([self.root.to_string_lossy(), self.model, self.probes, self.output.to_string_lossy()]);
        sha256_hex(parts.to_string().as_bytes())
    }
}

/// What starting the run found and did; one line in headless mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResumeReport {
    pub store: PathBuf,
    pub session: i64,
    pub run: i64,
    /// The session existed (this run continues it).
    pub resumed: bool,
    pub probes: usize,
    pub kept: usize,
    pub skipped: usize,
    pub rejected: usize,
    /// Probes with stored candidates and no decision.
    pub to_finish: usize,
    pub to_generate: usize,
    /// Committed lines written to the lesson file at start.
    pub written: usize,
    /// Committed lines found already in the file (not written again).
    pub found: usize,
    /// Lines the store wrote that are no longer in the file (removed by hand, or an undo cut off).
    pub missing: usize,
    /// Bytes of a torn line of ours cut off the end of the file.
    pub torn_cut: u64,
    /// Undos a kill interrupted, finished at start (their lines are out of the file).
    pub undone: usize,
    /// Undos a kill interrupted whose line had moved: rolled back, the decision stands.
    pub undo_rolled_back: usize,
    /// The weights differ from the previous run's.
    pub model_changed: bool,
    /// The probes decided before this run, oldest standing decision first (the workbench's
    /// history lists them in that order).
    pub decided_order: Vec<usize>,
}

impl ResumeReport {
    #[must_use]
    pub fn done(&self) -> usize {
        self.kept + self.skipped + self.rejected
    }
}

impl fmt::Display for ResumeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.resumed {
            write!(
                f,
                "session {} resumed (run {}, {}): {}/{} probes done ({} kept, {} skipped, {} rejected), \
                 {} to finish from stored candidates, {} to generate",
                self.session,
                self.run,
                self.store.display(),
                self.done(),
                self.probes,
                self.kept,
                self.skipped,
                self.rejected,
                self.to_finish,
                self.to_generate
            )?;
        } else {
            write!(
                f,
                "session {} started (run {}, {}): {} probes to generate",
                self.session,
                self.run,
                self.store.display(),
                self.to_generate
            )?;
        }
        if self.undone + self.undo_rolled_back > 0 {
            write!(f, "; interrupted undo(s): {} finished, {} rolled back", self.undone, self.undo_rolled_back)?;
        }
        if self.written + self.found + self.missing > 0 || self.torn_cut > 0 {
            write!(
                f,
                "; lesson file reconciled: {} committed line(s) written, {} already present",
                self.written, self.found
            )?;
            if self.torn_cut > 0 {
                write!(f, ", a torn line of {} bytes cut off", self.torn_cut)?;
            }
            if self.missing > 0 {
                write!(f, ", {} written line(s) no longer in the file (left out)", self.missing)?;
            }
        }
        if self.model_changed {
            f.write_str("; note: the model weights changed since the previous run")?;
        }
        Ok(())
    }
}

/// A decision as it stands after undos.
pub(crate) struct Effective {
    pub id: i64,
    pub kind: String,
    pub decider: String,
    pub best: Option<f64>,
    pub candidate_id: Option<i64>,
    pub candidate_run: Option<u32>,
}

/// The decision that stands for each probe row, undos applied.
pub(crate) fn effective(store: &super::Store, probe_row: i64) -> Result<Option<Effective>, StoreError> {
    let mut stmt = store
        .conn
        .prepare_cached(
            "SELECT d.id, d.kind, d.decider, d.best, c.run_no, d.undoes, d.candidate_id FROM decisions d
             LEFT JOIN candidates c ON c.id = d.candidate_id
             LEFT JOIN lesson_removal_ends e ON e.undo_id = d.id
             WHERE d.probe_row = ?1 AND e.how IS NOT 'rolled_back' ORDER BY d.id",
        )
        .map_err(store.sql())?;
    let rows = stmt
        .query_map([probe_row], |r| {
            Ok((
                Effective {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    decider: r.get(2)?,
                    best: r.get(3)?,
                    candidate_id: r.get(6)?,
                    candidate_run: r.get(4)?,
                },
                r.get::<_, Option<i64>>(5)?,
            ))
        })
        .map_err(store.sql())?;
    let mut standing: Vec<Effective> = Vec::new();
    for row in rows {
        let (d, undoes) = row.map_err(store.sql())?;
        match undoes {
            Some(target) => standing.retain(|s| s.id != target),
            None => standing.push(d),
        }
    }
    Ok(standing.pop())
}

pub(super) fn to_decision(e: &Effective) -> Decision {
    let by = decider_from(&e.decider);
    match e.kind.as_str() {
        "kept" => Decision::Kept { run: e.candidate_run.unwrap_or(0), by },
        "rejected" => Decision::Rejected,
        _ => Decision::Skipped { best: e.best.unwrap_or(0.0), by },
    }
}

impl Opened {
    /// Starts a run: returns the engine's journal, where each probe starts, and what was found.
    pub fn begin(
        self,
        spec: &SessionSpec,
        probes: &[Probe],
        model: &ModelIdentity,
    ) -> Result<(SessionJournal, Vec<ProbeStart>, ResumeReport), StoreError> {
        let store = &self.store;
        let sql = store.sql();
        let key = spec.key();
        let existing: Option<i64> = if spec.fresh {
            None
        } else {
            store
                .conn
                .query_row("SELECT id FROM sessions WHERE key = ?1 ORDER BY id DESC LIMIT 1", [&key], |r| r.get(0))
                .optional()
                .map_err(&sql)?
        };
        let session = match existing {
            Some(id) => id,
            None => {
                store
                    .conn
                    .execute(
                        "INSERT INTO sessions (key, root, model, probes, output) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            key,
                            spec.root.to_string_lossy(),
                            spec.model,
                            spec.probes,
                            spec.output.to_string_lossy()
                        ],
                    )
                    .map_err(&sql)?;
                store.conn.last_insert_rowid()
            }
        };
        let previous_sha: Option<Option<String>> = store
            .conn
            .query_row("SELECT model_sha256 FROM runs WHERE session_id = ?1 ORDER BY id DESC LIMIT 1", [session], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&sql)?;
        store
            .conn
            .execute(
                "INSERT INTO runs (session_id, pid, version, mode, backend, model_name, model_path, model_size,
                     model_sha256, sampling, config) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    session,
                    std::process::id(),
                    env!("CARGO_PKG_VERSION"),
                    spec.mode,
                    model.backend,
                    model.name,
                    model.path,
                    model.size.and_then(|s| i64::try_from(s).ok()),
                    model.sha256,
                    serde_json::to_string(&spec.sampling).unwrap_or_default(),
                    spec.config.to_string(),
                ],
            )
            .map_err(&sql)?;
        let run = store.conn.last_insert_rowid();
        let mut report = ResumeReport {
            store: store.path.clone(),
            session,
            run,
            resumed: existing.is_some(),
            probes: probes.len(),
            model_changed: matches!((&previous_sha, &model.sha256), (Some(Some(a)), Some(b)) if a != b),
            ..Default::default()
        };

        let mut probe_rows = Vec::with_capacity(probes.len());
        for p in probes {
            store
                .conn
                .execute(
                    "INSERT OR IGNORE INTO probes (session_id, probe_id, domain, prompt, source) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![session, p.id, p.domain, p.prompt, p.source],
                )
                .map_err(&sql)?;
            let row: i64 = store
                .conn
                .query_row(
                    "SELECT id FROM probes WHERE session_id = ?1 AND probe_id = ?2 AND prompt = ?3",
                    params![session, p.id, p.prompt],
                    |r| r.get(0),
                )
                .map_err(&sql)?;
            probe_rows.push(row);
        }

        super::reconcile::finish_undos(&self, session, &mut report)?;
        let mut starts = Vec::with_capacity(probes.len());
        let mut known = HashMap::new();
        let mut decided = Vec::new();
        for (i, &row) in probe_rows.iter().enumerate() {
            if let Some(e) = effective(store, row)? {
                match e.kind.as_str() {
                    "kept" => report.kept += 1,
                    "rejected" => report.rejected += 1,
                    _ => report.skipped += 1,
                }
                decided.push((e.id, i));
                starts.push(ProbeStart::Done(to_decision(&e)));
                continue;
            }
            let mut stmt = store
                .conn
                .prepare_cached(&format!(
                    "SELECT {CANDIDATE_COLUMNS}, id FROM candidates WHERE probe_row = ?1 AND outcome != 'cancelled' ORDER BY id"
                ))
                .map_err(&sql)?;
            let rows = stmt.query_map([row], |r| Ok((candidate_from_row(r)?, r.get::<_, i64>(10)?))).map_err(&sql)?;
            let mut stored: Vec<crate::distill::Candidate> = Vec::new();
            for r in rows {
                let (c, id) = r.map_err(&sql)?;
                known.insert((i, c.run), id);
                // A run number reused after a kill: the later row is the one the engine saw last.
                stored.retain(|s| s.run != c.run);
                stored.push(c);
            }
            if stored.is_empty() {
                report.to_generate += 1;
                starts.push(ProbeStart::Fresh);
            } else {
                stored.sort_by_key(|c| c.run);
                report.to_finish += 1;
                starts.push(ProbeStart::Review(stored));
            }
        }

        drop(sql);
        decided.sort_unstable();
        report.decided_order = decided.into_iter().map(|(_, i)| i).collect();
        let index = reconcile(&self, session, spec, &mut report)?;
        let journal = SessionJournal::new(self, run, spec, probe_rows, known, index);
        Ok((journal, starts, report))
    }
}
