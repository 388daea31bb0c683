//! One candidate's bookkeeping while a blocking engine decodes it: the text streamed so far,
//! the tokens counted, its first-token time, and its one `Done`. llama.cpp and MLX decode
//! differently but answer a request the same way, so they share this.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{FinishReason, JobEvent, Metrics};

/// What every candidate of a request shares: when it started, its prompt and prefill rate.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestClock {
    pub started: Instant,
    pub prompt_tokens: u32,
    pub prefill_tok_s: f64,
}

#[derive(Debug)]
pub(crate) struct Candidate {
    pub candidate: u32,
    text: String,
    pub generated: u32,
    first_token: Option<Instant>,
}

impl Candidate {
    pub fn new(candidate: u32) -> Self {
        Self { candidate, text: String::new(), generated: 0, first_token: None }
    }

    /// Counts one generated token and streams `piece` (its text, possibly empty while a
    /// character is incomplete). A closed channel means nobody listens: the request is
    /// cancelled.
    pub fn token(&mut self, piece: String, events: &mpsc::Sender<JobEvent>, cancel: &CancellationToken) {
        self.first_token.get_or_insert_with(Instant::now);
        self.generated += 1;
        if piece.is_empty() {
            return;
        }
        self.text.push_str(&piece);
        // A full channel means the consumer is slow: waiting here is the backpressure.
        if events.blocking_send(JobEvent::Token { candidate: self.candidate, text: piece }).is_err() {
            cancel.cancel();
        }
    }

    /// Why this candidate stops after the token it just saw, if it does.
    pub fn finish_reason(&self, stopped: bool, max_tokens: u32) -> Option<FinishReason> {
        if stopped {
            Some(FinishReason::Stop)
        } else if self.generated >= max_tokens {
            Some(FinishReason::Length)
        } else {
            None
        }
    }

    pub fn metrics(&self, clock: &RequestClock) -> Metrics {
        let wall = clock.started.elapsed();
        let ttft = self.first_token.map_or(Duration::ZERO, |t| t.duration_since(clock.started));
        Metrics {
            prompt_tokens: clock.prompt_tokens,
            generated_tokens: self.generated,
            ttft,
            prefill_tok_s: clock.prefill_tok_s,
            decode_tok_s: Metrics::rate(self.generated.saturating_sub(1), wall.saturating_sub(ttft)),
            wall,
        }
    }

    /// Sends the candidate's one `Done`, with `tail` (what a detokenizer still held) appended.
    pub fn done(&mut self, tail: &str, finish: FinishReason, clock: &RequestClock, events: &mpsc::Sender<JobEvent>) {
        self.text.push_str(tail);
        let metrics = self.metrics(clock);
        let text = std::mem::take(&mut self.text);
        let _ = events.blocking_send(JobEvent::Done { candidate: self.candidate, text, finish, metrics });
    }
}

/// `Done(Cancelled)` for candidates that never produced a token.
pub(crate) fn cancelled(events: &mpsc::Sender<JobEvent>, owed: &[u32], prompt_tokens: u32, started: Instant) {
    for &candidate in owed {
        let metrics = Metrics { prompt_tokens, wall: started.elapsed(), ..Metrics::default() };
        let _ = events.blocking_send(JobEvent::Done {
            candidate,
            text: String::new(),
            finish: FinishReason::Cancelled,
            metrics,
        });
    }
}

/// `Failed` for every candidate still owed an answer.
pub(crate) fn failed(events: &mpsc::Sender<JobEvent>, owed: &[u32], error: &str) {
    for &candidate in owed {
        let _ = events.blocking_send(JobEvent::Failed { candidate, error: error.to_owned() });
    }
}
