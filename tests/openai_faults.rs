//! The openai backend against hostile or broken servers (a fault-injecting mock on 127.0.0.1):
//! every case ends each candidate exactly once, with a clear error or after a retry, within
//! the configured timeouts. Never a hang, never a panic.

mod common;
#[path = "support/mock_openai.rs"]
mod mock;

use std::time::{Duration, Instant};

use lem_tui::backend::openai::{self, ApiKey, EndpointOptions, OpenAiBackend, OpenAiOptions, Timeouts};
use lem_tui::backend::{Backend, FinishReason, GenRequest, JobEvent, Message, Sampling};
use mock::{Mock, Reply, answer, finish, token};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn options(urls: &[String]) -> OpenAiOptions {
    OpenAiOptions {
        endpoints: urls.iter().map(|u| EndpointOptions { url: u.clone(), concurrency: None }).collect(),
        timeouts: Timeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_millis(800),
            idle: Duration::from_millis(800),
        },
        max_attempts: 2,
        give_up: Duration::from_secs(2),
        ..OpenAiOptions::default()
    }
}

fn connect(mocks: &[&Mock]) -> OpenAiBackend {
    let urls: Vec<String> = mocks.iter().map(|m| m.url()).collect();
    openai::connect(options(&urls)).expect("connects")
}

fn request(n: u32) -> GenRequest {
    let sampling =
        Sampling { max_tokens: 16, temperature: 0.7, top_k: 40, repeat_penalty: 1.1, seed: 5, ..Sampling::default() };
    GenRequest { messages: vec![Message::user("Say something.")], sampling, n }
}

/// What became of one candidate.
#[derive(Debug, PartialEq)]
enum End {
    Done(String, FinishReason),
    Failed(String),
    /// The request ended with `Unavailable` before this candidate ended.
    Unavailable(String),
}

struct Run {
    ends: Vec<End>,
    restarts: usize,
    elapsed: Duration,
}

/// Runs a request to its end, checking the contract: one `Done`/`Failed` per candidate, no
/// event for a candidate after it, streamed text (minus what `Restart` retracted) equal to the
/// final text, and the job gone afterwards.
async fn run(backend: &OpenAiBackend, n: u32, cancel: CancellationToken) -> Run {
    let (tx, mut rx) = mpsc::channel(64);
    let started = Instant::now();
    backend.generate(request(n), tx, cancel).expect("accepted");
    let mut ends: Vec<Option<End>> = (0..n).map(|_| None).collect();
    let mut streamed = vec![String::new(); n as usize];
    let mut restarts = 0;
    while ends.iter().any(Option::is_none) {
        let ev =
            tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("no hang").expect("channel open");
        let c = match &ev {
            JobEvent::Prefilled { .. } => continue,
            JobEvent::Unavailable { error } => {
                for e in ends.iter_mut().filter(|e| e.is_none()) {
                    *e = Some(End::Unavailable(error.clone()));
                }
                continue;
            }
            JobEvent::Token { candidate, .. }
            | JobEvent::Restart { candidate, .. }
            | JobEvent::Done { candidate, .. }
            | JobEvent::Failed { candidate, .. } => *candidate as usize,
        };
        assert!(ends[c].is_none(), "event after candidate {c} ended: {ev:?}");
        match ev {
            JobEvent::Token { text, .. } => streamed[c].push_str(&text),
            JobEvent::Restart { .. } => {
                restarts += 1;
                streamed[c].clear();
            }
            JobEvent::Done { text, finish, .. } => {
                if finish != FinishReason::Cancelled {
                    assert_eq!(streamed[c], text, "streamed text is the final text");
                }
                ends[c] = Some(End::Done(text, finish));
            }
            JobEvent::Failed { error, .. } => ends[c] = Some(End::Failed(error)),
            JobEvent::Prefilled { .. } | JobEvent::Unavailable { .. } => {}
        }
    }
    let elapsed = started.elapsed();
    let after = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("the job ends");
    assert!(after.is_none(), "nothing after the last candidate: {after:?}");
    Run { ends: ends.into_iter().flatten().collect(), restarts, elapsed }
}

