//! The lesson JSONL that `lem distill` appends to: one `TrainingExample` per line, serialised
//! exactly as Go's `encoding/json.Marshal` does, so files written by LEM and by lem-tui are
//! interchangeable byte for byte.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod remove;
pub use remove::{find_line, holds, rewrite_path, rewrite_without};

/// Appends `s` as a JSON string literal, quotes included, escaped like Go's `json.Marshal` (HTML
/// escaping on), as of Go 1.22+ (LEM builds with Go 1.25):
///
/// - `"` and `\` are backslash-escaped; `\n` `\r` `\t` `\b` `\f` use their short forms (Go before
///   1.22 wrote `\b` and `\f` as `\u0008` and `\u000c`);
/// - other bytes below 0x20, and `<` `>` `&`, become `\u00xx` with lowercase hex;
/// - U+2028 and U+2029 become `\u2028` and `\u2029`;
/// - everything else, DEL and all other non-ASCII included, is written as raw UTF-8.
pub fn go_json_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let short = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '\u{2028}' => "\\u2028",
            '\u{2029}' => "\\u2029",
            '\0'..='\u{1f}' | '<' | '>' | '&' => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if short.is_empty() {
            let b = c as u8;
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(short);
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// LEM's `ChatMessage` (`pkg/lem/export.go`); field order is part of the file format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// LEM's `TrainingExample`: the whole conversation, no scores or metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingExample {
    pub messages: Vec<ChatMessage>,
}

impl TrainingExample {
    /// The two-turn shape `lem distill` writes: the (sandwiched) user turn and the kept response.
    pub fn user_assistant(user: impl Into<String>, assistant: impl Into<String>) -> Self {
        Self {
            messages: vec![
                ChatMessage { role: "user".into(), content: user.into() },
                ChatMessage { role: "assistant".into(), content: assistant.into() },
            ],
        }
    }
}

/// One JSONL line, newline included, byte-identical to Go's `json.Marshal(example)` + `\n`.
/// An empty `messages` is written as `[]` (Go would write `null` only for a nil slice, which LEM
/// never produces).
#[must_use]
pub fn training_line(ex: &TrainingExample) -> String {
    let mut s =
        String::with_capacity(32 + ex.messages.iter().map(|m| m.role.len() + m.content.len() + 32).sum::<usize>());
    s.push_str("{\"messages\":[");
    for (i, m) in ex.messages.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str("{\"role\":");
        go_json_string(&m.role, &mut s);
        s.push_str(",\"content\":");
        go_json_string(&m.content, &mut s);
        s.push('}');
    }
    s.push_str("]}\n");
    s
}

#[derive(Debug, thiserror::Error)]
pub enum LessonError {
    #[error("cannot create directory {} for the lesson file: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open lesson file {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write to lesson file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LessonError {
    /// The underlying I/O error, for callers that report their own context.
    #[must_use]
    pub fn into_io(self) -> io::Error {
        match self {
            Self::CreateDir { source, .. } | Self::Open { source, .. } | Self::Write { source, .. } => source,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LessonWarning {
    /// LEM fails when the directory is missing; lem-tui creates it.
    CreatedDirectory(PathBuf),
    /// The file did not end with a newline (another writer died mid-line). The next line is
    /// started on a fresh line; the torn one is left for the user to inspect.
    TornLastLine(PathBuf),
}

impl std::fmt::Display for LessonWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::CreatedDirectory(p) => write!(f, "created directory {}", p.display()),
            Self::TornLastLine(p) => {
                write!(f, "{} ends with an incomplete line; appending from a new line", p.display())
            }
        }
    }
}

/// Appends training lines to a lesson file, never truncating (re-runs append, as in LEM).
#[derive(Debug)]
pub struct LessonWriter {
    file: File,
    path: PathBuf,
    /// Set when the existing file ends mid-line; the first append then starts with `\n`.
    needs_newline: bool,
    warnings: Vec<LessonWarning>,
}

impl LessonWriter {
    /// Opens `path` for append (creating it with mode 0644, and its missing parent directories).
    pub fn open(path: &Path) -> Result<Self, LessonError> {
        let mut warnings = Vec::new();
        // No let-chains: the crate's declared MSRV (1.85) predates them.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            fs::create_dir_all(dir).map_err(|source| LessonError::CreateDir { path: dir.to_owned(), source })?;
            let w = LessonWarning::CreatedDirectory(dir.to_owned());
            tracing::info!("{w}");
            warnings.push(w);
        }
        let mut opts = OpenOptions::new();
        opts.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o644);
        let open_err = |source| LessonError::Open { path: path.to_owned(), source };
        let file = opts.open(path).map_err(open_err)?;
        let needs_newline = ends_mid_line(path).map_err(open_err)?;
        if needs_newline {
            let w = LessonWarning::TornLastLine(path.to_owned());
            tracing::warn!("{w}");
            warnings.push(w);
        }
        Ok(Self { file, path: path.to_owned(), needs_newline, warnings })
    }

    /// Writes one line with a single `write_all` and syncs it, so a crash leaves either the whole
    /// line or none of it. If the write fails part-way, the partial bytes are cut off again.
    ///
    /// Returns the byte range the line occupies, so the line can be taken back by
    /// [`LessonWriter::remove`].
    pub fn append(&mut self, ex: &TrainingExample) -> Result<std::ops::Range<u64>, LessonError> {
        let mut line = training_line(ex);
        if self.needs_newline {
            line.insert(0, '\n');
        }
        let write_err = |source| LessonError::Write { path: self.path.clone(), source };
        let before = self.file.metadata().map_err(write_err)?.len();
        #[cfg(feature = "failpoints")]
        if crate::failpoint::triggers("lesson-mid-line") {
            // What a crash in the middle of the write would leave: half a line, synced.
            let half = &line.as_bytes()[..line.len() / 2];
            let _ = self.file.write_all(half).and_then(|()| self.file.sync_data());
            crate::failpoint::pause("lesson-mid-line");
        }
        let written =
            self.file.write_all(line.as_bytes()).and_then(|()| self.file.flush()).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Best effort: a torn line would corrupt the JSONL for every later reader.
            let _ = self.file.set_len(before);
            return Err(write_err(e));
        }
        self.needs_newline = false;
        Ok(before..before + line.len() as u64)
    }

    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    #[must_use]
    pub fn warnings(&self) -> &[LessonWarning] {
        &self.warnings
    }
}

/// Checked through a separate read handle so a write-only (but appendable) file still opens.
fn ends_mid_line(path: &Path) -> io::Result<bool> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return Ok(false),
        Err(e) => return Err(e),
    };
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}
