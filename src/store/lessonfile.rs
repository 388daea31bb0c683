//! What is in a lesson file, by content. LEM's files may hold lines written by other tools
//! (Python's `\uXXXX` escapes, other key orders), so a line is identified by its conversation,
//! the last user turn and the last assistant turn, not by its bytes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub type ContentKey = [u8; 32];

/// The identity of a (user turn, response) pair.
#[must_use]
pub fn content_key(user: &str, assistant: &str) -> ContentKey {
    let mut h = Sha256::new();
    // Length-prefixed so ("ab", "c") and ("a", "bc") differ.
    h.update((user.len() as u64).to_le_bytes());
    h.update(user.as_bytes());
    h.update(assistant.as_bytes());
    h.finalize().into()
}

#[derive(Deserialize)]
struct Line {
    messages: Vec<Msg>,
}

#[derive(Deserialize)]
struct Msg {
    role: String,
    content: serde_json::Value,
}

/// The content key of one JSONL line, if it is a chat example with a user and an assistant turn.
#[must_use]
pub fn line_key(line: &[u8]) -> Option<ContentKey> {
    let parsed: Line = serde_json::from_slice(line).ok()?;
    let last = |role: &str| parsed.messages.iter().rev().find(|m| m.role == role).and_then(|m| m.content.as_str());
    Some(content_key(last("user")?, last("assistant")?))
}

/// Which conversations a lesson file holds, where, and how many times.
#[derive(Debug, Default)]
pub struct LessonIndex {
    entries: HashMap<ContentKey, (u32, Range<u64>)>,
    /// Bytes after the last newline: a line some writer did not finish.
    pub torn: Option<Range<u64>>,
    pub len: u64,
}

impl LessonIndex {
    /// Reads `path`; a missing file is an empty index.
    pub fn scan(path: &Path) -> io::Result<Self> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e),
        };
        let mut reader = BufReader::with_capacity(1 << 16, file);
        let mut index = Self::default();
        let mut buf = Vec::new();
        let mut at = 0u64;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf)? as u64;
            if n == 0 {
                break;
            }
            let range = at..at + n;
            at += n;
            if buf.last() != Some(&b'\n') {
                index.torn = Some(range);
                break;
            }
            if let Some(key) = line_key(&buf) {
                index.add(key, range);
            }
        }
        index.len = at;
        Ok(index)
    }

    pub fn add(&mut self, key: ContentKey, range: Range<u64>) {
        self.entries.entry(key).and_modify(|e| e.0 += 1).or_insert((1, range));
    }

    pub fn remove(&mut self, key: &ContentKey) {
        if let Some(e) = self.entries.get_mut(key) {
            e.0 -= 1;
            if e.0 == 0 {
                self.entries.remove(key);
            }
        }
    }

    #[must_use]
    pub fn contains(&self, key: &ContentKey) -> bool {
        self.entries.contains_key(key)
    }

    /// Where the first line with this content is.
    #[must_use]
    pub fn find(&self, key: &ContentKey) -> Option<Range<u64>> {
        self.entries.get(key).map(|e| e.1.clone())
    }

    /// Number of distinct conversations.
    #[must_use]
    pub fn distinct(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_from_other_writers_match_by_content() {
        let go = br#"{"messages":[{"role":"user","content":"a \u003cb\u003e"},{"role":"assistant","content":"ok"}]}"#;
        let py = br#"{"messages": [{"content": "a <b>", "role": "user"}, {"role": "assistant", "content": "ok"}]}"#;
        assert_eq!(line_key(go), line_key(py));
        assert_eq!(line_key(go), Some(content_key("a <b>", "ok")));
        assert_eq!(line_key(b"{\"prompt\":\"x\"}"), None);
        assert_ne!(content_key("ab", "c"), content_key("a", "bc"));
    }

    #[test]
    fn scan_finds_lines_and_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.jsonl");
        let line =
            "{\"messages\":[{\"role\":\"user\",\"content\":\"p\"},{\"role\":\"assistant\",\"content\":\"r\"}]}\n";
        std::fs::write(&path, format!("{line}not json\n{line}{{\"messages\":[")).expect("write");
        let idx = LessonIndex::scan(&path).expect("scan");
        let key = content_key("p", "r");
        assert_eq!(idx.find(&key), Some(0..line.len() as u64));
        assert_eq!(idx.distinct(), 1);
        let torn_start = (2 * line.len() + 9) as u64;
        assert_eq!(idx.torn, Some(torn_start..torn_start + 13));
        let mut idx = idx;
        idx.remove(&key);
        assert!(idx.contains(&key), "the second copy is still there");
        idx.remove(&key);
        assert!(!idx.contains(&key));
        assert!(LessonIndex::scan(&dir.path().join("missing")).expect("empty").torn.is_none());
    }
}