fn failed(r: &Run) -> Vec<&str> {
    r.ends.iter().filter_map(|e| if let End::Failed(m) = e { Some(m.as_str()) } else { None }).collect()
}

fn done_texts(r: &Run) -> Vec<&str> {
    r.ends.iter().filter_map(|e| if let End::Done(t, _) = e { Some(t.as_str()) } else { None }).collect()
}

#[tokio::test]
async fn invalid_json_chunk_fails_with_a_clear_error_after_bounded_retries() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let m = Mock::start(|_, _| Reply::Sse {
        blocks: vec![token(0, "ok "), "data: {\"choices\": [{\"index\": 0, \"delta\": {\"content\": \"x\"\n\n".into()],
        done: true,
        gap: Duration::from_millis(5),
    });
    let b = connect(&[&m]);
    let r = run(&b, 1, CancellationToken::new()).await;
    let errs = failed(&r);
    assert_eq!(errs.len(), 1, "{:?}", r.ends);
    assert!(errs[0].contains("invalid JSON chunk") && errs[0].contains("gave up after 2 attempts"), "{}", errs[0]);
    assert!(errs[0].contains(&m.url()), "names the endpoint: {}", errs[0]);
    assert_eq!(m.requests().len(), 2);
    assert_eq!(r.restarts, 1, "the first attempt's token was retracted");
}

#[tokio::test]
async fn error_event_is_retried_unless_it_blames_the_request() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let m = Mock::start(|i, body| match i {
        0 => Reply::Sse {
            blocks: vec![
                token(0, "half "),
                "event: error\ndata: {\"error\":{\"message\":\"engine died\",\"code\":500}}\n\n".into(),
            ],
            done: false,
            gap: Duration::from_millis(5),
        },
        _ => answer(body, &["w"]),
    });
    let b = connect(&[&m]);
    let r = run(&b, 1, CancellationToken::new()).await;
    assert_eq!(done_texts(&r), ["w0 "]);
    assert_eq!(r.restarts, 1);

    let m = Mock::start(|_, _| {
        Reply::Sse {
        blocks: vec!["data: {\"error\":{\"message\":\"prompt is too long\",\"type\":\"invalid_request_error\",\"code\":400}}\n\n".into()],
        done: false,
        gap: Duration::ZERO,
    }
    });
    let b = connect(&[&m]);
    let r = run(&b, 1, CancellationToken::new()).await;
    let errs = failed(&r);
    assert!(errs.len() == 1 && errs[0].contains("prompt is too long"), "{:?}", r.ends);
    assert_eq!(m.requests().len(), 1, "a request-level error is not retried");
}

#[tokio::test]
async fn stream_that_stops_without_done_is_regenerated_not_duplicated() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let m = Mock::start(|i, body| {
        if i == 0 {
            Reply::Sse {
                blocks: vec![token(0, "lost "), token(0, "words ")],
                done: false,
                gap: Duration::from_millis(5),
            }
        } else {
            answer(body, &["kept"])
        }
    });
    let b = connect(&[&m]);
    let r = run(&b, 1, CancellationToken::new()).await;
    assert_eq!(done_texts(&r), ["kept0 "]);
    assert_eq!(r.restarts, 1);
    let status = b.endpoints();
    assert_eq!((status[0].done, status[0].failed), (1, 1), "{status:?}");

    // Always cut short: a clear error, not a hang.
    let m = Mock::start(|_, _| Reply::Sse { blocks: vec![token(0, "a")], done: false, gap: Duration::ZERO });
    let r = run(&connect(&[&m]), 1, CancellationToken::new()).await;
    assert!(failed(&r)[0].contains("stream ended without [DONE]"), "{:?}", r.ends);
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let m = Mock::start(|i, body| match i {
        0 => Reply::Status {
            code: 429,
            headers: vec![("retry-after".into(), "1".into())],
            body: r#"{"error":{"message":"slow down"}}"#.into(),
        },
        _ => answer(body, &["late"]),
    });
    let b = connect(&[&m]);
    let r = run(&b, 1, CancellationToken::new()).await;
    assert_eq!(done_texts(&r), ["late0 "]);
    let seen = m.requests();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at.duration_since(seen[0].at);
    assert!(gap >= Duration::from_millis(950), "Retry-After honoured: {gap:?}");

    let m = Mock::start(|_, _| Reply::Status {
        code: 429,
        headers: vec![("Retry-After".into(), "0".into())],
        body: r#"{"error":{"message":"quota exceeded"}}"#.into(),
    });
    let r = run(&connect(&[&m]), 1, CancellationToken::new()).await;
    let errs = failed(&r);
    assert!(errs[0].contains("HTTP 429") && errs[0].contains("quota exceeded"), "{errs:?}");
}

