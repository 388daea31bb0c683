//! One request's coordinator: owns its candidates, sends them out as attempts (one HTTP
//! request each, carrying one candidate or, where the endpoint takes `n`, several), and is the
//! only place that emits [`JobEvent`]s for them.
//!
//! Exactly-once: a candidate belongs to at most one attempt at a time and ends in exactly one
//! `Done` or `Failed`. Messages from an attempt that no longer owns a candidate are dropped. A
//! candidate whose attempt fails is given back to the queue; if it had streamed tokens the
//! views are first told to forget them with [`JobEvent::Restart`]. A choice that finished
//! (it sent its `finish_reason`) is complete whatever happens to the rest of its stream.

mod cand;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::cand::Cand;
use super::pool::{Pool, Slots, Support};
use super::stream::{Attempt, AttemptError, Msg, Timeouts};
use super::verdict::{Verdict, verdict};
use super::wire::{Body, Usage};
use crate::backend::{FinishReason, GenRequest, JobEvent, Metrics};

/// Settings every request of a backend shares.
#[derive(Debug)]
pub struct JobConfig {
    pub model: String,
    pub stop: Vec<String>,
    pub api_key: Option<super::ApiKey>,
    pub timeouts: Timeouts,
    /// Failed attempts after which a candidate fails (rejections of `n` or optional fields,
    /// which change the request, do not count).
    pub max_attempts: u32,
    /// How long a request waits while every endpoint is down before it ends with
    /// [`JobEvent::Unavailable`].
    pub give_up: Duration,
}

struct Flight {
    ep: usize,
    cands: Vec<u32>,
    /// Which choice indices the stream mentioned: how a server that ignores `n` is detected.
    seen: Vec<bool>,
    sent: Instant,
    extras: bool,
    _slots: Slots,
}

/// The job is over: the events' receiver is gone (nobody wants the rest), or it said
/// [`JobEvent::Unavailable`].
struct Gone;

pub struct Job {
    pool: Arc<Pool>,
    cfg: Arc<JobConfig>,
    req: GenRequest,
    events: mpsc::Sender<JobEvent>,
    cancel: CancellationToken,
    cands: Vec<Cand>,
    flights: HashMap<u64, Flight>,
    tasks: JoinSet<()>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    next_id: u64,
    prefilled: bool,
    stalled_since: Option<Instant>,
    started: Instant,
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.saturating_sub(1).min(5))).min(Duration::from_secs(8))
}

impl Job {
    pub fn new(
        pool: Arc<Pool>,
        cfg: Arc<JobConfig>,
        req: GenRequest,
        events: mpsc::Sender<JobEvent>,
        cancel: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(256);
        let cands = (0..req.n).map(|_| Cand::default()).collect();
        Self {
            pool,
            cfg,
            req,
            events,
            cancel,
            cands,
            flights: HashMap::new(),
            tasks: JoinSet::new(),
            tx,
            rx,
            next_id: 0,
            prefilled: false,
            stalled_since: None,
            started: Instant::now(),
        }
    }

