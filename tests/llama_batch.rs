//! Requests that reach the llama.cpp engine together (several probes in flight) are decoded as
//! one batch, and each is answered as it would be alone: its own prompt, its own events, its own
//! cancellation. On the PyPI Gemma 3 270M, with the CPU chain and with the graph's samplers.
//!
//! "As alone" holds to the rounding of a batch's width, as it does for one request's N: ggml's
//! CPU kernels take a batch's rows in groups (its repacked Q4_K product runs groups of four
//! rows one way and the rest another), so a row's logits can differ in the last bits with the
//! batch around it, and a long enough answer eventually meets a near-tie that goes the other way.
//! So greedy answers are compared over their first tokens (as `tests/llama_backend.rs` compares
//! one request's N against one stream), and a batch's sampled answers repeat exactly with the
//! same requests and seeds.
//!
//! Which requests the worker batches is decided by what is queued when it takes one, so the
//! tests make that deterministic: a blocker request whose events are not read holds the worker
//! (its channel is full) while the requests under test are queued behind it.
#![cfg(feature = "llama")]

mod common;

use common::ask::{Answer, ask, collect, send};
use common::log::{field, generation_lines, log};
use lem_tui::backend::llama::{KvLayout, LlamaOptions, SamplerMode, spawn};
use lem_tui::backend::worker::WorkerBackend;
use lem_tui::backend::{FinishReason, GenRequest, Limits, Message, Sampling};

fn engine(sampler: SamplerMode, kv: KvLayout) -> WorkerBackend {
    engine_in(sampler, kv, 1)
}

fn engine_in(sampler: SamplerMode, kv: KvLayout, lanes: u32) -> WorkerBackend {
    log();
    spawn(LlamaOptions {
        path: common::model_path("gemma3/270m"),
        threads: 2,
        fallback_template: Some("gemma".to_owned()),
        force_template: false,
        gpu_layers: 0,
        sampler,
        kv,
        lanes,
        limits: Limits::default(),
    })
    .expect("model loads")
}

fn lem(seed: u64, max_tokens: u32) -> Sampling {
    Sampling { max_tokens, temperature: 0.75, top_k: 40, top_p: 0.95, repeat_penalty: 1.1, seed, ..Sampling::default() }
}

fn req(prompt: &str, sampling: Sampling, n: u32) -> GenRequest {
    GenRequest { messages: vec![Message::user(prompt)], sampling, n }
}

fn greedy(max_tokens: u32) -> Sampling {
    Sampling { max_tokens, seed: 1, ignore_eos: true, ..Sampling::default() }
}

const PROMPTS: [&str; 3] = [
    "Tell me a short story about a lighthouse keeper.",
    "What should a new gardener plant first?",
    "Name three rivers and the seas they reach.",
];

/// The three prompts as requests of different widths (2, 3 and 1 candidates).
fn three(sampling: impl Fn(usize) -> Sampling) -> Vec<(GenRequest, Option<usize>)> {
    PROMPTS.iter().zip([2, 3, 1]).enumerate().map(|(i, (p, n))| (req(p, sampling(i), n), None)).collect()
}

/// Sends `reqs` while a blocker holds the worker, so that they are queued together when it
/// takes the next one; then releases the blocker and reads them all at once.
fn queued_together(backend: &WorkerBackend, reqs: Vec<(GenRequest, Option<usize>)>) -> Vec<Answer> {
    let blocker = req("Count slowly.", Sampling { ignore_eos: true, ..lem(3, 64) }, 1);
    let (mut held, stop) = send(backend, blocker, 1);
    // Its first event: the worker is inside the blocker's decode loop, where it stays until
    // this side reads again (its channel holds one event).
    assert!(held.blocking_recv().is_some(), "the blocker started");
    let sent: Vec<_> = reqs
        .into_iter()
        .map(|(r, after)| {
            let n = r.n as usize;
            let (rx, cancel) = send(backend, r, 8);
            (n, rx, cancel, after)
        })
        .collect();
    stop.cancel();
    let _ = collect(1, held, &stop, None);
    std::thread::scope(|scope| {
        let readers: Vec<_> =
            sent.into_iter().map(|(n, rx, c, after)| scope.spawn(move || collect(n, rx, &c, after))).collect();
        readers.into_iter().map(|r| r.join().expect("reader")).collect()
    })
}

