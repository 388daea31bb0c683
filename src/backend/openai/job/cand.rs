//! One candidate as its coordinator tracks it across attempts.

use tokio::time::Instant;

use super::super::wire::Usage;
use crate::backend::{FinishReason, Metrics};

#[derive(Default)]
pub(super) struct Cand {
    /// The attempt that owns it; `None` while it waits for one.
    pub attempt: Option<u64>,
    /// Counted failures so far.
    pub failures: u32,
    /// Not to be sent before this (backoff).
    pub not_before: Option<Instant>,
    pub text: String,
    /// Content deltas of the current attempt (a token each on the servers that matter).
    pub tokens: u32,
    pub first: Option<Instant>,
    /// Set when its choice sent a `finish_reason`: its text is then complete.
    pub finish: Option<(FinishReason, Instant)>,
    pub done: bool,
}

impl Cand {
    /// Forgets the current attempt; true if it had streamed anything (views must drop it).
    pub fn reset(&mut self, not_before: Instant) -> bool {
        let streamed = self.tokens > 0;
        self.attempt = None;
        self.text.clear();
        self.tokens = 0;
        self.first = None;
        self.finish = None;
        self.not_before = Some(not_before);
        streamed
    }

    /// Figures for a finished candidate of an attempt sent at `sent`. `usage` is trusted only
    /// for single-choice requests (with `n` it sums every choice).
    pub fn metrics(&self, sent: Instant, usage: Option<Usage>) -> Metrics {
        let at = self.finish.map_or_else(Instant::now, |(_, at)| at);
        let generated = usage.and_then(|u| u.completion_tokens).unwrap_or(self.tokens);
        let prompt_tokens = usage.and_then(|u| u.prompt_tokens).unwrap_or(0);
        let first = self.first.unwrap_or(at);
        let ttft = first.duration_since(sent);
        Metrics {
            prompt_tokens,
            generated_tokens: generated,
            ttft,
            prefill_tok_s: Metrics::rate(prompt_tokens, ttft),
            decode_tok_s: Metrics::rate(generated.saturating_sub(1), at.duration_since(first)),
            wall: at.duration_since(sent),
        }
    }
}
