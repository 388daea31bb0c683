//! Reading what an export draws on: the selected sessions' probes, the decision that stands for
//! each, and their candidates.

use std::collections::HashMap;

use rusqlite::params;

use super::super::resume::{Effective, effective};
use super::super::{Store, StoreError};
use super::Filter;

pub(super) struct Cand {
    pub id: i64,
    pub run_id: i64,
    pub text: String,
    pub composite: Option<f64>,
    /// The candidate this one is an operator's edit of.
    pub derived_from: Option<i64>,
}

pub(super) struct ProbeData {
    pub prompt: String,
    pub decision: Option<Effective>,
    /// The user turn the lesson file got, for a kept decision.
    pub kept_user: Option<String>,
    /// Scored candidates only, in generation order.
    pub candidates: Vec<Cand>,
    /// The tags and note that stand for the probe (empty when never tagged).
    pub tagging: crate::distill::Tagging,
}

impl ProbeData {
    pub fn chosen(&self) -> Option<&Cand> {
        let d = self.decision.as_ref().filter(|d| d.kind == "kept")?;
        self.candidates.iter().find(|c| Some(c.id) == d.candidate_id)
    }

    /// The original a kept edit was made from: DPO's rejected side by default.
    pub fn original_of(&self, c: &Cand) -> Option<&Cand> {
        let parent = c.derived_from?;
        self.candidates.iter().find(|o| o.id == parent && o.text != c.text && !o.text.trim().is_empty())
    }

    pub fn kind(&self) -> Option<&str> {
        self.decision.as_ref().map(|d| d.kind.as_str())
    }
}

/// Sessions matching the filter, oldest first.
pub(super) fn sessions(store: &Store, filter: &Filter) -> Result<Vec<i64>, StoreError> {
    let mut stmt = store.conn.prepare("SELECT id, model, probes FROM sessions ORDER BY id").map_err(store.sql())?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .map_err(store.sql())?;
    let mut out = Vec::new();
    for row in rows {
        let (id, model, probes) = row.map_err(store.sql())?;
        let keep = (filter.sessions.is_empty() || filter.sessions.contains(&id))
            && filter.model.as_ref().is_none_or(|m| *m == model)
            && filter.probes.as_ref().is_none_or(|p| {
                // A probe file is stored by its canonical path; a set by its name.
                *p == probes || super::super::canonical(std::path::Path::new(p)).to_string_lossy() == probes
            });
        if keep {
            out.push(id);
        }
    }
    Ok(out)
}

pub(super) fn probes(store: &Store, sessions: &[i64]) -> Result<Vec<ProbeData>, StoreError> {
    let sql = store.sql();
    let mut tags = super::super::tags::standing(store)?;
    let mut out = Vec::new();
    for &session in sessions {
        let mut stmt =
            store.conn.prepare("SELECT id, prompt FROM probes WHERE session_id = ?1 ORDER BY id").map_err(&sql)?;
        let rows: Vec<(i64, String)> = stmt
            .query_map([session], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(&sql)?
            .collect::<Result<_, _>>()
            .map_err(&sql)?;
        for (row, prompt) in rows {
            let decision = effective(store, row)?;
            let kept_user = match decision.as_ref().filter(|d| d.kind == "kept") {
                Some(d) => store
                    .conn
                    .query_row("SELECT user_text FROM decisions WHERE id = ?1", [d.id], |r| r.get(0))
                    .map_err(&sql)?,
                None => None,
            };
            let mut stmt = store
                .conn
                .prepare_cached(
                    "SELECT id, run_id, text, composite, derived_from FROM candidates
                     WHERE probe_row = ?1 AND outcome = 'scored' ORDER BY id",
                )
                .map_err(&sql)?;
            let candidates = stmt
                .query_map(params![row], |r| {
                    Ok(Cand {
                        id: r.get(0)?,
                        run_id: r.get(1)?,
                        text: r.get(2)?,
                        composite: r.get(3)?,
                        derived_from: r.get(4)?,
                    })
                })
                .map_err(&sql)?
                .collect::<Result<_, _>>()
                .map_err(&sql)?;
            let tagging = tags.remove(&row).unwrap_or_default();
            out.push(ProbeData { prompt, decision, kept_user, candidates, tagging });
        }
    }
    Ok(out)
}

/// Kernel and signature, by run.
pub(super) type Sandwiches = HashMap<i64, (Option<String>, Option<String>)>;

/// Kernel and signature each run wrote its lesson lines with, from its config snapshot.
pub(super) fn run_sandwiches(store: &Store) -> Result<Sandwiches, StoreError> {
    let mut stmt = store.conn.prepare("SELECT id, config FROM runs").map_err(store.sql())?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).map_err(store.sql())?;
    let mut out = HashMap::new();
    for row in rows {
        let (id, config) = row.map_err(store.sql())?;
        let v: serde_json::Value = serde_json::from_str(&config).unwrap_or_default();
        let text = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_owned);
        out.insert(id, (text("kernel"), text("signature")));
    }
    Ok(out)
}
