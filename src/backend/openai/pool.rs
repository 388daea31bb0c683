//! The endpoints a run spreads its candidates over, and what is known about each.
//!
//! Shared by every request of a backend (one mutex, held for a few field updates only).
//! Dispatch is least-loaded within each endpoint's concurrency limit. An endpoint that refuses
//! connections or breaks a stream is marked down at once, one that times out or answers 5xx
//! after [`DOWN_AFTER`] failures in a row; a down endpoint gets no work until a background
//! probe (`GET /models`, backing off from 1 s to 30 s) finds it answering again. A 429 only
//! rests it until its `Retry-After`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use reqwest::Url;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::EndpointStatus;

/// Consecutive timeouts or 5xx answers after which an endpoint is taken out of rotation.
pub const DOWN_AFTER: u32 = 3;
const PROBE_FIRST: Duration = Duration::from_secs(1);
const PROBE_MAX: Duration = Duration::from_secs(30);

/// Whether an endpoint answers several choices in one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    Unknown,
    Yes,
    No,
}

#[derive(Clone, Debug)]
enum Health {
    Up,
    /// Rate limited: usable again at the instant.
    Resting(Instant),
    Down,
}

#[derive(Debug)]
pub struct Endpoint {
    /// The base URL ending in `/v1`, as reports show it.
    pub url: String,
    pub chat: Url,
    pub models: Url,
    pub limit: u32,
}

