//! A backend that plays back a script instead of running a model: per candidate, pieces of
//! text, holds, delays and failures. It stands in for a model only where the engine's own logic
//! is under test (tests/engine_controls.rs): controls, run numbers, undo, resume.
//!
//! Always compiled: it is small, has no dependencies of its own, and a cargo feature would
//! make every test command remember a flag. Nothing in the program builds one.
//!
//! A [`Step::Hold`] stops the request until the test calls [`ScriptedBackend::release`] (or
//! the request is cancelled), so a test can act at an exact point of a generation and assert
//! what followed from the events alone, never from the clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    Backend, BackendError, FinishReason, GenRequest, JobEvent, Limits, LimitsReply, MemorySnapshot, Metrics, ModelInfo,
    limits_reply,
};

/// One step of a candidate's script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A piece of the response.
    Text(String),
    /// Wait until [`ScriptedBackend::release`] (or cancellation). Holds the whole request.
    Hold,
    /// Sleep; for realism only, never something a test's outcome depends on.
    Delay(Duration),
    /// The candidate fails with this error (the rest of its script is not played).
    Fail(String),
}

impl Step {
    pub fn text(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

/// Which candidate a script is asked for: `run` is `seed - base seed`, which the engine makes
/// the run number (see `distill::generate`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Call {
    pub seed: u64,
    pub temperature: f32,
    /// The request's number, from 0, in the order the backend received them.
    pub request: u64,
}

type Script = dyn Fn(&GenRequest, Call) -> Vec<Step> + Send + Sync;

pub struct ScriptedBackend {
    script: Box<Script>,
    requests: Mutex<Vec<GenRequest>>,
    count: AtomicU64,
    holds: Arc<Semaphore>,
    limits: Mutex<Limits>,
    /// Limits refused with this reason (as an engine whose allocator says no).
    refuse: Mutex<Option<String>>,
}

impl ScriptedBackend {
    pub fn new(script: impl Fn(&GenRequest, Call) -> Vec<Step> + Send + Sync + 'static) -> Self {
        Self {
            script: Box::new(script),
            requests: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            holds: Arc::new(Semaphore::new(0)),
            limits: Mutex::new(Limits::default()),
            refuse: Mutex::new(None),
        }
    }

    /// Lets `n` held steps go on.
    pub fn release(&self, n: usize) {
        self.holds.add_permits(n);
    }

    /// Refuses every later `set_limits` with `reason` (`None`: accepts them again).
    pub fn refuse_limits(&self, reason: Option<&str>) {
        *self.refuse.lock().unwrap_or_else(PoisonError::into_inner) = reason.map(str::to_owned);
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<GenRequest> {
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Plays the candidates of one request, one step of each in turn (as a batch interleaves).
async fn play(
    mut scripts: Vec<std::vec::IntoIter<Step>>,
    events: mpsc::Sender<JobEvent>,
    cancel: CancellationToken,
    holds: Arc<Semaphore>,
) {
    let started = Instant::now();
    let n = scripts.len();
    let mut text = vec![String::new(); n];
    let mut tokens = vec![0u32; n];
    let mut open: Vec<bool> = vec![true; n];
    let _ = events.send(JobEvent::Prefilled { prompt_tokens: 8, elapsed: Duration::ZERO }).await;
    let done = |k: usize, text: String, tokens: u32, finish| JobEvent::Done {
        candidate: u32::try_from(k).unwrap_or(u32::MAX),
        text,
        finish,
        metrics: Metrics { prompt_tokens: 8, generated_tokens: tokens, wall: started.elapsed(), ..Metrics::default() },
    };
    while open.iter().any(|o| *o) {
        for k in 0..n {
            if !open[k] {
                continue;
            }
            if cancel.is_cancelled() {
                break;
            }
            let candidate = u32::try_from(k).unwrap_or(u32::MAX);
            match scripts[k].next() {
                Some(Step::Text(t)) => {
                    text[k].push_str(&t);
                    tokens[k] += 1;
                    let _ = events.send(JobEvent::Token { candidate, text: t }).await;
                }
                Some(Step::Hold) => {
                    tokio::select! {
                        permit = holds.acquire() => if let Ok(p) = permit { p.forget() },
                        () = cancel.cancelled() => {}
                    }
                }
                Some(Step::Delay(d)) => {
                    tokio::select! {
                        () = tokio::time::sleep(d) => {}
                        () = cancel.cancelled() => {}
                    }
                }
                Some(Step::Fail(error)) => {
                    open[k] = false;
                    let _ = events.send(JobEvent::Failed { candidate, error }).await;
                }
                None => {
                    open[k] = false;
                    let _ = events.send(done(k, std::mem::take(&mut text[k]), tokens[k], FinishReason::Stop)).await;
                }
            }
        }
        if cancel.is_cancelled() {
            for k in 0..n {
                if open[k] {
                    open[k] = false;
                    let _ =
                        events.send(done(k, std::mem::take(&mut text[k]), tokens[k], FinishReason::Cancelled)).await;
                }
            }
        }
    }
}

impl Backend for ScriptedBackend {
    fn info(&self) -> ModelInfo {
        ModelInfo { backend: "scripted".into(), architecture: "script".into(), ..ModelInfo::default() }
    }

    fn generate(
        &self,
        req: GenRequest,
        events: mpsc::Sender<JobEvent>,
        cancel: CancellationToken,
    ) -> Result<(), BackendError> {
        let request = self.count.fetch_add(1, Ordering::SeqCst);
        let scripts = (0..req.n.max(1))
            .map(|k| {
                let call = Call {
                    seed: req.sampling.seed.wrapping_add(u64::from(k)),
                    temperature: req.sampling.temperature,
                    request,
                };
                (self.script)(&req, call).into_iter()
            })
            .collect();
        self.requests.lock().unwrap_or_else(PoisonError::into_inner).push(req);
        tokio::spawn(play(scripts, events, cancel, Arc::clone(&self.holds)));
        Ok(())
    }

    fn memory(&self) -> MemorySnapshot {
        MemorySnapshot {
            source: "scripted".into(),
            limits: *self.limits.lock().unwrap_or_else(PoisonError::into_inner),
            ..MemorySnapshot::default()
        }
    }

    fn set_limits(&self, limits: Limits) -> Result<LimitsReply, BackendError> {
        let refuse = self.refuse.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(reason) = refuse {
            return Ok(limits_reply(Err(BackendError::Other(reason))));
        }
        *self.limits.lock().unwrap_or_else(PoisonError::into_inner) = limits;
        Ok(limits_reply(Ok(())))
    }
}
