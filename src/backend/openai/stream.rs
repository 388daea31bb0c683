//! One HTTP attempt: send a chat completion request to one endpoint and turn its SSE stream
//! into [`Msg`]s for the request's coordinator. It decides nothing about retries; it only says
//! precisely how the attempt ended ([`AttemptError`]).
//!
//! Every wait is bounded: connect (the client's connect timeout), the response headers and
//! the first chunk (`first_byte`), and each later chunk (`idle`).

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::sse::{SseEvent, SseParser};
use super::wire::{self, Chunk, Usage};
use crate::backend::FinishReason;

/// Per-attempt waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to its first chunk (covers queueing and prefill).
    pub first_byte: Duration,
    /// Between two chunks once streaming.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(10), first_byte: Duration::from_secs(300), idle: Duration::from_secs(60) }
    }
}

/// What an attempt reports. `index` is the choice index within the attempt's request.
#[derive(Debug)]
pub enum Msg {
    Token {
        attempt: u64,
        index: u32,
        text: String,
        at: Instant,
    },
    Finish {
        attempt: u64,
        index: u32,
        finish: FinishReason,
    },
    /// Sent last, exactly once per attempt.
    End {
        attempt: u64,
        result: Result<Option<Usage>, AttemptError>,
    },
}

/// How an attempt failed. The coordinator maps each to retry, rest, down or fail.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum AttemptError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no response within {0:?}")]
    NoResponse(Duration),
    #[error("HTTP {code}: {message}")]
    Status { code: u16, retry_after: Option<Duration>, message: String },
    #[error("stream stalled: no data for {0:?}")]
    Idle(Duration),
    #[error("{0}")]
    Broken(String),
    #[error("bad stream: {0}")]
    Protocol(String),
    #[error("server error: {message}")]
    Server { message: String, fatal: bool },
    #[error("cancelled")]
    Cancelled,
}

/// The longest `Retry-After` obeyed; a server asking for more is treated as asking this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// How much of an error body is read.
const ERROR_BODY_MAX: usize = 64 * 1024;

pub struct Attempt {
    pub id: u64,
    pub client: reqwest::Client,
    pub url: reqwest::Url,
    pub body: Vec<u8>,
    pub api_key: Option<super::ApiKey>,
    pub n: u32,
    pub timeouts: Timeouts,
}

impl Attempt {
    /// Runs the attempt to its end; the last message on `tx` is always `End`.
    pub async fn run(self, tx: mpsc::Sender<Msg>, cancel: CancellationToken) {
        let id = self.id;
        let result = tokio::select! {
            r = self.stream(&tx) => r,
            () = cancel.cancelled() => Err(AttemptError::Cancelled),
        };
        let _ = tx.send(Msg::End { attempt: id, result }).await;
    }

    async fn stream(&self, tx: &mpsc::Sender<Msg>) -> Result<Option<Usage>, AttemptError> {
        let mut req = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "text/event-stream")
            .body(self.body.clone());
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(&key.0);
        }
        let sent = Instant::now();
        let deadline = sent + self.timeouts.first_byte;
        let mut resp = match tokio::time::timeout_at(deadline, req.send()).await {
            Err(_) => return Err(AttemptError::NoResponse(self.timeouts.first_byte)),
            Ok(Err(e)) if e.is_timeout() => {
                return Err(AttemptError::Connect(format!("no connection within {:?}", self.timeouts.connect)));
            }
            Ok(Err(e)) => return Err(AttemptError::Connect(chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| wire::retry_after(v, std::time::SystemTime::now()))
                .map(|d| d.min(MAX_RETRY_AFTER));
            let body = read_error_body(&mut resp, self.timeouts.idle).await;
            let message = if body.trim().is_empty() {
                status.canonical_reason().unwrap_or("error").to_owned()
            } else {
                wire::body_message(&body)
            };
            return Err(AttemptError::Status { code: status.as_u16(), retry_after, message });
        }
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let mut usage = None;
        let mut streaming = false;
        loop {
            let wait = if streaming {
                timeout(self.timeouts.idle, resp.chunk()).await
            } else {
                tokio::time::timeout_at(deadline, resp.chunk()).await
            };
            let chunk = match wait {
                Err(_) if streaming => return Err(AttemptError::Idle(self.timeouts.idle)),
                Err(_) => return Err(AttemptError::NoResponse(self.timeouts.first_byte)),
                Ok(Err(e)) => return Err(AttemptError::Broken(format!("stream broke: {}", chain(&e)))),
                Ok(Ok(c)) => c,
            };
            let Some(bytes) = chunk else {
                events.extend(parser.finish());
                if self.handle(&events, &mut usage, tx).await? {
                    return Ok(usage);
                }
                return Err(AttemptError::Broken("stream ended without [DONE]".into()));
            };
            parser.feed(&bytes, &mut events).map_err(|e| AttemptError::Protocol(e.to_string()))?;
            // Keep-alive comments before the first event do not count: a server that only
            // pings is still not answering.
            streaming |= !events.is_empty();
            if self.handle(&events, &mut usage, tx).await? {
                return Ok(usage);
            }
            events.clear();
        }
    }

    /// Forwards the events' contents; true once `[DONE]` arrived.
    async fn handle(
        &self,
        events: &[SseEvent],
        usage: &mut Option<Usage>,
        tx: &mpsc::Sender<Msg>,
    ) -> Result<bool, AttemptError> {
        for ev in events {
            let data = ev.data.trim();
            if data == "[DONE]" {
                return Ok(true);
            }
            if ev.event == "error" {
                let v: Value = serde_json::from_str(data).unwrap_or_else(|_| Value::String(data.to_owned()));
                return Err(AttemptError::Server { message: wire::error_text(&v), fatal: wire::error_is_final(&v) });
            }
            let chunk: Chunk = serde_json::from_str(data)
                .map_err(|e| AttemptError::Protocol(format!("invalid JSON chunk ({e}): {}", clip(data))))?;
            if let Some(err) = &chunk.error {
                return Err(AttemptError::Server { message: wire::error_text(err), fatal: wire::error_is_final(err) });
            }
            if chunk.usage.is_some() {
                *usage = chunk.usage;
            }
            for choice in &chunk.choices {
                if choice.index >= self.n {
                    return Err(AttemptError::Protocol(format!(
                        "choice index {} in a request for {} choice(s)",
                        choice.index, self.n
                    )));
                }
                if let Some(text) = choice.content() {
                    let msg =
                        Msg::Token { attempt: self.id, index: choice.index, text: text.to_owned(), at: Instant::now() };
                    tx.send(msg).await.map_err(|_| AttemptError::Cancelled)?;
                }
                if let Some(reason) = choice.finish_reason.as_deref() {
                    let finish = wire::finish_reason(reason)
                        .map_err(|r| AttemptError::Server { message: format!("finish_reason `{r}`"), fatal: false })?;
                    let msg = Msg::Finish { attempt: self.id, index: choice.index, finish };
                    tx.send(msg).await.map_err(|_| AttemptError::Cancelled)?;
                }
            }
        }
        Ok(false)
    }
}

async fn read_error_body(resp: &mut reqwest::Response, idle: Duration) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_MAX {
        match timeout(idle, resp.chunk()).await {
            Ok(Ok(Some(b))) => body.extend_from_slice(&b),
            _ => break,
        }
    }
    body.truncate(ERROR_BODY_MAX);
    String::from_utf8_lossy(&body).into_owned()
}

/// reqwest's top-level message is "error sending request"; the cause (refused, reset) is
/// what an operator needs.
pub(super) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
