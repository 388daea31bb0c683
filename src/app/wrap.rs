//! Word-wrapped text that grows at the end, wrapped incrementally.
//!
//! Greedy wrapping only ever changes the last row when text is appended, so a token costs the
//! length of that row, not of the whole text; a resize rewraps once. Rendering then slices
//! the visible rows, so no frame re-wraps a long text.

use std::ops::Range;

use unicode_width::UnicodeWidthChar;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wrapped {
    width: usize,
    text: String,
    /// Byte ranges of `text`, one per screen row.
    rows: Vec<Range<usize>>,
}

/// Display text: tabs become spaces and other control characters are dropped, so a model
/// cannot move the cursor or garble the frame.
fn sanitise(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\t' => out.push_str("    "),
            '\n' => out.push('\n'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
}

impl Wrapped {
    pub fn new(width: u16) -> Self {
        let mut w = Self { width: usize::from(width.max(1)), text: String::new(), rows: Vec::new() };
        w.rows.push(0..0);
        w
    }

    pub fn with_text(width: u16, text: &str) -> Self {
        let mut w = Self::new(width);
        w.push_str(text);
        w
    }

    pub fn width(&self) -> u16 {
        u16::try_from(self.width).unwrap_or(u16::MAX)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn rows(&self) -> usize {
        self.rows.len()
    }

    /// The text of screen row `i` (empty past the end).
    pub fn row(&self, i: usize) -> &str {
        self.rows.get(i).and_then(|r| self.text.get(r.clone())).unwrap_or("")
    }

    pub fn set_width(&mut self, width: u16) {
        let width = usize::from(width.max(1));
        if width != self.width {
            self.width = width;
            self.rows.clear();
            self.wrap_from(0);
        }
    }

    pub fn push_str(&mut self, s: &str) {
        let start = self.rows.pop().map_or(0, |r| r.start);
        sanitise(s, &mut self.text);
        self.wrap_from(start);
    }

    /// Wraps `text[start..]` into rows appended to `self.rows`.
    fn wrap_from(&mut self, start: usize) {
        let text = &self.text;
        let mut row_start = start;
        let mut col = 0usize;
        // Byte offset just after the last space in this row, and where the row text ends there.
        let mut brk: Option<(usize, usize)> = None;
        let mut iter = text[start..].char_indices().map(|(i, c)| (i + start, c)).peekable();
        while let Some((i, c)) = iter.next() {
            if c == '\n' {
                self.rows.push(row_start..i);
                row_start = i + 1;
                col = 0;
                brk = None;
                continue;
            }
            let w = c.width().unwrap_or(0);
            if col + w > self.width && col > 0 {
                if c == ' ' {
                    // The row ends exactly here; the space is the break.
                    self.rows.push(row_start..i);
                    row_start = i + 1;
                    col = 0;
                    brk = None;
                    continue;
                }
                match brk {
                    Some((after, end)) if after > row_start => {
                        self.rows.push(row_start..end);
                        row_start = after;
                        col = display_width(&text[row_start..i]);
                    }
                    _ => {
                        self.rows.push(row_start..i);
                        row_start = i;
                        col = 0;
                    }
                }
                brk = None;
            }
            col += w;
            if c == ' ' {
                let after = iter.peek().map_or(text.len(), |(j, _)| *j);
                let end = text[row_start..i].trim_end_matches(' ').len() + row_start;
                brk = Some((after, end));
            }
        }
        self.rows.push(row_start..text.len());
    }
}

fn display_width(s: &str) -> usize {
    s.chars().map(|c| c.width().unwrap_or(0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(w: &Wrapped) -> Vec<&str> {
        (0..w.rows()).map(|i| w.row(i)).collect()
    }

    #[test]
    fn wraps_at_words_and_hard_breaks_long_words() {
        let w = Wrapped::with_text(10, "the quick brown fox jumps\nover supercalifragilistic");
        assert_eq!(rows(&w), ["the quick", "brown fox", "jumps", "over", "supercalif", "ragilistic"]);
    }

    #[test]
    fn incremental_equals_whole() {
        let text = "Paris became the capital because of its central position, the river Seine\n\nand the \
                    kings who lived there.\tTabs, wide 漢字 characters and a verylongwordthatneedsbreaking end.";
        for width in [1u16, 3, 7, 10, 23, 80] {
            let whole = Wrapped::with_text(width, text);
            let mut inc = Wrapped::new(width);
            let mut i = 0;
            for (n, c) in text.char_indices().skip(1) {
                if n % 3 == 0 {
                    inc.push_str(&text[i..n]);
                    i = n;
                }
                let _ = c;
            }
            inc.push_str(&text[i..]);
            assert_eq!(rows(&inc), rows(&whole), "width {width}");
            for r in rows(&whole) {
                assert!(display_width(r) <= usize::from(width).max(2), "{r:?} wider than {width}");
            }
        }
    }

    #[test]
    fn resize_rewraps_and_control_chars_are_dropped() {
        let mut w = Wrapped::with_text(5, "ab\x1b[2Jcd ef gh");
        assert_eq!(w.text(), "ab[2Jcd ef gh");
        w.set_width(40);
        assert_eq!(rows(&w), ["ab[2Jcd ef gh"]);
        assert_eq!(Wrapped::new(10).rows(), 1);
    }
}
