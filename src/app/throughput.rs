//! Decode rate as the operator sees it: tokens counted in half-second buckets (all candidates
//! of a batch together), so the figure and the sparkline fall to zero when decoding stops.

use std::collections::VecDeque;
use std::time::Duration;

pub const BUCKET: Duration = Duration::from_millis(500);
/// A minute of history for the sparkline.
pub const HISTORY: usize = 120;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Throughput {
    /// Tokens per completed bucket, oldest first.
    pub history: VecDeque<u64>,
    bucket: u64,
    count: u64,
    /// Prompt tokens per second of the latest prefill.
    pub prefill_tok_s: Option<f64>,
    /// Time to first token of the latest request.
    pub ttft: Option<Duration>,
    /// The latest finished candidate's own decode rate, as the backend measured it.
    pub last_decode_tok_s: Option<f64>,
    pub request_started: Option<Duration>,
    pub first_token_seen: bool,
    pub total_tokens: u64,
}

impl Throughput {
    fn index(at: Duration) -> u64 {
        u64::try_from(at.as_millis() / BUCKET.as_millis()).unwrap_or(u64::MAX)
    }

    /// Closes the buckets that ended before `at`.
    pub fn advance(&mut self, at: Duration) {
        let idx = Self::index(at);
        if idx <= self.bucket {
            return;
        }
        let gap = (idx - self.bucket).min(HISTORY as u64 + 1);
        self.history.push_back(std::mem::take(&mut self.count));
        for _ in 1..gap {
            self.history.push_back(0);
        }
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        self.bucket = idx;
    }

    pub fn token(&mut self, at: Duration) {
        self.advance(at);
        self.count += 1;
        self.total_tokens += 1;
        if !self.first_token_seen {
            self.first_token_seen = true;
            self.ttft = self.request_started.map(|s| at.saturating_sub(s));
        }
    }

    pub fn request(&mut self, at: Duration) {
        self.request_started = Some(at);
        self.first_token_seen = false;
    }

    /// Tokens per second over the last two completed buckets.
    pub fn rate(&self) -> f64 {
        let n: u64 = self.history.iter().rev().take(2).sum();
        #[allow(clippy::cast_precision_loss)]
        let r = n as f64 / (2.0 * BUCKET.as_secs_f64());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_rises_and_decays() {
        let mut t = Throughput::default();
        t.request(Duration::ZERO);
        for i in 0..200u64 {
            t.token(Duration::from_millis(i * 10));
        }
        t.advance(Duration::from_millis(2000));
        assert!((t.rate() - 100.0).abs() < 1e-9, "{}", t.rate());
        assert_eq!(t.ttft, Some(Duration::ZERO));
        t.advance(Duration::from_secs(10));
        assert_eq!(t.rate(), 0.0);
        assert!(t.history.len() <= HISTORY);
        t.advance(Duration::from_secs(1000));
        assert_eq!(t.history.len(), HISTORY);
    }
}