#[tokio::test]
async fn server_that_never_answers_times_out() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let m = Mock::start(|_, _| Reply::Hang);
    let b = connect(&[&m]);
    let r = run(&b, 2, CancellationToken::new()).await;
    let errs = failed(&r);
    assert_eq!(errs.len(), 2, "{:?}", r.ends);
    assert!(errs.iter().all(|e| e.contains("no response within")), "{errs:?}");
    assert!(r.elapsed < Duration::from_secs(10), "bounded by the timeouts: {:?}", r.elapsed);

    // Keep-alive comments are not an answer.
    let m = Mock::start(|_, _| Reply::Sse {
        blocks: vec![": ping\n\n".into(); 100],
        done: false,
        gap: Duration::from_millis(100),
    });
    let r = run(&connect(&[&m]), 1, CancellationToken::new()).await;
    assert!(failed(&r)[0].contains("no response within"), "{:?}", r.ends);

    // A stream that goes silent after its first token hits the idle timeout.
    let m = Mock::start(|_, _| Reply::Sse {
        blocks: vec![token(0, "a "), String::new()],
        done: false,
        gap: Duration::from_secs(20),
    });
    let r = run(&connect(&[&m]), 1, CancellationToken::new()).await;
    assert!(failed(&r)[0].contains("stream stalled"), "{:?}", r.ends);
}

#[tokio::test]
async fn client_errors_fail_at_once() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let m = Mock::start(|_, _| Reply::Status {
        code: 401,
        headers: vec![],
        body: r#"{"error":{"message":"bad key"}}"#.into(),
    });
    let r = run(&connect(&[&m]), 2, CancellationToken::new()).await;
    let errs = failed(&r);
    assert_eq!(errs.len(), 2);
    assert!(errs[0].contains("HTTP 401: bad key"), "{errs:?}");
    assert!(m.requests().len() <= 2, "not retried");
}

#[tokio::test]
async fn n_is_used_where_honoured_and_split_where_not() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let honours = Mock::start(|_, body| answer(body, &["a", "b"]));
    let b = connect(&[&honours]);
    let r = run(&b, 3, CancellationToken::new()).await;
    assert_eq!(done_texts(&r), ["a0 b0 ", "a1 b1 ", "a2 b2 "]);
    let seen = honours.requests();
    assert_eq!(seen.len(), 1, "one request for three candidates");
    assert_eq!(seen[0].body["n"], 3);
    assert_eq!(seen[0].body["stream"], true);
    assert_eq!(seen[0].body["top_k"], 40);

    // llama-cpp-python's way: `n` is accepted and ignored (only choice 0 comes back).
    let ignores = Mock::start(|_, body| {
        let mut one = body.clone();
        one["n"] = Value::from(1);
        answer(&one, &["x"])
    });
    let b = connect(&[&ignores]);
    let r = run(&b, 3, CancellationToken::new()).await;
    assert_eq!(done_texts(&r), ["x0 "; 3]);
    let r = run(&b, 2, CancellationToken::new()).await;
    assert_eq!(done_texts(&r).len(), 2);
    let seen = ignores.requests();
    assert_eq!(seen.len(), 3 + 2, "1 probe with n=3, 2 singles, then singles only");
    assert!(seen[1..].iter().all(|s| s.body.get("n").is_none()));
    let seeds: Vec<u64> = seen[3..].iter().filter_map(|s| s.body["seed"].as_u64()).collect();
    assert_eq!(seeds.len(), 2);
    assert_ne!(seeds[0], seeds[1], "each candidate has its own seed");

    // llama-server's way: a 400 that says so.
    let refuses = Mock::start(|_, body| {
        if body.get("n").is_some() {
            Reply::Status {
                code: 400,
                headers: vec![],
                body: r#"{"error":{"message":"Only one completion choice is allowed"}}"#.into(),
            }
        } else {
            answer(body, &["y"])
        }
    });
    let r = run(&connect(&[&refuses]), 2, CancellationToken::new()).await;
    assert_eq!(done_texts(&r), ["y0 "; 2]);
}

