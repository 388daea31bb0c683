//! Go-compatible text primitives: `strings.Fields`, `strings.ToLower` and the reversal
//! tokeniser's trailing-punctuation split.

use super::PunctKind;

/// Go's ASCII whitespace set (`\t \n \v \f \r` and space). `u8::is_ascii_whitespace`
/// omits `\v`, which Go and Unicode White_Space include.
const fn ascii_ws(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ')
}

/// Returns (is White_Space, encoded length) for the character starting at `i`.
/// Decoding is by lead byte because `&str` is valid UTF-8; the non-ASCII White_Space
/// characters are matched by their exact encodings (U+0085, U+00A0, U+1680,
/// U+2000..=U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
#[inline]
fn ws_at(b: &[u8], i: usize) -> (bool, usize) {
    let lead = b[i];
    if lead < 0x80 {
        return (ascii_ws(lead), 1);
    }
    let at = |k: usize| b.get(i + k).copied().unwrap_or(0);
    match lead {
        0xC0..=0xDF => (lead == 0xC2 && matches!(at(1), 0x85 | 0xA0), 2),
        0xE0..=0xEF => {
            let ws = match lead {
                0xE1 => at(1) == 0x9A && at(2) == 0x80,
                0xE2 => match at(1) {
                    0x80 => matches!(at(2), 0x80..=0x8A | 0xA8 | 0xA9 | 0xAF),
                    0x81 => at(2) == 0x9F,
                    _ => false,
                },
                0xE3 => at(1) == 0x80 && at(2) == 0x80,
                _ => false,
            };
            (ws, 3)
        }
        _ => (false, 4),
    }
}

/// Iterator equivalent to Go's `strings.Fields` (after `strings.TrimSpace`, which changes
/// nothing about the fields).
pub(crate) struct Fields<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Fields { s, pos: 0 }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        let mut i = self.pos;
        loop {
            if i >= b.len() {
                self.pos = i;
                return None;
            }
            let (ws, len) = ws_at(b, i);
            if !ws {
                break;
            }
            i += len;
        }
        let start = i;
        while i < b.len() {
            let lead = b[i];
            // Most bytes are ASCII non-space; keep that test cheap.
            if lead < 0x80 {
                if ascii_ws(lead) {
                    break;
                }
                i += 1;
                continue;
            }
            let (ws, len) = ws_at(b, i);
            if ws {
                break;
            }
            i += len;
        }
        self.pos = i;
        // `start` and `i` sit on character boundaries by construction; `get` keeps that
        // claim from ever turning into a panic.
        self.s.get(start..i)
    }
}

/// Splits at most one trailing punctuation piece off a field.
#[inline]
pub(crate) fn split_trailing_punct(field: &str) -> (&str, Option<PunctKind>) {
    let b = field.as_bytes();
    let n = b.len();
    if b.ends_with(b"...") {
        return (field.get(..n - 3).unwrap_or(""), Some(PunctKind::Progress));
    }
    if n > 1 {
        let kind = match b[n - 1] {
            b'?' => PunctKind::Question,
            b':' => PunctKind::Label,
            b'!' => PunctKind::Exclamation,
            b';' => PunctKind::Separator,
            b',' => PunctKind::Comma,
            _ => return (field, None),
        };
        return (field.get(..n - 1).unwrap_or(""), Some(kind));
    }
    (field, None)
}

/// Go's `unicode.ToLower` for one code point (simple case mapping, Unicode 15).
#[inline]
pub(crate) fn go_lower_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    match c as u32 {
        // Full lowercase mapping is "i̇"; Go's simple mapping is plain `i`.
        0x130 => 'i',
        // Case pairs added in Unicode 16/17 (Rust's tables are newer than Go's Unicode 15).
        0x1C89 | 0xA7CB | 0xA7CC | 0xA7CE | 0xA7D2 | 0xA7D4 | 0xA7DA | 0xA7DC => c,
        0x10D50..=0x10D65 | 0x16EA0..=0x16EB8 => c,
        _ => {
            let mut it = c.to_lowercase();
            match (it.next(), it.next()) {
                (Some(l), None) => l,
                _ => c,
            }
        }
    }
}

/// Go's `strings.ToLower` into a reusable buffer.
#[inline]
pub(crate) fn go_lower_into(s: &str, out: &mut String) {
    out.clear();
    if s.is_ascii() {
        out.push_str(s);
        out.make_ascii_lowercase();
    } else {
        out.extend(s.chars().map(go_lower_char));
    }
}

pub(crate) fn go_lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    go_lower_into(s, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_matches_char_is_whitespace() {
        for u in 0..=0x10FFFFu32 {
            let Some(c) = char::from_u32(u) else { continue };
            let mut buf = [0u8; 4];
            let s = c.encode_utf8(&mut buf);
            let (ws, len) = ws_at(s.as_bytes(), 0);
            assert_eq!(ws, c.is_whitespace(), "U+{u:04X}");
            assert_eq!(len, s.len(), "U+{u:04X}");
        }
    }

    #[test]
    fn lower_is_idempotent() {
        for u in 0..=0x10FFFFu32 {
            let Some(c) = char::from_u32(u) else { continue };
            let l = go_lower_char(c);
            assert_eq!(go_lower_char(l), l, "U+{u:04X}");
        }
    }

    #[test]
    fn lower_specials() {
        assert_eq!(go_lower("İSTANBUL"), "istanbul");
        assert_eq!(go_lower("\u{212A}"), "k");
        assert_eq!(go_lower("ΟΔΟΣ"), "οδοσ");
        assert_eq!(go_lower("ẞ"), "ß");
    }

    #[test]
    fn fields_and_punct() {
        let f: Vec<_> = Fields::new("  a\u{200B}b\u{3000}c\u{85}d\x1ce \u{A0}").collect();
        assert_eq!(f, ["a\u{200B}b", "c", "d\x1ce"]);
        assert_eq!(split_trailing_punct("??"), ("?", Some(PunctKind::Question)));
        assert_eq!(split_trailing_punct("?"), ("?", None));
        assert_eq!(split_trailing_punct("...."), (".", Some(PunctKind::Progress)));
        assert_eq!(split_trailing_punct("..."), ("", Some(PunctKind::Progress)));
        assert_eq!(split_trailing_punct("end."), ("end.", None));
    }
}