/// The log lines of batches of exactly `requests` requests and `n` sequences, for `sampler` and
/// the KV layout `kv` (the tests of this file run at once and share the log).
fn batch_lines(sampler: &str, kv: &str, requests: usize, n: u32) -> Vec<String> {
    generation_lines(sampler)
        .into_iter()
        .filter(|l| {
            field(l, "kv") == kv && field(l, "requests") == requests.to_string() && field(l, "n") == n.to_string()
        })
        .collect()
}

fn answers_alone_and_together(sampler: SamplerMode, kv: KvLayout) {
    let backend = engine(sampler, kv);
    // Each prompt alone, one stream of its first 12 tokens.
    let alone: Vec<String> = PROMPTS
        .iter()
        .map(|p| {
            let a = ask(&backend, req(p, greedy(12), 1), None);
            assert!(a.failures.is_empty(), "{:?}", a.failures);
            a.texts[0].clone()
        })
        .collect();
    assert!(alone[0] != alone[1] && alone[1] != alone[2], "distinct prompts, distinct answers: {alone:?}");
    let together = queued_together(&backend, three(|_| greedy(20)));
    assert_eq!(together.len(), 3);
    for (i, t) in together.iter().enumerate() {
        assert!(t.failures.is_empty(), "{:?}", t.failures);
        assert_eq!(t.texts, t.streamed, "request {i}: Done carries what was streamed");
        assert!(t.finish.iter().all(|f| *f == Some(FinishReason::Length)), "request {i}: {:?}", t.finish);
        for text in &t.texts {
            assert!(text.starts_with(&alone[i]), "request {i}: {text:?} does not start with its own {:?}", alone[i]);
        }
    }
    // The graph's samplers are attached per sequence id, so their cache stays unified.
    let kv = if sampler.on_host() { kv.name() } else { "unified" };
    let lines = batch_lines(sampler.name(), kv, 3, 6);
    assert_eq!(lines.len(), 1, "one batch of the three requests' 6 sequences: {lines:?}");

    // Sampled, each request with its own seed: the same batch twice, the same tokens.
    let lem_of = |i: usize| lem(42 + i as u64, 16);
    let first = queued_together(&backend, three(lem_of));
    let second = queued_together(&backend, three(lem_of));
    let texts = |a: &[Answer]| a.iter().map(|x| x.texts.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&first), texts(&second), "a batch repeats with its seeds");
    assert_ne!(first[1].texts[0], first[1].texts[1], "candidates draw with their own seeds");
    assert_eq!(batch_lines(sampler.name(), kv, 3, 6).len(), 3);
}

#[test]
fn requests_queued_together_are_one_batch_and_answer_as_alone_on_the_cpu_chain() {
    answers_alone_and_together(SamplerMode::Cpu, KvLayout::Split);
}

#[test]
fn requests_queued_together_answer_as_alone_in_a_unified_cache() {
    answers_alone_and_together(SamplerMode::Cpu, KvLayout::Unified);
}

#[test]
fn requests_queued_together_are_one_batch_and_answer_as_alone_with_graph_samplers() {
    answers_alone_and_together(SamplerMode::Backend, KvLayout::Split);
}

#[test]
fn a_cancelled_request_leaves_the_others_of_its_batch_untouched() {
    let backend = engine(SamplerMode::CpuFull, KvLayout::Split);
    let prompt = "What should a new gardener plant first?";
    let alone = ask(&backend, req(prompt, greedy(12), 1), None);
    let drop = req("Tell me a short story about a lighthouse keeper.", Sampling { ignore_eos: true, ..lem(42, 32) }, 2);
    let got = queued_together(&backend, vec![(drop, Some(3)), (req(prompt, greedy(32), 2), None)]);
    let (cancelled, kept) = (&got[0], &got[1]);
    assert!(cancelled.failures.is_empty() && kept.failures.is_empty());
    assert!(cancelled.finish.iter().all(|f| *f == Some(FinishReason::Cancelled)), "{:?}", cancelled.finish);
    assert!(cancelled.metrics.iter().all(|m| m.generated_tokens < 32), "stopped early");
    assert!(kept.finish.iter().all(|f| *f == Some(FinishReason::Length)), "the other runs to its end");
    assert!(kept.metrics.iter().all(|m| m.generated_tokens == 32));
    assert!(kept.texts.iter().all(|t| t.starts_with(&alone.texts[0])), "{:?} / {:?}", kept.texts, alone.texts);
    let lines = batch_lines("cpu-full", "split", 2, 4);
    assert_eq!(lines.len(), 1, "the two were one batch");
    // The cancelled request held the lower ids: the other's streams moved down into them.
    assert_eq!(field(&lines[0], "moved"), "2", "{}", lines[0]);
}

