//! The schema, as an ordered list of migrations. `PRAGMA user_version` is the number applied;
//! `application_id` marks the file as lem-tui's so a stray SQLite file is not written into.
//! Migrations only ever add: released ones are never edited.

use std::path::Path;

use rusqlite::Connection;

use super::{StoreError, classify};

/// "LEMt" in ASCII.
const APPLICATION_ID: i64 = 0x4c45_4d74;

const MIGRATIONS: &[&str] = &[
    // 1: sessions, runs, probes, candidates, decisions, lesson writes, exports, hash cache.
    r"
CREATE TABLE model_files (
    id         INTEGER PRIMARY KEY,
    path       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    sha256     TEXT NOT NULL,
    hashed_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (path, size, mtime_ns)
);
CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY,
    key        TEXT NOT NULL,
    root       TEXT NOT NULL,
    model      TEXT NOT NULL,
    probes     TEXT NOT NULL,
    output     TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX sessions_by_key ON sessions (key, id);
CREATE TABLE runs (
    id             INTEGER PRIMARY KEY,
    session_id     INTEGER NOT NULL REFERENCES sessions (id),
    pid            INTEGER NOT NULL,
    version        TEXT NOT NULL,
    mode           TEXT NOT NULL,
    backend        TEXT NOT NULL,
    model_name     TEXT NOT NULL,
    model_path     TEXT NOT NULL,
    model_size     INTEGER,
    model_sha256   TEXT,
    sampling       TEXT NOT NULL,
    config         TEXT NOT NULL,
    started_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE TABLE run_ends (
    run_id     INTEGER PRIMARY KEY REFERENCES runs (id),
    ended_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE TABLE probes (
    id         INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions (id),
    probe_id   TEXT NOT NULL,
    domain     TEXT,
    prompt     TEXT NOT NULL,
    source     TEXT NOT NULL,
    UNIQUE (session_id, probe_id, prompt)
);
CREATE TABLE candidates (
    id               INTEGER PRIMARY KEY,
    probe_row        INTEGER NOT NULL REFERENCES probes (id),
    run_id           INTEGER NOT NULL REFERENCES runs (id),
    run_no           INTEGER NOT NULL,
    text             TEXT NOT NULL,
    text_sha256      TEXT NOT NULL,
    outcome          TEXT NOT NULL CHECK (outcome IN ('scored', 'too_short', 'failed', 'cancelled')),
    error            TEXT,
    seed             INTEGER NOT NULL,
    temperature      REAL NOT NULL,
    top_p            REAL NOT NULL,
    top_k            INTEGER NOT NULL,
    repeat_penalty   REAL NOT NULL,
    max_tokens       INTEGER NOT NULL,
    composite        REAL,
    uplift           REAL,
    echo             REAL,
    enrichment       REAL,
    sycophantic      INTEGER,
    grammar          TEXT,
    delta            TEXT,
    metrics          TEXT NOT NULL,
    prompt_tokens    INTEGER NOT NULL,
    generated_tokens INTEGER NOT NULL,
    decode_tok_s     REAL NOT NULL,
    wall_ms          REAL NOT NULL,
    duplicate_of     INTEGER REFERENCES candidates (id),
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX candidates_by_probe ON candidates (probe_row, id);
CREATE INDEX candidates_by_text ON candidates (probe_row, text_sha256);
CREATE TABLE decisions (
    id           INTEGER PRIMARY KEY,
    probe_row    INTEGER NOT NULL REFERENCES probes (id),
    run_id       INTEGER NOT NULL REFERENCES runs (id),
    kind         TEXT NOT NULL CHECK (kind IN ('kept', 'skipped', 'rejected', 'undo')),
    decider      TEXT NOT NULL,
    candidate_id INTEGER REFERENCES candidates (id),
    best         REAL,
    undoes       INTEGER REFERENCES decisions (id),
    user_text    TEXT,
    line         TEXT,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    CHECK ((kind = 'undo') = (undoes IS NOT NULL)),
    CHECK ((kind = 'kept') = (candidate_id IS NOT NULL AND line IS NOT NULL))
);
CREATE INDEX decisions_by_probe ON decisions (probe_row, id);
CREATE TABLE lesson_writes (
    decision_id INTEGER PRIMARY KEY REFERENCES decisions (id),
    output      TEXT NOT NULL,
    start       INTEGER NOT NULL,
    end         INTEGER NOT NULL,
    how         TEXT NOT NULL CHECK (how IN ('appended', 'found', 'reconciled')),
    written_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE TABLE exports (
    id         INTEGER PRIMARY KEY,
    format     TEXT NOT NULL,
    filter     TEXT NOT NULL,
    output     TEXT NOT NULL,
    manifest   TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    records    INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
",
    // 2: undo as an intent. An undo of a written line records where the line is *before* the
    // file is cut; its end says whether the cut happened ('removed') or could not and the
    // decision stands ('rolled_back'). An undo without an end was interrupted: the next start
    // finishes or rolls it back.
    r"
CREATE TABLE lesson_removals (
    undo_id    INTEGER PRIMARY KEY REFERENCES decisions (id),
    output     TEXT NOT NULL,
    start      INTEGER NOT NULL,
    end        INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE TABLE lesson_removal_ends (
    undo_id    INTEGER PRIMARY KEY REFERENCES lesson_removals (undo_id),
    how        TEXT NOT NULL CHECK (how IN ('removed', 'rolled_back')),
    ended_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
",
    // 3: scores name their scorer and are append-only (a new scorer version adds rows); ingested
    // datasets and where each of their candidates came from.
    r"
CREATE TABLE scores (
    id           INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL REFERENCES candidates (id),
    scorer       TEXT NOT NULL,
    version      TEXT NOT NULL,
    composite    REAL,
    uplift       REAL,
    echo         REAL,
    enrichment   REAL,
    sycophantic  INTEGER,
    grammar      TEXT,
    delta        TEXT,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE (candidate_id, scorer, version)
);
INSERT INTO scores (candidate_id, scorer, version, composite, uplift, echo, enrichment, sycophantic, created_at)
    SELECT c.id, 'grammar-v3', r.version, c.composite, c.uplift, c.echo, c.enrichment, c.sycophantic, c.created_at
    FROM candidates c JOIN runs r ON r.id = c.run_id WHERE c.outcome = 'scored' ORDER BY c.id;
-- The score a candidate is stored with is grammar v3 as the lem-tui of its run computed it. Its
-- breakdown stays in the candidate's grammar/delta columns (NULL here: not stored twice).
CREATE TRIGGER candidates_score AFTER INSERT ON candidates WHEN NEW.outcome = 'scored' BEGIN
    INSERT OR IGNORE INTO scores (candidate_id, scorer, version, composite, uplift, echo, enrichment, sycophantic)
    SELECT NEW.id, 'grammar-v3', r.version, NEW.composite, NEW.uplift, NEW.echo, NEW.enrichment, NEW.sycophantic
    FROM runs r WHERE r.id = NEW.run_id;
END;
CREATE TABLE datasets (
    id          INTEGER PRIMARY KEY,
    session_id  INTEGER NOT NULL REFERENCES sessions (id),
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    path        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    lines       INTEGER NOT NULL,
    items       INTEGER NOT NULL,
    duplicates  INTEGER NOT NULL,
    bad         INTEGER NOT NULL,
    report      TEXT NOT NULL,
    ingested_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE TABLE dataset_items (
    candidate_id INTEGER PRIMARY KEY REFERENCES candidates (id),
    dataset_id   INTEGER NOT NULL REFERENCES datasets (id),
    line         INTEGER NOT NULL,
    format       TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('answer', 'chosen', 'rejected')),
    context      TEXT
);
",
    // 4: an operator's edit is a candidate of its own, derived from the one it edits (which is
    // kept as it was).
    r"
ALTER TABLE candidates ADD COLUMN derived_from INTEGER REFERENCES candidates (id);
",
    // 5: tags and a note on a probe's decision, append-only. Each
    // row holds the whole set as it then stood (a JSON array of strings); the latest row of a
    // probe stands, so a tag is removed by a new row without it.
    r"
CREATE TABLE decision_tags (
    id          INTEGER PRIMARY KEY,
    probe_row   INTEGER NOT NULL REFERENCES probes (id),
    decision_id INTEGER REFERENCES decisions (id),
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    tags        TEXT NOT NULL,
    note        TEXT,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX decision_tags_by_probe ON decision_tags (probe_row, id);
",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

fn versions(conn: &Connection, path: &Path) -> Result<(i64, i64), StoreError> {
    let get = |name: &str| conn.pragma_query_value(None, name, |r| r.get::<_, i64>(0));
    let app = get("application_id").map_err(|e| classify(path, e))?;
    let version = get("user_version").map_err(|e| classify(path, e))?;
    Ok((app, version))
}

fn is_empty(conn: &Connection, path: &Path) -> Result<bool, StoreError> {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))
        .map(|n| n == 0)
        .map_err(|e| classify(path, e))
}

/// Refuses foreign and newer databases; returns the version found.
pub(super) fn check(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let (app, version) = versions(conn, path)?;
    if app == 0 && version == 0 && is_empty(conn, path)? {
        return Ok(0);
    }
    if app != APPLICATION_ID {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            reason: format!("a SQLite database of another application (application_id {app:#x})"),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::Newer { path: path.to_owned(), found: version, known: SCHEMA_VERSION });
    }
    let ok: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| classify(path, e))?;
    if ok != "ok" {
        return Err(StoreError::Corrupt { path: path.to_owned(), reason: format!("quick_check: {ok}") });
    }
    Ok(version)
}

/// Brings the database up to [`SCHEMA_VERSION`], one transaction per migration.
pub(super) fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let found = check(conn, path)?;
    let sql = |e| classify(path, e);
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        let version = i as i64 + 1;
        // IMMEDIATE: two processes creating the same new store must not both migrate it.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        let (_, now) = versions(conn, path)?;
        if now >= version {
            conn.execute_batch("COMMIT").map_err(sql)?;
            continue;
        }
        let applied = conn
            .execute_batch(migration)
            .and_then(|()| conn.pragma_update(None, "application_id", APPLICATION_ID))
            .and_then(|()| conn.pragma_update(None, "user_version", version));
        match applied {
            Ok(()) => conn.execute_batch("COMMIT").map_err(sql)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(sql(e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store written by a lem-tui of schema version 1 (before scores named their scorer).
    fn version_one(conn: &Connection) {
        conn.execute_batch(MIGRATIONS[0]).expect("v1 schema");
        conn.pragma_update(None, "application_id", APPLICATION_ID).expect("app id");
        conn.pragma_update(None, "user_version", 1).expect("version");
        conn.execute_batch(
            "INSERT INTO sessions (key, root, model, probes, output) VALUES ('k', '/r', 'm', 'p', '/o');
             INSERT INTO runs (session_id, pid, version, mode, backend, model_name, model_path, sampling, config)
                 VALUES (1, 1, '0.0.9', 'auto', 'llama.cpp', 'm', 'm.gguf', '{}', '{}');
             INSERT INTO probes (session_id, probe_id, prompt, source) VALUES (1, 'P1', 'q?', 'p.json');
             INSERT INTO candidates (probe_row, run_id, run_no, text, text_sha256, outcome, seed, temperature, top_p,
                 top_k, repeat_penalty, max_tokens, composite, uplift, echo, enrichment, sycophantic, metrics,
                 prompt_tokens, generated_tokens, decode_tok_s, wall_ms)
                 VALUES (1, 1, 0, 'an answer', 'h', 'scored', 0, 0.7, 0.9, 40, 1.1, 64, 42.5, 3.0, 0.2, 4.0, 0, '{}',
                     1, 2, 3.0, 4.0),
                        (1, 1, 1, '', 'h0', 'too_short', 0, 0.7, 0.9, 40, 1.1, 64, NULL, NULL, NULL, NULL, NULL, '{}',
                     1, 0, 0.0, 1.0);",
        )
        .expect("v1 rows");
    }

    #[test]
    fn an_old_store_migrates_with_its_scores_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.sqlite3");
        let conn = Connection::open(&path).expect("open");
        version_one(&conn);
        migrate(&conn, &path).expect("migrates");
        assert_eq!(versions(&conn, &path).expect("versions").1, SCHEMA_VERSION);
        let rows: Vec<(i64, String, String, f64)> = conn
            .prepare("SELECT candidate_id, scorer, version, composite FROM scores ORDER BY id")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        // The scored candidate's score, named for the version that computed it; no row for the
        // candidate that was never scored.
        assert_eq!(rows, vec![(1, "grammar-v3".into(), "0.0.9".into(), 42.5)]);

        // Candidates stored from now on get their score row as they are inserted, and a second
        // scorer (or version) adds a row beside it.
        conn.execute(
            "INSERT INTO candidates (probe_row, run_id, run_no, text, text_sha256, outcome, seed, temperature, top_p,
                 top_k, repeat_penalty, max_tokens, composite, metrics, prompt_tokens, generated_tokens,
                 decode_tok_s, wall_ms)
                 VALUES (1, 1, 2, 'another', 'h2', 'scored', 0, 0.7, 0.9, 40, 1.1, 64, 50.0, '{}', 1, 2, 3.0, 4.0)",
            [],
        )
        .expect("insert");
        conn.execute(
            "INSERT INTO scores (candidate_id, scorer, version, composite) VALUES (3, 'grammar-v4', '0.2.0', 51.0)",
            [],
        )
        .expect("a future scorer");
        let n: i64 = conn.query_row("SELECT count(*) FROM scores WHERE candidate_id = 3", [], |r| r.get(0)).expect("n");
        assert_eq!(n, 2);
        // Migrating again is a no-op.
        migrate(&conn, &path).expect("again");
        let n: i64 = conn.query_row("SELECT count(*) FROM scores", [], |r| r.get(0)).expect("n");
        assert_eq!(n, 3);
    }
}