impl Endpoint {
    /// Accepts `http://host:port`, `…/v1` and a trailing slash; anything else is an error
    /// that quotes the value.
    pub fn parse(raw: &str, limit: u32) -> Result<Self, String> {
        let mut url = Url::parse(raw.trim()).map_err(|e| format!("endpoint `{raw}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(format!("endpoint `{raw}` must be an http:// or https:// URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("endpoint `{raw}` must not have a query or fragment"));
        }
        let path = url.path().trim_end_matches('/').to_owned();
        let base = if path.ends_with("/v1") { path } else { format!("{path}/v1") };
        url.set_path(&format!("{base}/"));
        let join = |p: &str| url.join(p).map_err(|e| format!("endpoint `{raw}`: {e}"));
        Ok(Self {
            url: url.as_str().trim_end_matches('/').to_owned(),
            chat: join("chat/completions")?,
            models: join("models")?,
            limit: limit.max(1),
        })
    }
}

#[derive(Debug)]
struct State {
    health: Health,
    in_flight: u32,
    dispatched: u64,
    done: u64,
    failed: u64,
    tokens: u64,
    failures: u32,
    n: Support,
    extras: bool,
    /// Lowered to 1 for a server seen cutting one stream short when another request arrived.
    limit: u32,
    probing: bool,
    last_error: Option<String>,
}

pub struct Pool {
    pub endpoints: Vec<Endpoint>,
    state: Mutex<Vec<State>>,
    /// Woken whenever a slot frees or an endpoint comes back.
    pub notify: Notify,
    pub client: reqwest::Client,
    pub probe_timeout: Duration,
    pub shutdown: CancellationToken,
}

impl Pool {
    pub fn new(endpoints: Vec<Endpoint>, client: reqwest::Client, probe_timeout: Duration, batch_n: bool) -> Self {
        let state = endpoints
            .iter()
            .map(|e| State {
                health: Health::Up,
                in_flight: 0,
                dispatched: 0,
                done: 0,
                failed: 0,
                tokens: 0,
                failures: 0,
                n: if batch_n { Support::Unknown } else { Support::No },
                extras: true,
                limit: e.limit,
                probing: false,
                last_error: None,
            })
            .collect();
        Self {
            endpoints,
            state: Mutex::new(state),
            notify: Notify::new(),
            client,
            probe_timeout,
            shutdown: CancellationToken::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<State>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot on the least-loaded usable endpoint.
    pub fn acquire(&self, now: Instant) -> Option<usize> {
        let mut st = self.lock();
        let mut best: Option<(usize, f64, u64)> = None;
        for (i, s) in st.iter_mut().enumerate() {
            if let Health::Resting(until) = s.health
                && until <= now
            {
                s.health = Health::Up;
            }
            let limit = s.limit;
            if !matches!(s.health, Health::Up) || s.in_flight >= limit {
                continue;
            }
            let load = f64::from(s.in_flight) / f64::from(limit);
            if best.is_none_or(|(_, l, d)| load < l || (load <= l && s.dispatched < d)) {
                best = Some((i, load, s.dispatched));
            }
        }
        let (i, ..) = best?;
        st[i].in_flight += 1;
        st[i].dispatched += 1;
        Some(i)
    }

    /// Gives back `k` slots of endpoint `i`.
    pub fn release(&self, i: usize, k: u32) {
        {
            let mut st = self.lock();
            st[i].in_flight = st[i].in_flight.saturating_sub(k);
        }
        self.notify.notify_waiters();
    }

    pub fn support(&self, i: usize) -> (Support, bool) {
        let st = self.lock();
        (st[i].n, st[i].extras)
    }

    pub fn set_n(&self, i: usize, n: Support) {
        self.lock()[i].n = n;
    }

    pub fn disable_extras(&self, i: usize) {
        self.lock()[i].extras = false;
    }

    /// Requests in flight on endpoint `i`.
    pub fn in_flight(&self, i: usize) -> u32 {
        self.lock()[i].in_flight
    }

    /// One request at a time from now on; false if that was already so.
    pub fn serialise(&self, i: usize) -> bool {
        let mut st = self.lock();
        let was = st[i].limit;
        st[i].limit = 1;
        was > 1
    }

    pub fn add_tokens(&self, i: usize, k: u64) {
        self.lock()[i].tokens += k;
    }

    pub fn succeeded(&self, i: usize, candidates: u64) {
        let mut st = self.lock();
        st[i].failures = 0;
        st[i].done += candidates;
    }

    /// Records a failed attempt; `down` takes the endpoint out at once (it refused or dropped
    /// the connection), otherwise after [`DOWN_AFTER`] in a row.
    pub fn failed(self: &Arc<Self>, i: usize, down: bool, error: &str) {
        let mut st = self.lock();
        let s = &mut st[i];
        s.failed += 1;
        s.failures += 1;
        s.last_error = Some(error.to_owned());
        if (down || s.failures >= DOWN_AFTER) && !matches!(s.health, Health::Down) {
            tracing::warn!(endpoint = %self.endpoints[i].url, error, "endpoint marked down");
            s.health = Health::Down;
        }
        drop(st);
        self.ensure_probes();
    }

    /// Marks endpoint `i` down before any request (it did not answer at start).
    pub fn mark_down(&self, i: usize, error: &str) {
        let mut st = self.lock();
        st[i].health = Health::Down;
        st[i].last_error = Some(error.to_owned());
    }

    /// Rate limited: no new work for endpoint `i` until `until`.
    pub fn rest(&self, i: usize, until: Instant, error: &str) {
        let mut st = self.lock();
        let s = &mut st[i];
        s.failed += 1;
        s.last_error = Some(error.to_owned());
        if !matches!(s.health, Health::Down) {
            s.health = Health::Resting(until);
        }
    }

    /// True while some endpoint is up or only resting: waiting work has somewhere to go.
    pub fn any_alive(&self) -> bool {
        self.lock().iter().any(|s| !matches!(s.health, Health::Down))
    }

    /// When the first resting endpoint may take work again; never an instant already past
    /// (a waiter would wake for it again and again).
    pub fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter_map(|s| match s.health {
                Health::Resting(until) if until > now => Some(until),
                _ => None,
            })
            .min()
    }

    /// `url: error` for every endpoint that is down.
    pub fn down_report(&self) -> String {
        let st = self.lock();
        let parts: Vec<String> = st
            .iter()
            .zip(&self.endpoints)
            .filter(|(s, _)| matches!(s.health, Health::Down))
            .map(|(s, e)| {
                let error = s.last_error.as_deref().unwrap_or("down");
                // Errors recorded by a request already start with the endpoint's URL.
                let error = error.strip_prefix(e.url.as_str()).and_then(|r| r.strip_prefix(": ")).unwrap_or(error);
                format!("{}: {error}", e.url)
            })
            .collect();
        parts.join("; ")
    }

    pub fn status(&self) -> Vec<EndpointStatus> {
        let st = self.lock();
        let now = Instant::now();
        st.iter()
            .zip(&self.endpoints)
            .map(|(s, e)| EndpointStatus {
                url: e.url.clone(),
                up: !matches!(s.health, Health::Down),
                state: match s.health {
                    Health::Up => "up".to_owned(),
                    Health::Resting(until) => format!("rate limited for {:.0}s", (until - now).as_secs_f64().max(0.0)),
                    Health::Down => "down".to_owned(),
                },
                in_flight: s.in_flight,
                limit: s.limit,
                done: s.done,
                failed: s.failed,
                tokens: s.tokens,
                last_error: s.last_error.clone(),
            })
            .collect()
    }

    /// Starts a probe task for every down endpoint that has none. Needs a tokio runtime; a
    /// caller outside one (start-up) leaves it to the first request.
    pub fn ensure_probes(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let mut st = self.lock();
        for (i, s) in st.iter_mut().enumerate() {
            if matches!(s.health, Health::Down) && !s.probing {
                s.probing = true;
                rt.spawn(Arc::clone(self).probe(i));
            }
        }
    }

    async fn probe(self: Arc<Self>, i: usize) {
        let mut wait = PROBE_FIRST;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            let url = self.endpoints[i].models.clone();
            let answer = self.client.get(url).timeout(self.probe_timeout).send().await;
            match answer {
                Ok(r) if r.status().is_success() => {
                    {
                        let mut st = self.lock();
                        st[i].health = Health::Up;
                        st[i].failures = 0;
                        st[i].probing = false;
                    }
                    tracing::info!(endpoint = %self.endpoints[i].url, "endpoint is back");
                    self.notify.notify_waiters();
                    return;
                }
                Ok(r) => tracing::debug!(endpoint = %self.endpoints[i].url, status = %r.status(), "probe"),
                Err(e) => tracing::debug!(endpoint = %self.endpoints[i].url, error = %e, "probe"),
            }
            wait = (wait * 2).min(PROBE_MAX);
        }
    }
}

/// A flight's hold on `k` slots of an endpoint, given back however the flight ends.
pub struct Slots {
    pub pool: Arc<Pool>,
    pub ep: usize,
    pub k: u32,
}

impl Drop for Slots {
    fn drop(&mut self) {
        self.pool.release(self.ep, self.k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(limits: &[u32]) -> Arc<Pool> {
        let eps = limits
            .iter()
            .enumerate()
            .map(|(i, &l)| Endpoint::parse(&format!("http://127.0.0.1:{}", 9000 + i), l).expect("url"))
            .collect();
        Arc::new(Pool::new(eps, reqwest::Client::new(), Duration::from_secs(1), true))
    }

    #[test]
    fn urls_are_normalised_to_v1() {
        for raw in ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"] {
            let e = Endpoint::parse(raw, 1).expect("valid");
            assert_eq!(e.url, "http://h:8000/v1");
            assert_eq!(e.chat.as_str(), "http://h:8000/v1/chat/completions");
            assert_eq!(e.models.as_str(), "http://h:8000/v1/models");
        }
        assert_eq!(Endpoint::parse("https://x/proxy/", 1).expect("valid").url, "https://x/proxy/v1");
        for bad in ["localhost:8000", "ftp://h/", "http://h/?a=1", ""] {
            assert!(Endpoint::parse(bad, 1).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn least_loaded_within_limits() {
        let p = pool(&[2, 4]);
        let now = Instant::now();
        let picks: Vec<usize> = (0..6).filter_map(|_| p.acquire(now)).collect();
        assert_eq!(picks.iter().filter(|&&i| i == 0).count(), 2);
        assert_eq!(picks.iter().filter(|&&i| i == 1).count(), 4);
        assert_eq!(p.acquire(now), None, "both full");
        p.release(0, 1);
        assert_eq!(p.acquire(now), Some(0));
    }

    #[tokio::test]
    async fn down_and_resting_endpoints_get_no_work() {
        let p = pool(&[4, 4]);
        let now = Instant::now();
        p.failed(0, true, "http://127.0.0.1:9000/v1: connection refused");
        assert!((0..4).all(|_| p.acquire(now) == Some(1)));
        assert!(p.any_alive());
        assert_eq!(p.down_report(), "http://127.0.0.1:9000/v1: connection refused", "the URL once");
        let q = pool(&[1]);
        q.rest(0, now + Duration::from_secs(2), "429");
        assert_eq!(q.acquire(now), None);
        assert_eq!(q.next_wake(), Some(now + Duration::from_secs(2)));
        q.rest(0, now - Duration::from_millis(1), "429");
        assert_eq!(q.next_wake(), None, "a rest already over is no reason to wake");
        assert_eq!(q.acquire(now + Duration::from_secs(3)), Some(0));
        for _ in 0..DOWN_AFTER {
            q.failed(0, false, "HTTP 500");
        }
        assert!(!q.any_alive());
    }
}