/// With a stream per sequence, the live sequences are kept on consecutive ids (llama.cpp decodes
/// each run of them as its own graph): when the request with the lower ids finishes first, the
/// other's sequences move into its streams, copied whole, and go on as if nothing happened.
#[test]
fn sequences_moved_into_finished_streams_answer_as_before() {
    let backend = engine(SamplerMode::Cpu, KvLayout::Split);
    let long = "What should a new gardener plant first?";
    let alone = ask(&backend, req(long, greedy(12), 1), None);
    assert!(alone.failures.is_empty(), "{:?}", alone.failures);
    let short = req("Tell me a short story about a lighthouse keeper.", greedy(3), 3);
    let got = queued_together(&backend, vec![(short, None), (req(long, greedy(28), 3), None)]);
    for a in &got {
        assert!(a.failures.is_empty(), "{:?}", a.failures);
        assert!(a.finish.iter().all(|f| *f == Some(FinishReason::Length)), "{:?}", a.finish);
    }
    assert!(got[0].metrics.iter().all(|m| m.generated_tokens == 3));
    assert!(got[1].metrics.iter().all(|m| m.generated_tokens == 28));
    for text in &got[1].texts {
        assert!(text.starts_with(&alone.texts[0]), "{text:?} does not start with {:?}", alone.texts[0]);
    }
    let lines = batch_lines("cpu", "split", 2, 6);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(field(&lines[0], "moved"), "3", "{}", lines[0]);
}

/// With two lanes, a batch's sequences are dealt out to two contexts decoded on two threads; a
/// request may span both. Each request still gets one `Prefilled` before its tokens, its own
/// answers, its seeds and its cancellation across the lanes.
#[test]
fn lanes_deal_a_batch_out_and_each_request_answers_as_alone() {
    let backend = engine_in(SamplerMode::Cpu, KvLayout::Split, 2);
    let alone: Vec<String> =
        PROMPTS.iter().map(|p| ask(&backend, req(p, greedy(12), 1), None).texts[0].clone()).collect();
    let together = queued_together(&backend, three(|_| greedy(20)));
    for (i, t) in together.iter().enumerate() {
        assert!(t.failures.is_empty(), "{:?}", t.failures);
        assert_eq!((t.prefills, t.token_before_prefill), (1, false), "request {i}: one Prefilled, before its tokens");
        assert_eq!(t.texts, t.streamed, "request {i}");
        for text in &t.texts {
            assert!(text.starts_with(&alone[i]), "request {i}: {text:?} does not start with {:?}", alone[i]);
        }
    }
    // 6 sequences, 3 per lane: the second request (3 candidates) spans both.
    let lines: Vec<String> = generation_lines("cpu").into_iter().filter(|l| field(l, "lanes") == "2").collect();
    let mut lanes: Vec<(String, String, String)> =
        lines.iter().map(|l| (field(l, "lane"), field(l, "n"), field(l, "requests"))).collect();
    lanes.sort();
    assert_eq!(lanes, [("0", "3", "2"), ("1", "3", "2")].map(|(a, b, c)| (a.into(), b.into(), c.into())), "{lines:?}");

    let lem_of = |i: usize| lem(42 + i as u64, 16);
    let first = queued_together(&backend, three(lem_of));
    let second = queued_together(&backend, three(lem_of));
    let texts = |a: &[Answer]| a.iter().map(|x| x.texts.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&first), texts(&second), "a batch repeats with its seeds across lanes");

    // The request that spans both lanes, cancelled: every one of its candidates ends once, as
    // cancelled, in both lanes; the others run to their end.
    let mut reqs = three(|_| Sampling { ignore_eos: true, ..lem(7, 32) });
    reqs[1].1 = Some(4);
    let got = queued_together(&backend, reqs);
    assert!(got[1].finish.iter().all(|f| *f == Some(FinishReason::Cancelled)), "{:?}", got[1].finish);
    assert!(got[1].metrics.iter().all(|m| m.generated_tokens < 32));
    for i in [0, 2] {
        assert!(got[i].finish.iter().all(|f| *f == Some(FinishReason::Length)), "request {i}: {:?}", got[i].finish);
    }
}
