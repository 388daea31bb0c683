//! Taking a line back out of a lesson file, wherever it is: the last line is cut off; a line in
//! the middle is removed by writing the rest beside the file and renaming it over, so a kill
//! leaves either the old file or the new one, never half of each. Lines are found by their
//! conversation (last user and assistant turns), so a line written by another tool matches too.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;

use super::{LessonError, LessonWriter};

/// True when `line` (a JSONL line, a leading newline allowed) is a chat whose last user and
/// assistant turns are `user` and `assistant`.
#[must_use]
pub fn holds(line: &[u8], user: &str, assistant: &str) -> bool {
    let line = line.strip_prefix(b"\n").unwrap_or(line);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else { return false };
    let Some(messages) = v.get("messages").and_then(|m| m.as_array()) else { return false };
    let last = |role: &str| {
        messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(|r| r.as_str()) == Some(role))
            .and_then(|m| m.get("content"))
            .and_then(|c| c.as_str())
    };
    last("user") == Some(user) && last("assistant") == Some(assistant)
}

fn read_range(path: &Path, range: &Range<u64>) -> io::Result<Vec<u8>> {
    let mut f = fs::File::open(path)?;
    f.seek(SeekFrom::Start(range.start))?;
    let mut buf = Vec::new();
    f.take(range.end - range.start).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The byte range of the first whole line of `path` holding (`user`, `assistant`).
pub fn find_line(path: &Path, user: &str, assistant: &str) -> io::Result<Option<Range<u64>>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let (mut buf, mut at) = (Vec::new(), 0u64);
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf)? as u64;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Ok(None);
        }
        if holds(&buf, user, assistant) {
            return Ok(Some(at..at + n));
        }
        at += n;
    }
}

impl LessonWriter {
    /// Where the line of (`user`, `assistant`) is now: at `hint` (where it was written) if it is
    /// still there, else the first line holding that conversation; `None` when it is gone.
    pub fn locate(
        &self,
        hint: Option<Range<u64>>,
        user: &str,
        assistant: &str,
    ) -> Result<Option<Range<u64>>, LessonError> {
        let err = |source| LessonError::Write { path: self.path.clone(), source };
        let len = self.file.metadata().map_err(err)?.len();
        if let Some(h) = hint.filter(|h| h.start < h.end && h.end <= len) {
            if holds(&read_range(&self.path, &h).map_err(err)?, user, assistant) {
                return Ok(Some(h));
            }
        }
        find_line(&self.path, user, assistant).map_err(err)
    }

    /// Removes the bytes at `range` (one whole line, as [`LessonWriter::locate`] found it).
    /// The file's last line is cut off in place; any other is removed by an atomic rewrite.
    pub fn remove(&mut self, range: Range<u64>) -> Result<(), LessonError> {
        let err = |source| LessonError::Write { path: self.path.clone(), source };
        let len = self.file.metadata().map_err(err)?.len();
        if range.start >= range.end || range.end > len {
            return Err(err(io::Error::other(format!(
                "the file is {len} bytes; the line to remove at {}..{} is not in it (it changed since)",
                range.start, range.end
            ))));
        }
        if range.end == len {
            self.file.set_len(range.start).map_err(err)?;
            self.file.sync_data().map_err(err)?;
            return Ok(());
        }
        rewrite_without(&self.path, &range).map_err(err)?;
        // The append handle still points at the old file, which the rename unlinked.
        self.file = OpenOptions::new().append(true).open(&self.path).map_err(err)?;
        Ok(())
    }
}

/// Where [`rewrite_without`] writes the new file before renaming it over `path` (a kill in
/// between leaves it there; the next start removes it).
#[must_use]
pub fn rewrite_path(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.lem-tui-rewrite"))
}

/// Writes `path` minus `range` to a temporary file beside it, syncs it, renames it over `path`
/// and syncs the directory, so the change is all or nothing across a kill or a power cut.
pub fn rewrite_without(path: &Path, range: &Range<u64>) -> io::Result<()> {
    let bytes = fs::read(path)?;
    let (start, end) = (usize::try_from(range.start).unwrap_or(usize::MAX), usize::try_from(range.end).unwrap_or(0));
    if start >= end || end > bytes.len() {
        return Err(io::Error::other("the range to remove is outside the file"));
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = rewrite_path(path);
    {
        let mut f = fs::File::create(&tmp)?;
        f.set_permissions(fs::metadata(path)?.permissions())?;
        f.write_all(&bytes[..start])?;
        f.write_all(&bytes[end..])?;
        f.sync_all()?;
    }
    crate::failpoint::hit("rewrite-written");
    fs::rename(&tmp, path)?;
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lesson::TrainingExample;

    #[test]
    fn a_middle_line_is_removed_and_appends_continue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.jsonl");
        let mut w = LessonWriter::open(&path).expect("open");
        let ranges: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|r| w.append(&TrainingExample::user_assistant("p", *r)).expect("append"))
            .collect();
        let before = fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = before.split_inclusive('\n').collect();
        assert_eq!(w.locate(Some(ranges[1].clone()), "p", "b").expect("locate"), Some(ranges[1].clone()));
        // A stale hint falls back to a scan.
        assert_eq!(w.locate(Some(ranges[0].clone()), "p", "b").expect("locate"), Some(ranges[1].clone()));
        w.remove(ranges[1].clone()).expect("remove");
        assert_eq!(fs::read_to_string(&path).expect("read"), format!("{}{}", lines[0], lines[2]));
        assert_eq!(w.locate(None, "p", "b").expect("locate"), None);
        w.append(&TrainingExample::user_assistant("p", "d")).expect("append after the rewrite");
        let after = fs::read_to_string(&path).expect("read");
        assert_eq!(after.lines().count(), 3);
        assert!(after.ends_with("\"d\"}]}\n"), "{after}");
        assert!(!dir.path().join(".l.jsonl.lem-tui-rewrite").exists());
        let last = w.locate(None, "p", "d").expect("locate").expect("there");
        w.remove(last).expect("the last line is cut");
        assert_eq!(fs::read_to_string(&path).expect("read"), format!("{}{}", lines[0], lines[2]));
        assert!(w.remove(100..200).is_err());
    }
}