#[tokio::test]
async fn optional_fields_are_dropped_when_refused() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let strict = Mock::start(|_, body| {
        if body.get("top_k").is_some() || body.get("stream_options").is_some() {
            Reply::Status {
                code: 400,
                headers: vec![],
                body: r#"{"error":{"message":"Unrecognized request argument supplied: top_k"}}"#.into(),
            }
        } else {
            answer(body, &["z"])
        }
    });
    let r = run(&connect(&[&strict]), 1, CancellationToken::new()).await;
    assert_eq!(done_texts(&r), ["z0 "]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_dying_mid_stream_moves_its_candidates_elsewhere() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let mut dying = Mock::start(|_, _| Reply::Sse {
        blocks: vec![token(0, "doomed "); 200],
        done: true,
        gap: Duration::from_millis(20),
    });
    let healthy = Mock::start(|_, body| Reply::Sse {
        blocks: match answer(body, &["fine"]) {
            Reply::Sse { blocks, .. } => blocks,
            _ => unreachable!(),
        },
        done: true,
        gap: Duration::from_millis(100),
    });
    let b = connect(&[&dying, &healthy]);
    let cancel = CancellationToken::new();
    let job = run(&b, 4, cancel);
    let killer = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::task::block_in_place(|| dying.kill());
    };
    let (r, ()) = tokio::join!(job, killer);
    assert_eq!(done_texts(&r).len(), 4, "{:?}", r.ends);
    assert!(done_texts(&r).iter().all(|t| t.starts_with("fine")), "{:?}", r.ends);
    assert!(r.restarts >= 1, "the dying endpoint had streamed");
    let status = b.endpoints();
    assert!(!status[0].up && status[0].last_error.is_some(), "reported down: {status:?}");
    assert!(status[1].up && status[1].done == 4, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_every_candidate_once() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let m = Mock::start(|_, _| Reply::Sse {
        blocks: vec![token(0, "slow "); 100],
        done: true,
        gap: Duration::from_millis(50),
    });
    let b = connect(&[&m]);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        c2.cancel();
    });
    let r = run(&b, 3, cancel).await;
    assert_eq!(r.ends.len(), 3);
    assert!(r.ends.iter().all(|e| matches!(e, End::Done(_, FinishReason::Cancelled))), "{:?}", r.ends);
    assert!(r.elapsed < Duration::from_secs(3));
}

/// Nanoseconds this thread has been runnable: on a CPU plus waiting for one
/// (/proc/thread-self/schedstat). A busy loop is runnable all the time however loaded the
/// machine is; a waiting thread almost never.
fn runnable_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("/proc/thread-self/schedstat");
    let f: Vec<u64> = stat.split_whitespace().map(|v| v.parse().expect("a number")).collect();
    f[0] + f[1]
}

