//! Server-sent events, as far as chat completion streams use them.
//!
//! Bytes arrive in arbitrary pieces: a line, a UTF-8 character or a `\r\n` pair may be split
//! between two network reads, so the parser buffers until it has whole lines and decodes text
//! only then. A line longer than [`MAX_LINE`] is an error rather than unbounded memory.

/// An event's `data` larger than this is not a chat completion chunk.
pub const MAX_LINE: usize = 4 * 1024 * 1024;

/// One dispatched event: the `event:` name (empty for the default `message`) and its data,
/// with multi-line data joined by `\n` as the SSE specification says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: String,
    pub data: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("a stream line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    #[error("the stream is not UTF-8 text")]
    NotUtf8,
}

/// Incremental parser: feed bytes, collect complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    /// A `\r` ended the previous piece; a `\n` starting the next one belongs to it.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `bytes` and appends each event completed by them to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.after_cr && bytes.first() == Some(&b'\n') {
            bytes = &bytes[1..];
        }
        self.after_cr = false;
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.buf.extend_from_slice(&bytes[..pos]);
            let cr = bytes[pos] == b'\r';
            bytes = &bytes[pos + 1..];
            if cr {
                if bytes.first() == Some(&b'\n') {
                    bytes = &bytes[1..];
                } else if bytes.is_empty() {
                    self.after_cr = true;
                }
            }
            let line = std::mem::take(&mut self.buf);
            self.line(&line, out)?;
        }
        if self.buf.len() + bytes.len() > MAX_LINE {
            return Err(SseError::LineTooLong);
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent { event: std::mem::take(&mut self.event), data: std::mem::take(&mut self.data) });
            }
            self.event.clear();
            self.has_data = false;
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                if self.data.len() + value.len() > MAX_LINE {
                    return Err(SseError::LineTooLong);
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => value.clone_into(&mut self.event),
            // `id` and `retry` steer browser reconnection, which a chat stream never uses.
            _ => {}
        }
        Ok(())
    }

    /// Whatever a stream that ended without a final blank line left: some servers close the
    /// connection straight after `data: [DONE]`.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.buf);
        let mut out = Vec::new();
        if !line.is_empty() && self.line(&line, &mut out).is_err() {
            return None;
        }
        self.has_data.then(|| {
            self.has_data = false;
            SseEvent { event: std::mem::take(&mut self.event), data: std::mem::take(&mut self.data) }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            p.feed(chunk, &mut out).expect("valid");
        }
        out.extend(p.finish());
        out
    }

    #[test]
    fn events_survive_any_split_and_line_ending() {
        let text = "data: {\"a\":\"é\"}\r\n\r\n: keep-alive\n\nevent: error\ndata: x\ndata: y\n\ndata: [DONE]\n\n";
        let want = vec![
            SseEvent { event: String::new(), data: "{\"a\":\"é\"}".into() },
            SseEvent { event: "error".into(), data: "x\ny".into() },
            SseEvent { event: String::new(), data: "[DONE]".into() },
        ];
        for piece in 1..=text.len() {
            assert_eq!(parse_in_pieces(text.as_bytes(), piece), want, "piece size {piece}");
        }
        let cr_only = text.replace("\r\n", "\r").replace('\n', "\r");
        assert_eq!(parse_in_pieces(cr_only.as_bytes(), 3), want);
    }

    #[test]
    fn unterminated_last_event_is_recovered() {
        assert_eq!(parse_in_pieces(b"data: [DONE]", 4), vec![SseEvent { event: String::new(), data: "[DONE]".into() }]);
        assert_eq!(parse_in_pieces(b"", 4), vec![]);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        assert_eq!(p.feed(b"data: \xff\xfe\n", &mut out), Err(SseError::NotUtf8));
        let mut p = SseParser::new();
        let huge = vec![b'a'; MAX_LINE + 1];
        assert_eq!(p.feed(&huge, &mut out), Err(SseError::LineTooLong));
    }
}
