//! Scores by scorer: append-only rows naming the scorer and its version. A candidate's columns
//! keep the score it was stored with (grammar v3, what the gate and exports use); a new scorer,
//! or a new version of one, adds rows here instead of overwriting anything. A trigger records
//! every scored candidate's grammar v3 score as it is inserted (the migration that added `scores`).

use rusqlite::params;

use super::{Store, StoreError};
use crate::scorer::{DeltaScore, GrammarScore};

/// One stored score.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreRow {
    pub scorer: String,
    pub version: String,
    pub composite: Option<f64>,
    pub uplift: Option<f64>,
    pub echo: Option<f64>,
    pub enrichment: Option<f64>,
    pub created_at: String,
}

/// Every score of a candidate, oldest first.
pub fn scores_of(store: &Store, candidate: i64) -> Result<Vec<ScoreRow>, StoreError> {
    let mut stmt = store
        .conn
        .prepare_cached(
            "SELECT scorer, version, composite, uplift, echo, enrichment, created_at FROM scores
             WHERE candidate_id = ?1 ORDER BY id",
        )
        .map_err(store.sql())?;
    stmt.query_map([candidate], |r| {
        Ok(ScoreRow {
            scorer: r.get(0)?,
            version: r.get(1)?,
            composite: r.get(2)?,
            uplift: r.get(3)?,
            echo: r.get(4)?,
            enrichment: r.get(5)?,
            created_at: r.get(6)?,
        })
    })
    .map_err(store.sql())?
    .collect::<Result<_, _>>()
    .map_err(store.sql())
}

/// Records a score of `candidate` by `scorer` at `version`. Returns false (and changes nothing)
/// when that scorer and version already scored it: scores are never overwritten.
pub fn record(
    store: &Store,
    candidate: i64,
    scorer: &str,
    version: &str,
    grammar: &GrammarScore,
    delta: &DeltaScore,
) -> Result<bool, StoreError> {
    let n = store
        .conn
        .execute(
            "INSERT OR IGNORE INTO scores (candidate_id, scorer, version, composite, uplift, echo, enrichment,
                 sycophantic, grammar, delta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                candidate,
                scorer,
                version,
                grammar.composite,
                delta.uplift,
                delta.echo,
                delta.enrichment,
                delta.sycophantic,
                serde_json::to_string(grammar).ok(),
                serde_json::to_string(delta).ok(),
            ],
        )
        .map_err(store.sql())?;
    Ok(n == 1)
}
