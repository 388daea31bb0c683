//! Conversions between the engine's types and table rows.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::backend::{Metrics, Sampling};
use crate::distill::{Candidate, Decider, Decision, Outcome};

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Byte offsets and sizes as SQLite integers (files never reach 2^63 bytes).
pub(crate) fn sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An f32 setting as the decimal it was written as (0.7, not 0.699999988079071).
pub(crate) fn clean_f64(v: f32) -> f64 {
    v.to_string().parse().unwrap_or_else(|_| f64::from(v))
}

/// SQLite integers are signed; a u64 seed is stored as the same 64 bits.
#[allow(clippy::cast_possible_wrap)]
pub(crate) fn seed_to_sql(seed: u64) -> i64 {
    seed as i64
}

#[allow(clippy::cast_sign_loss)]
pub(crate) fn seed_from_sql(seed: i64) -> u64 {
    seed as u64
}

fn outcome_kind(o: &Outcome) -> &'static str {
    match o {
        Outcome::Scored { .. } => "scored",
        Outcome::TooShort => "too_short",
        Outcome::Failed(_) => "failed",
        Outcome::Cancelled => "cancelled",
    }
}

/// Inserts a candidate and returns its row id. An earlier candidate of the same probe with the
/// same text is linked through `duplicate_of` (identical candidates are flagged, not dropped);
/// an operator's edit names its parent's row in `derived_from`.
pub(crate) fn insert_candidate(
    conn: &Connection,
    probe_row: i64,
    run_id: i64,
    c: &Candidate,
    sampling: &Sampling,
    derived_from: Option<i64>,
) -> rusqlite::Result<i64> {
    let text_sha = sha256_hex(c.text.as_bytes());
    let duplicate_of: Option<i64> = if c.text.is_empty() {
        None
    } else {
        conn.query_row(
            "SELECT id FROM candidates WHERE probe_row = ?1 AND text_sha256 = ?2 ORDER BY id LIMIT 1",
            params![probe_row, text_sha],
            |r| r.get(0),
        )
        .optional()?
    };
    let (grammar, delta) = match &c.outcome {
        Outcome::Scored { grammar, delta } => (Some(grammar), Some(delta)),
        _ => (None, None),
    };
    let error = match &c.outcome {
        Outcome::Failed(e) => Some(e.as_str()),
        _ => None,
    };
    conn.execute(
        "INSERT INTO candidates (probe_row, run_id, run_no, text, text_sha256, outcome, error, seed,
             temperature, top_p, top_k, repeat_penalty, max_tokens, composite, uplift, echo, enrichment,
             sycophantic, grammar, delta, metrics, prompt_tokens, generated_tokens, decode_tok_s, wall_ms,
             duplicate_of, derived_from)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
             ?21, ?22, ?23, ?24, ?25, ?26, ?27)",
        params![
            probe_row,
            run_id,
            c.run,
            c.text,
            text_sha,
            outcome_kind(&c.outcome),
            error,
            seed_to_sql(c.seed),
            clean_f64(c.temperature),
            clean_f64(sampling.top_p),
            sampling.top_k,
            clean_f64(sampling.repeat_penalty),
            sampling.max_tokens,
            grammar.map(|g| g.composite),
            delta.map(|d| d.uplift),
            delta.map(|d| d.echo),
            delta.map(|d| d.enrichment),
            delta.map(|d| d.sycophantic),
            grammar.and_then(|g| serde_json::to_string(g).ok()),
            delta.and_then(|d| serde_json::to_string(d).ok()),
            serde_json::to_string(&c.metrics).unwrap_or_else(|_| "{}".into()),
            c.metrics.prompt_tokens,
            c.metrics.generated_tokens,
            c.metrics.decode_tok_s,
            c.metrics.wall.as_secs_f64() * 1000.0,
            duplicate_of,
            derived_from,
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// A stored candidate as the engine knows it.
pub(crate) fn candidate_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    // Columns: run_no, text, outcome, error, seed, temperature, grammar, delta, metrics, parent run.
    let kind: String = r.get(2)?;
    let grammar: Option<String> = r.get(6)?;
    let delta: Option<String> = r.get(7)?;
    let bad = |what: &str, e: serde_json::Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("{what}: {e}").into())
    };
    let outcome = match kind.as_str() {
        "scored" => Outcome::Scored {
            grammar: serde_json::from_str(grammar.as_deref().unwrap_or("null")).map_err(|e| bad("grammar", e))?,
            delta: serde_json::from_str(delta.as_deref().unwrap_or("null")).map_err(|e| bad("delta", e))?,
        },
        "too_short" => Outcome::TooShort,
        "failed" => Outcome::Failed(r.get::<_, Option<String>>(3)?.unwrap_or_default()),
        _ => Outcome::Cancelled,
    };
    let metrics: String = r.get(8)?;
    let temperature: f64 = r.get(5)?;
    #[allow(clippy::cast_possible_truncation)]
    Ok(Candidate {
        run: r.get(0)?,
        text: r.get(1)?,
        outcome,
        metrics: serde_json::from_str::<Metrics>(&metrics).unwrap_or_default(),
        seed: seed_from_sql(r.get(4)?),
        temperature: temperature as f32,
        derived_from: r.get(9)?,
    })
}

/// Selects from `candidates` (unaliased); the last column is the parent's run number of an edit.
pub(crate) const CANDIDATE_COLUMNS: &str = "run_no, text, outcome, error, seed, temperature, grammar, delta, metrics, \
     (SELECT p.run_no FROM candidates p WHERE p.id = candidates.derived_from)";

pub(crate) fn decider_from(s: &str) -> Decider {
    if s == Decider::Operator.as_str() { Decider::Operator } else { Decider::Gate }
}

/// Kind, decider and best score of a decision, as stored.
pub(crate) fn decision_columns(d: &Decision) -> (&'static str, &'static str, Option<f64>) {
    match d {
        Decision::Kept { by, .. } => ("kept", by.as_str(), None),
        Decision::Skipped { best, by } => ("skipped", by.as_str(), Some(*best)),
        Decision::Rejected => ("rejected", Decider::Operator.as_str(), None),
    }
}