    pub async fn run(mut self) {
        self.pool.ensure_probes();
        let pool = Arc::clone(&self.pool);
        while self.cands.iter().any(|c| !c.done) {
            while self.tasks.try_join_next().is_some() {}
            let notified = pool.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.dispatch();
            if self.check_stalled().await.is_err() {
                return;
            }
            // With nothing to wake for, only a message, a freed slot or an endpoint coming back
            // (the pool's notification) moves the job on.
            let wake = self.next_wake().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let step = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return self.cancel_all().await,
                () = pool.shutdown.cancelled() => return self.cancel_all().await,
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.on_msg(msg).await,
                    None => Err(Gone),
                },
                () = &mut notified => Ok(()),
                () = tokio::time::sleep_until(wake) => Ok(()),
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn emit(&self, ev: JobEvent) -> Result<(), Gone> {
        self.events.send(ev).await.map_err(|_| Gone)
    }

    fn dispatch(&mut self) {
        let now = Instant::now();
        let mut groups: Vec<(usize, Vec<u32>)> = Vec::new();
        for (c, cand) in (0u32..).zip(&self.cands) {
            if cand.done || cand.attempt.is_some() || cand.not_before.is_some_and(|t| t > now) {
                continue;
            }
            let Some(ep) = self.pool.acquire(now) else { break };
            match groups.iter_mut().find(|(e, _)| *e == ep) {
                Some((_, cs)) => cs.push(c),
                None => groups.push((ep, vec![c])),
            }
        }
        for (ep, cs) in groups {
            let (n, extras) = self.pool.support(ep);
            if n == Support::No {
                for c in cs {
                    self.launch(ep, vec![c], extras, now);
                }
            } else {
                self.launch(ep, cs, extras, now);
            }
        }
    }

    fn launch(&mut self, ep: usize, cands: Vec<u32>, extras: bool, now: Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let k = u32::try_from(cands.len()).unwrap_or(u32::MAX);
        let body = Body {
            model: &self.cfg.model,
            messages: &self.req.messages,
            sampling: self.req.sampling,
            seed: self.req.sampling.seed.wrapping_add(u64::from(cands[0])),
            n: k,
            stop: &self.cfg.stop,
            extras,
        };
        let attempt = Attempt {
            id,
            client: self.pool.client.clone(),
            url: self.pool.endpoints[ep].chat.clone(),
            body: body.to_json().to_string().into_bytes(),
            api_key: self.cfg.api_key.clone(),
            n: k,
            timeouts: self.cfg.timeouts,
        };
        for &c in &cands {
            let cand = &mut self.cands[c as usize];
            cand.attempt = Some(id);
            cand.not_before = None;
        }
        tracing::debug!(attempt = id, endpoint = %self.pool.endpoints[ep].url, ?cands, "dispatch");
        let slots = Slots { pool: Arc::clone(&self.pool), ep, k };
        self.flights.insert(id, Flight { ep, seen: vec![false; cands.len()], cands, sent: now, extras, _slots: slots });
        self.tasks.spawn(attempt.run(self.tx.clone(), self.cancel.child_token()));
    }

    /// Ends the request once every endpoint has been down for `give_up` with candidates
    /// waiting: the caller stops its run rather than record failures a later run would have
    /// to redo.
    async fn check_stalled(&mut self) -> Result<(), Gone> {
        let waiting = self.cands.iter().any(|c| !c.done && c.attempt.is_none());
        if !waiting || !self.flights.is_empty() || self.pool.any_alive() {
            self.stalled_since = None;
            return Ok(());
        }
        let now = Instant::now();
        let since = *self.stalled_since.get_or_insert(now);
        if now.duration_since(since) < self.cfg.give_up {
            return Ok(());
        }
        let error = format!(
            "no endpoint came back within {}s: {}",
            self.cfg.give_up.as_secs_f64().round(),
            self.pool.down_report()
        );
        tracing::error!(%error, "giving up on the request");
        self.emit(JobEvent::Unavailable { error }).await?;
        Err(Gone)
    }

    fn next_wake(&self) -> Option<Instant> {
        // Only backoffs still to come: one already past is a candidate waiting for a slot or
        // an endpoint, which the pool's notification announces. (Waking for a past instant
        // would make this loop spin at 100 % of a core while every endpoint is down.)
        let now = Instant::now();
        let retry = self
            .cands
            .iter()
            .filter(|c| !c.done && c.attempt.is_none())
            .filter_map(|c| c.not_before)
            .filter(|&t| t > now)
            .min();
        let give_up = self.stalled_since.map(|s| s + self.cfg.give_up);
        [retry, self.pool.next_wake(), give_up].into_iter().flatten().min()
    }

    async fn on_msg(&mut self, msg: Msg) -> Result<(), Gone> {
        match msg {
            Msg::Token { attempt, index, text, at } => {
                let Some(c) = self.owned(attempt, index) else { return Ok(()) };
                let (ep, sent) = self.flights.get(&attempt).map(|f| (f.ep, f.sent)).unwrap_or((0, at));
                let cand = &mut self.cands[c];
                cand.first.get_or_insert(at);
                cand.tokens += 1;
                cand.text.push_str(&text);
                self.pool.add_tokens(ep, 1);
                if !self.prefilled {
                    self.prefilled = true;
                    // Servers report prompt tokens only at the end, if at all.
                    self.emit(JobEvent::Prefilled { prompt_tokens: 0, elapsed: at.duration_since(sent) }).await?;
                }
                self.emit(JobEvent::Token { candidate: c as u32, text }).await
            }
            Msg::Finish { attempt, index, finish } => {
                if let Some(c) = self.owned(attempt, index) {
                    self.cands[c].finish = Some((finish, Instant::now()));
                }
                Ok(())
            }
            Msg::End { attempt, result } => self.on_end(attempt, result).await,
        }
    }

    /// The candidate behind choice `index` of `attempt`, if that attempt still owns it.
    fn owned(&mut self, attempt: u64, index: u32) -> Option<usize> {
        let f = self.flights.get_mut(&attempt)?;
        if let Some(seen) = f.seen.get_mut(index as usize) {
            *seen = true;
        }
        let c = *f.cands.get(index as usize)? as usize;
        let cand = &self.cands[c];
        (!cand.done && cand.attempt == Some(attempt)).then_some(c)
    }

    async fn on_end(&mut self, attempt: u64, result: Result<Option<Usage>, AttemptError>) -> Result<(), Gone> {
        let Some(f) = self.flights.remove(&attempt) else { return Ok(()) };
        let url = self.pool.endpoints[f.ep].url.clone();
        let single = f.cands.len() == 1;
        let usage = result.as_ref().ok().copied().flatten().filter(|_| single);
        let mut rest = Vec::new();
        let mut completed = 0;
        for (i, &c) in f.cands.iter().enumerate() {
            let cand = &self.cands[c as usize];
            if cand.done || cand.attempt != Some(attempt) {
                continue;
            }
            if cand.finish.is_some() {
                self.complete(c as usize, &f, usage).await?;
                completed += 1;
            } else {
                rest.push((i, c as usize));
            }
        }
        let err = match result {
            Ok(_) => {
                self.pool.succeeded(f.ep, completed);
                let multi = f.seen.iter().skip(1).any(|&s| s);
                if !single {
                    self.pool.set_n(f.ep, if multi { Support::Yes } else { Support::No });
                }
                // Still counting this flight's own slots: more means another request was in
                // flight beside it.
                let crowded = self.pool.in_flight(f.ep) > u32::try_from(f.cands.len()).unwrap_or(u32::MAX);
                for (i, c) in rest {
                    if !single && !multi && i > 0 {
                        tracing::info!(endpoint = %url, "the server ignores `n`; sending one request per candidate");
                        self.requeue(c, None).await?;
                    } else if crowded && self.pool.serialise(f.ep) {
                        // llama-cpp-python's default (`interrupt_requests`): a new request ends
                        // the stream in progress with [DONE] and no finish_reason.
                        tracing::warn!(endpoint = %url, "the server cut a stream short when another request arrived; \
                            one request at a time from now on (llama-cpp-python: --interrupt_requests False avoids this)");
                        self.requeue(c, Some((format!("{url}: interrupted by another request"), Duration::ZERO)))
                            .await?;
                    } else {
                        self.retry(c, format!("{url}: the stream ended before choice {i} finished"), false).await?;
                    }
                }
                return Ok(());
            }
            Err(AttemptError::Cancelled) => {
                for (_, c) in rest {
                    self.requeue(c, None).await?;
                }
                return Ok(());
            }
            Err(e) => e,
        };
        let msg = format!("{url}: {err}");
        tracing::warn!(attempt, error = %msg, "attempt failed");
        match verdict(&err, !single, f.extras) {
            Verdict::Rest(wait) => {
                self.pool.rest(f.ep, Instant::now() + wait, &msg);
                for (_, c) in rest {
                    self.retry(c, msg.clone(), false).await?;
                }
            }
            v @ (Verdict::WithoutN | Verdict::WithoutExtras) => {
                if v == Verdict::WithoutN {
                    tracing::info!(endpoint = %url, "the server refuses `n`; sending one request per candidate");
                    self.pool.set_n(f.ep, Support::No);
                } else {
                    tracing::info!(endpoint = %url, "the server refuses top_k/repeat_penalty/stream_options; not sending them");
                    self.pool.disable_extras(f.ep);
                }
                for (_, c) in rest {
                    self.requeue(c, None).await?;
                }
            }
            Verdict::Fail => {
                for (_, c) in rest {
                    self.fail(c, msg.clone()).await?;
                }
            }
            Verdict::Retry { down } => {
                self.pool.failed(f.ep, down, &msg);
                for (_, c) in rest {
                    self.retry(c, msg.clone(), true).await?;
                }
            }
        }
        Ok(())
    }

    async fn complete(&mut self, c: usize, f: &Flight, usage: Option<Usage>) -> Result<(), Gone> {
        let cand = &mut self.cands[c];
        let Some((finish, _)) = cand.finish else { return Ok(()) };
        cand.done = true;
        let metrics = cand.metrics(f.sent, usage);
        let text = std::mem::take(&mut cand.text);
        self.emit(JobEvent::Done { candidate: c as u32, text, finish, metrics }).await
    }

    async fn fail(&mut self, c: usize, error: String) -> Result<(), Gone> {
        let cand = &mut self.cands[c];
        cand.done = true;
        cand.attempt = None;
        cand.text.clear();
        self.emit(JobEvent::Failed { candidate: c as u32, error }).await
    }

    /// A counted failure: back to the queue after a backoff, or failed for good.
    async fn retry(&mut self, c: usize, error: String, backoff_first: bool) -> Result<(), Gone> {
        let failures = self.cands[c].failures + 1;
        self.cands[c].failures = failures;
        if failures >= self.cfg.max_attempts {
            return self.fail(c, format!("{error} (gave up after {failures} attempts)")).await;
        }
        let delay = if backoff_first { backoff(failures) } else { Duration::ZERO };
        self.requeue(c, Some((error, delay))).await
    }

    /// Back to the queue; views forget what it streamed.
    async fn requeue(&mut self, c: usize, why: Option<(String, Duration)>) -> Result<(), Gone> {
        let (reason, delay) = why.unwrap_or_else(|| ("sent again without `n`".to_owned(), Duration::ZERO));
        if self.cands[c].reset(Instant::now() + delay) {
            self.emit(JobEvent::Restart { candidate: c as u32, reason }).await?;
        }
        Ok(())
    }

    async fn cancel_all(mut self) {
        self.tasks.abort_all();
        let wall = self.started.elapsed();
        for c in 0..self.cands.len() {
            let cand = &mut self.cands[c];
            if cand.done {
                continue;
            }
            cand.done = true;
            let text = std::mem::take(&mut cand.text);
            let metrics = Metrics { generated_tokens: cand.tokens, wall, ..Metrics::default() };
            let ev = JobEvent::Done { candidate: c as u32, text, finish: FinishReason::Cancelled, metrics };
            if self.events.send(ev).await.is_err() {
                return;
            }
        }
    }
}
