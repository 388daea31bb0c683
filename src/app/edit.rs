//! Editing a candidate before accepting it: in `$EDITOR` (the app loop suspends the terminal
//! and runs it on a blocking thread, see [`run_editor`]) or, when none is set, in this inline
//! multi-line editor. Either way the text goes to the engine as `Control::AddEdit`; the engine
//! scores and stores it and reports it back as a new candidate.

use std::path::Path;

/// What a key does in the inline editor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditKey {
    Char(char),
    Newline,
    Backspace,
    Delete,
    Left,
    Right,
    Up,
    Down,
    Home,
    End,
    /// Send the edit to the engine.
    Save,
    Cancel,
}

/// The inline editor: a text and a cursor (a byte offset on a char boundary).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InlineEdit {
    pub probe: usize,
    pub parent: u32,
    pub original: String,
    pub text: String,
    pub cursor: usize,
}

impl InlineEdit {
    #[must_use]
    pub fn new(probe: usize, parent: u32, text: &str) -> Self {
        Self { probe, parent, original: text.to_owned(), text: text.to_owned(), cursor: text.len() }
    }

    fn line_start(&self, at: usize) -> usize {
        self.text[..at].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self, at: usize) -> usize {
        self.text[at..].find('\n').map_or(self.text.len(), |i| at + i)
    }

    /// The cursor moved to column `col` (in chars) of the line starting at `start`.
    fn move_to_column(&mut self, start: usize, col: usize) {
        let end = self.line_end(start);
        self.cursor = self.text[start..end].char_indices().nth(col).map_or(end, |(i, _)| start + i);
    }

    /// Applies a key; editing keys change the text, the rest move the cursor.
    pub fn key(&mut self, k: EditKey) {
        let prev = self.text[..self.cursor].chars().next_back().map_or(0, char::len_utf8);
        let next = self.text[self.cursor..].chars().next().map_or(0, char::len_utf8);
        match k {
            EditKey::Char(c) => {
                self.text.insert(self.cursor, c);
                self.cursor += c.len_utf8();
            }
            EditKey::Newline => {
                self.text.insert(self.cursor, '\n');
                self.cursor += 1;
            }
            EditKey::Backspace if prev > 0 => {
                self.cursor -= prev;
                self.text.remove(self.cursor);
            }
            EditKey::Delete if next > 0 => {
                self.text.remove(self.cursor);
            }
            EditKey::Left => self.cursor -= prev,
            EditKey::Right => self.cursor += next,
            EditKey::Home => self.cursor = self.line_start(self.cursor),
            EditKey::End => self.cursor = self.line_end(self.cursor),
            EditKey::Up | EditKey::Down => {
                let start = self.line_start(self.cursor);
                let col = self.text[start..self.cursor].chars().count();
                if k == EditKey::Up && start > 0 {
                    let above = self.line_start(start - 1);
                    self.move_to_column(above, col);
                } else if k == EditKey::Down {
                    let end = self.line_end(self.cursor);
                    if end < self.text.len() {
                        self.move_to_column(end + 1, col);
                    }
                }
            }
            EditKey::Backspace | EditKey::Delete | EditKey::Save | EditKey::Cancel => {}
        }
    }

    /// The text hard-wrapped at `width` chars, as rows, and the cursor's (row, column).
    #[must_use]
    pub fn rows(&self, width: usize) -> (Vec<String>, (usize, usize)) {
        let width = width.max(1);
        let mut rows = Vec::new();
        let mut cursor = (0, 0);
        let mut at = 0;
        for line in self.text.split('\n') {
            let chars: Vec<(usize, char)> = line.char_indices().collect();
            let mut chunks: Vec<&[(usize, char)]> = chars.chunks(width).collect();
            // A full last row leaves the cursor at the end on a row of its own.
            if chunks.is_empty() || chunks.last().is_some_and(|c| c.len() == width) {
                chunks.push(&[]);
            }
            for (k, chunk) in chunks.iter().enumerate() {
                let from = chunk.first().map_or(line.len(), |(i, _)| *i);
                let to = if k + 1 < chunks.len() {
                    chunk.last().map_or(from, |(i, c)| i + c.len_utf8())
                } else {
                    line.len()
                };
                if (at + from..=at + to).contains(&self.cursor) && (k + 1 == chunks.len() || self.cursor < at + to) {
                    cursor = (rows.len(), self.text[at + from..self.cursor].chars().count());
                }
                rows.push(chunk.iter().map(|(_, c)| *c).collect());
            }
            at += line.len() + 1;
        }
        (rows, cursor)
    }
}

/// An editor's saved text as the edit: a trailing newline the editor added to a text that had
/// none is dropped.
#[must_use]
pub fn edited_text(original: &str, saved: &str) -> String {
    if original.ends_with('\n') { saved.to_owned() } else { saved.trim_end_matches(['\n', '\r']).to_owned() }
}

/// Runs `editor` (a shell command line such as `vim` or `code -w`) on a temporary file holding
/// `text` and returns what was saved. Blocking: the app loop calls it on a blocking thread
/// with the terminal handed back to the editor.
pub fn run_editor(editor: &str, text: &str, dir: &Path) -> Result<String, String> {
    let file = EditFile::create(dir, text)?;
    // Through the shell, so EDITOR may carry arguments ("code -w") as git allows.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&file.0)
        .status()
        .map_err(|e| format!("cannot run the editor `{editor}`: {e}"))?;
    if !status.success() {
        return Err(format!("the editor `{editor}` exited with {status}; nothing changed"));
    }
    let saved = std::fs::read_to_string(&file.0).map_err(|e| format!("cannot read {}: {e}", file.0.display()))?;
    Ok(edited_text(text, &saved))
}

/// The file handed to the editor; removed however the edit ends.
struct EditFile(std::path::PathBuf);

impl EditFile {
    fn create(dir: &Path, text: &str) -> Result<Self, String> {
        use std::io::Write;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = dir.join(format!("lem-tui-edit-{}-{nanos}.md", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("cannot create {} to edit: {e}", path.display()))?;
        let file = Self(path);
        f.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", file.0.display()))?;
        Ok(file)
    }
}

impl Drop for EditFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_edit_and_move_over_lines_and_wide_chars() {
        let mut e = InlineEdit::new(0, 1, "ab\ncdé");
        assert_eq!(e.cursor, e.text.len());
        e.key(EditKey::Backspace);
        assert_eq!(e.text, "ab\ncd");
        e.key(EditKey::Up);
        assert_eq!(e.cursor, 2, "column 2 of the line above");
        e.key(EditKey::Char('→'));
        e.key(EditKey::Newline);
        assert_eq!(e.text, "ab→\n\ncd");
        e.key(EditKey::Home);
        e.key(EditKey::Down);
        e.key(EditKey::End);
        e.key(EditKey::Char('!'));
        assert_eq!(e.text, "ab→\n\ncd!");
        e.key(EditKey::Left);
        e.key(EditKey::Delete);
        assert_eq!(e.text, "ab→\n\ncd");
        let (rows, cursor) = e.rows(2);
        assert_eq!(rows, ["ab", "→", "", "cd", ""]);
        assert_eq!(cursor, (4, 0));
    }

    #[test]
    fn an_editor_rewrites_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = run_editor("sed -i 's/old/new/'", "the old text", dir.path()).expect("edited");
        assert_eq!(out, "the new text");
        let err = run_editor("false", "x", dir.path()).expect_err("failed editor");
        assert!(err.contains("`false` exited"), "{err}");
    }
}