/// Every endpoint down (the stream broke, then nothing answers): the request waits on the
/// pool without spinning, then ends with `Unavailable`, naming the endpoint and its error.
/// The job runs on this test's own thread (a current-thread runtime), so the thread's
/// runnable time is the wait's.
#[tokio::test]
async fn all_endpoints_down_gives_up_with_the_reasons() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let mut m = Mock::start(|_, body| answer(body, &["never"]));
    let b = connect(&[&m]);
    m.kill();
    let (busy, wall) = (runnable_ns(), Instant::now());
    let r = run(&b, 2, CancellationToken::new()).await;
    let (busy, wall) = (runnable_ns() - busy, wall.elapsed());
    assert_eq!(r.ends.len(), 2, "{:?}", r.ends);
    for e in &r.ends {
        let End::Unavailable(msg) = e else { panic!("every candidate ends with the request: {:?}", r.ends) };
        assert!(msg.contains("no endpoint came back within 2s") && msg.contains(&m.url()), "{msg}");
        assert!(msg.contains("cannot connect"), "the endpoint's last error: {msg}");
    }
    assert!(!b.endpoints()[0].up);
    assert!(wall >= Duration::from_secs(2), "waited the configured time: {wall:?}");
    #[allow(clippy::cast_precision_loss)]
    let share = busy as f64 / wall.as_nanos() as f64;
    eprintln!("waiting with every endpoint down: runnable {:.1} % of {wall:?}", share * 100.0);
    assert!(share < 0.2, "the wait kept a core {:.0} % busy ({busy} ns over {wall:?})", share * 100.0);
}

#[test]
fn start_up_reports_unreachable_endpoints() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let url = format!("http://127.0.0.1:{port}/v1");
    let err = openai::connect(options(std::slice::from_ref(&url))).err().expect("nothing answers");
    assert!(err.to_string().contains(&url), "{err}");
    let live = Mock::start(|_, body| answer(body, &["x"]));
    let b = openai::connect(options(&[url.clone(), live.url()])).expect("one answers");
    let status = b.endpoints();
    assert!(!status[0].up && status[1].up, "{status:?}");
    assert_eq!(b.info().architecture, "mock-model", "model taken from GET /v1/models");
    assert_eq!(b.memory().source, "remote");
}

#[tokio::test]
async fn api_key_is_sent_as_a_bearer_token_and_never_shown() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let m = Mock::start(|_, body| answer(body, &["k"]));
    let mut opts = options(&[m.url()]);
    opts.api_key = Some(ApiKey("s3cret-key".into()));
    assert!(!format!("{opts:?}").contains("s3cret"), "Debug redacts the key");
    let b = openai::connect(opts).expect("connects");
    let r = run(&b, 1, CancellationToken::new()).await;
    assert_eq!(done_texts(&r), ["k0 "]);
    assert_eq!(m.requests()[0].auth.as_deref(), Some("Bearer s3cret-key"));
}

/// The pool's side of scaling: with servers that stream at a fixed pace, one request at a
/// time each, two endpoints finish the same candidates in about half the time of one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_paced_endpoints_take_half_the_time_of_one() {
    let _deadline = common::deadline(Duration::from_secs(120));
    let paced = || {
        Mock::start(|_, _| Reply::Sse {
            blocks: (0..20).map(|i| token(0, &format!("t{i} "))).chain([finish(0, "stop")]).collect(),
            done: true,
            gap: Duration::from_millis(10),
        })
    };
    let (a, b) = (paced(), paced());
    let mut times = Vec::new();
    for mocks in [vec![&a], vec![&a, &b]] {
        let urls: Vec<String> = mocks.iter().map(|m| m.url()).collect();
        let mut opts = options(&urls);
        opts.concurrency = 1;
        opts.batch_n = false;
        let backend = tokio::task::block_in_place(|| openai::connect(opts)).expect("connects");
        let r = run(&backend, 8, CancellationToken::new()).await;
        assert_eq!(done_texts(&r).len(), 8);
        times.push(r.elapsed);
    }
    let ratio = times[1].as_secs_f64() / times[0].as_secs_f64();
    eprintln!("8 paced candidates: one endpoint {:?}, two {:?}", times[0], times[1]);
    assert!(ratio < 0.7, "one endpoint {:?}, two {:?} (ratio {ratio:.2})", times[0], times[1]);
}
