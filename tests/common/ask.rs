//! Asking an in-process backend one request and collecting everything it says.

use lem_tui::backend::{Backend, FinishReason, GenRequest, JobEvent, Metrics};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub struct Answer {
    pub texts: Vec<String>,
    pub streamed: Vec<String>,
    pub finish: Vec<Option<FinishReason>>,
    pub metrics: Vec<Metrics>,
    pub prefilled: Option<u32>,
    /// How many `Prefilled` events came (one per request), and whether a token came before one.
    pub prefills: u32,
    pub token_before_prefill: bool,
    pub failures: Vec<String>,
}

/// Sends `req` and collects its events until the request ends; cancels after
/// `cancel_after` streamed tokens when given.
pub fn ask(backend: &dyn Backend, req: GenRequest, cancel_after: Option<usize>) -> Answer {
    let n = req.n as usize;
    let (rx, cancel) = send(backend, req, 8);
    collect(n, rx, &cancel, cancel_after)
}

/// Sends `req` with an event channel of `capacity`.
pub fn send(backend: &dyn Backend, req: GenRequest, capacity: usize) -> (mpsc::Receiver<JobEvent>, CancellationToken) {
    let (tx, rx) = mpsc::channel(capacity);
    let cancel = CancellationToken::new();
    backend.generate(req, tx, cancel.clone()).expect("request accepted");
    (rx, cancel)
}

/// Reads a request's events (`n` candidates) until it ends.
pub fn collect(
    n: usize,
    mut rx: mpsc::Receiver<JobEvent>,
    cancel: &CancellationToken,
    cancel_after: Option<usize>,
) -> Answer {
    let mut a = Answer {
        texts: vec![String::new(); n],
        streamed: vec![String::new(); n],
        finish: vec![None; n],
        metrics: vec![Metrics::default(); n],
        prefilled: None,
        prefills: 0,
        token_before_prefill: false,
        failures: Vec::new(),
    };
    let mut tokens = 0;
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            JobEvent::Prefilled { prompt_tokens, .. } => {
                a.prefilled = Some(prompt_tokens);
                a.prefills += 1;
            }
            JobEvent::Token { candidate, text } => {
                a.token_before_prefill |= a.prefills == 0;
                a.streamed[candidate as usize].push_str(&text);
                tokens += 1;
                if cancel_after.is_some_and(|k| tokens >= k) {
                    cancel.cancel();
                }
            }
            JobEvent::Done { candidate, text, finish, metrics } => {
                a.texts[candidate as usize] = text;
                a.finish[candidate as usize] = Some(finish);
                a.metrics[candidate as usize] = metrics;
            }
            JobEvent::Failed { error, .. } | JobEvent::Unavailable { error } => a.failures.push(error),
            // In-process engines never retry a candidate elsewhere; a restart here would be a bug.
            JobEvent::Restart { candidate, reason } => panic!("unexpected restart of {candidate}: {reason}"),
        }
    }
    a
}
