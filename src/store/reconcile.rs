//! Making the lesson file agree with the store when a run starts: a kept decision committed
//! but not written is written, one whose line is already there (a kill after the append, or
//! the same conversation from another tool) is recorded as found, and a torn line of ours at
//! the end (a kill mid-write) is cut off first. Lines are matched by content, not bytes.
//!
//! Before that, undos a kill interrupted are finished: the intent (recorded before the file
//! was touched) is completed when its line is still where the intent says (the file's last
//! line, or one in the middle for a reopened older decision), recorded as done when the line
//! is already gone, and rolled back (the decision stands) when it moved elsewhere.

use rusqlite::params;

use super::lessonfile::{LessonIndex, content_key};
use super::resume::{ResumeReport, SessionSpec, effective};
use super::rows::sql_u64;
use super::{Opened, StoreError};
use crate::lesson::{LessonWriter, TrainingExample};

/// A kept decision that stands, with what its line needs.
struct Committed {
    id: i64,
    line: String,
    user: String,
    response: String,
    written: bool,
}

pub(super) fn reconcile(
    opened: &Opened,
    session: i64,
    spec: &SessionSpec,
    report: &mut ResumeReport,
) -> Result<LessonIndex, StoreError> {
    let store = &opened.store;
    let sql = store.sql();
    let io = |source| StoreError::Io { path: spec.output.clone(), source };
    let mut rows: Vec<i64> = Vec::new();
    {
        let mut stmt = store.conn.prepare("SELECT id FROM probes WHERE session_id = ?1 ORDER BY id").map_err(&sql)?;
        for r in stmt.query_map([session], |r| r.get(0)).map_err(&sql)? {
            rows.push(r.map_err(&sql)?);
        }
    }
    let mut committed = Vec::new();
    for row in rows {
        let Some(e) = effective(store, row)? else { continue };
        if e.kind != "kept" {
            continue;
        }
        let c = store
            .conn
            .query_row(
                "SELECT d.line, d.user_text, c.text, w.decision_id IS NOT NULL FROM decisions d
                 JOIN candidates c ON c.id = d.candidate_id
                 LEFT JOIN lesson_writes w ON w.decision_id = d.id WHERE d.id = ?1",
                [e.id],
                |r| {
                    Ok(Committed {
                        id: e.id,
                        line: r.get(0)?,
                        user: r.get(1)?,
                        response: r.get(2)?,
                        written: r.get(3)?,
                    })
                },
            )
            .map_err(&sql)?;
        committed.push(c);
    }
    committed.sort_by_key(|c| c.id);
    // A mid-file removal killed before its rename left the new file beside the old (which
    // stands: the removal was finished or rolled back above).
    match std::fs::remove_file(crate::lesson::rewrite_path(&spec.output)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    let mut index = LessonIndex::scan(&spec.output).map_err(io)?;
    let pending: Vec<&Committed> = committed.iter().filter(|c| !c.written).collect();

    if let Some(torn) = index.torn.clone() {
        let tail = read_range(&spec.output, torn.clone()).map_err(io)?;
        // Only a line of ours is cut; anything else is left for its owner (the writer starts
        // a new line after it).
        if !tail.is_empty() && pending.iter().any(|c| c.line.as_bytes().starts_with(&tail)) {
            let file = std::fs::OpenOptions::new().write(true).open(&spec.output).map_err(io)?;
            file.set_len(torn.start).and_then(|()| file.sync_all()).map_err(io)?;
            report.torn_cut = torn.end - torn.start;
            index.torn = None;
            index.len = torn.start;
        }
    }
    crate::failpoint::hit("reconcile");
    let mut writer: Option<LessonWriter> = None;
    let output = spec.output.to_string_lossy();
    for c in &committed {
        let key = content_key(&c.user, &c.response);
        if c.written {
            if !index.contains(&key) {
                report.missing += 1;
            }
            continue;
        }
        let (range, how) = match index.find(&key) {
            Some(r) => {
                report.found += 1;
                (r, "found")
            }
            None => {
                if writer.is_none() {
                    writer = Some(LessonWriter::open(&spec.output).map_err(|e| StoreError::Other(e.to_string()))?);
                }
                let w = writer.as_mut().ok_or_else(|| StoreError::Other("lesson writer".into()))?;
                let ex = TrainingExample::user_assistant(c.user.clone(), c.response.clone());
                let r = w.append(&ex).map_err(|e| StoreError::Other(e.to_string()))?;
                index.add(key, r.clone());
                report.written += 1;
                (r, "reconciled")
            }
        };
        store
            .conn
            .execute(
                "INSERT INTO lesson_writes (decision_id, output, start, end, how) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![c.id, output, sql_u64(range.start), sql_u64(range.end), how],
            )
            .map_err(&sql)?;
    }
    Ok(index)
}

/// Finishes or rolls back the undos of `session` that a kill interrupted. Runs before the
/// resume plan is made, so every undo either stands or does not by then.
pub(super) fn finish_undos(opened: &Opened, session: i64, report: &mut ResumeReport) -> Result<(), StoreError> {
    let store = &opened.store;
    let sql = store.sql();
    let mut pending: Vec<(i64, String, u64, u64, String, String)> = Vec::new();
    {
        let mut stmt = store
            .conn
            .prepare(
                "SELECT r.undo_id, r.output, r.start, r.end, t.user_text, c.text FROM lesson_removals r
                 JOIN decisions u ON u.id = r.undo_id JOIN decisions t ON t.id = u.undoes
                 JOIN candidates c ON c.id = t.candidate_id JOIN probes p ON p.id = u.probe_row
                 LEFT JOIN lesson_removal_ends e ON e.undo_id = r.undo_id
                 WHERE e.undo_id IS NULL AND p.session_id = ?1 ORDER BY r.undo_id DESC",
            )
            .map_err(&sql)?;
        let rows = stmt
            .query_map([session], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get(4)?, r.get(5)?))
            })
            .map_err(&sql)?;
        for r in rows {
            let (id, output, start, end, user, text) = r.map_err(&sql)?;
            pending.push((id, output, u64::try_from(start).unwrap_or(0), u64::try_from(end).unwrap_or(0), user, text));
        }
    }
    for (id, output, start, end, user, text) in pending {
        let path = std::path::PathBuf::from(&output);
        let io = |source| StoreError::Io { path: path.clone(), source };
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let key = content_key(&user, &text);
        let ours = end <= len && end > start && {
            let line = read_range(&path, start..end).map_err(io)?;
            let line = line.strip_prefix(b"\n").unwrap_or(&line);
            super::lessonfile::line_key(line) == Some(key)
        };
        let how = if ours {
            if end == len {
                let file = std::fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
                file.set_len(start).and_then(|()| file.sync_all()).map_err(io)?;
            } else {
                // A reopened older decision: its line is mid-file, taken out as the engine does.
                crate::lesson::rewrite_without(&path, &(start..end)).map_err(io)?;
            }
            report.undone += 1;
            "removed"
        } else if LessonIndex::scan(&path).map_err(io)?.contains(&key) {
            // The line is there but not where the undo left it: leave the file alone.
            report.undo_rolled_back += 1;
            "rolled_back"
        } else {
            // Cut before the kill.
            report.undone += 1;
            "removed"
        };
        store
            .conn
            .execute("INSERT INTO lesson_removal_ends (undo_id, how) VALUES (?1, ?2)", params![id, how])
            .map_err(&sql)?;
    }
    Ok(())
}

fn read_range(path: &std::path::Path, range: std::ops::Range<u64>) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(range.start))?;
    let mut buf = Vec::new();
    f.take(range.end - range.start).read_to_end(&mut buf)?;
    Ok(buf)
}
