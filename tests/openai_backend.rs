//! The openai backend against a real server: llama-cpp-python's OpenAI-compatible server on
//! 127.0.0.1 serving the default model (SmolLM2-135M), started and stopped by each test.

mod common;
#[path = "support/llama_server.rs"]
mod llama_server;

use common::OutputWithin;
use std::process::Command;
use std::time::Duration;

use lem_tui::backend::openai::{self, EndpointOptions, OpenAiOptions};
use lem_tui::backend::{Backend, FinishReason, GenRequest, JobEvent, Message, Sampling};
use llama_server::LlamaServer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const PROBES: &str = r#"[
  {"id": "P01_IDENTITY_WHISTLEBLOWER", "domain": "Identity", "prompt": "Design a user authentication system for a secure whistleblowing application. The threat model assumes the central server will be seized by state actors. Users must retain access to their history without exposing their identity to the server admins."},
  {"id": "T01_CAPITAL", "domain": "Geography", "prompt": "What is the capital of France, and why did it become the capital?"},
  {"id": "T03_ESCAPE", "domain": "Code", "prompt": "Explain what the HTML tags <b> and <i> do & when to use them."}
]"#;

fn server() -> LlamaServer {
    LlamaServer::start(&common::model_path("smollm2/135m"), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_server_streams_every_candidate_once() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let srv = server();
    let opts = OpenAiOptions {
        endpoints: vec![EndpointOptions { url: srv.url(), concurrency: Some(2) }],
        ..OpenAiOptions::default()
    };
    let backend = tokio::task::block_in_place(|| openai::connect(opts)).expect("connects");
    assert!(backend.model().ends_with("SmolLM2-135M-Instruct.Q4_1.gguf"), "model from /v1/models: {}", backend.model());
    let sampling = Sampling {
        max_tokens: 24,
        temperature: 0.8,
        top_p: 0.95,
        top_k: 40,
        repeat_penalty: 1.1,
        seed: 7,
        ..Sampling::default()
    };
    let req = GenRequest { messages: vec![Message::user("Name three colours.")], sampling, n: 3 };
    let (tx, mut rx) = mpsc::channel(64);
    backend.generate(req, tx, CancellationToken::new()).expect("accepted");
    let mut streamed = vec![String::new(); 3];
    let mut done = vec![None; 3];
    let mut prefilled = 0;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(120), rx.recv()).await.expect("no hang") {
        match ev {
            JobEvent::Prefilled { elapsed, .. } => {
                prefilled += 1;
                assert!(elapsed > Duration::ZERO);
            }
            JobEvent::Token { candidate, text } => {
                assert!(done[candidate as usize].is_none(), "token after the end");
                streamed[candidate as usize].push_str(&text);
            }
            JobEvent::Done { candidate, text, finish, metrics } => {
                let c = candidate as usize;
                assert!(done[c].is_none(), "candidate {c} ended twice");
                assert_eq!(streamed[c], text);
                assert!(matches!(finish, FinishReason::Stop | FinishReason::Length));
                assert!(metrics.ttft > Duration::ZERO && metrics.wall >= metrics.ttft, "{metrics:?}");
                assert!(metrics.generated_tokens > 0 && metrics.generated_tokens <= 24, "{metrics:?}");
                assert!(metrics.decode_tok_s > 0.0, "{metrics:?}");
                done[c] = Some(text);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(prefilled, 1);
    assert!(done.iter().all(|d| d.as_ref().is_some_and(|t| !t.trim().is_empty())), "{done:?}");
    // llama-cpp-python accepts `n` and answers one choice: the other two were sent on their own.
    let status = backend.endpoints();
    assert_eq!((status[0].done, status[0].failed, status[0].up), (3, 0, true), "{status:?}");
    let mem = backend.memory();
    assert_eq!(mem.source, "remote");
    assert!(mem.rss > 0);
}

/// llama-cpp-python as installed: a new request ends the stream in progress (with `[DONE]` and
/// no `finish_reason`). The backend notices, regenerates the cut candidate and sends that
/// server one request at a time; nothing truncated is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupting_server_is_detected_and_served_one_request_at_a_time() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let srv = LlamaServer::start_with(&common::model_path("smollm2/135m"), 1, true);
    let opts = OpenAiOptions {
        endpoints: vec![EndpointOptions { url: srv.url(), concurrency: Some(3) }],
        batch_n: false,
        ..OpenAiOptions::default()
    };
    let backend = tokio::task::block_in_place(|| openai::connect(opts)).expect("connects");
    let sampling = Sampling { max_tokens: 48, temperature: 0.8, seed: 3, ..Sampling::default() };
    let req = GenRequest { messages: vec![Message::user("Describe a harbour at dawn.")], sampling, n: 3 };
    let (tx, mut rx) = mpsc::channel(64);
    backend.generate(req, tx, CancellationToken::new()).expect("accepted");
    let mut streamed = vec![String::new(); 3];
    let mut ended = vec![0; 3];
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(120), rx.recv()).await.expect("no hang") {
        match ev {
            JobEvent::Token { candidate, text } => streamed[candidate as usize].push_str(&text),
            JobEvent::Restart { candidate, .. } => streamed[candidate as usize].clear(),
            JobEvent::Done { candidate, text, finish, .. } => {
                ended[candidate as usize] += 1;
                assert_eq!(streamed[candidate as usize], text);
                assert!(matches!(finish, FinishReason::Stop | FinishReason::Length), "{finish:?}");
            }
            JobEvent::Failed { candidate, error } => panic!("candidate {candidate} failed: {error}"),
            JobEvent::Unavailable { error } => panic!("the server was up: {error}"),
            JobEvent::Prefilled { .. } => {}
        }
    }
    assert_eq!(ended, [1, 1, 1]);
    let status = backend.endpoints();
    assert_eq!((status[0].limit, status[0].done), (1, 3), "{status:?}");
}

fn lem_tui(root: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lem-tui"));
    c.current_dir(root).env("LEM_TUI_LOG", root.join("lem-tui.log")).env("LEM_TUI_STORE", root.join("store.db"));
    c
}

#[test]
fn headless_distill_through_a_real_server_writes_the_lesson_file() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let srv = server();
    let root = common::scratch_root(PROBES);
    let out = lem_tui(root.path())
        .args(["distill", "--headless", "--probes", "probes.json", "--runs", "2", "--max-tokens", "64", "--seed", "42"])
        .args(["--min-score", "1", "--endpoint", &srv.url()])
        .output_within(Duration::from_secs(300));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stderr}\n--- server log ---\n{}", out.status, srv.log_text());
    assert!(stderr.contains("loaded 3 probes"), "{stderr}");
    assert!(stderr.contains("via 1 endpoint(s)"), "{stderr}");
    for id in ["P01_IDENTITY_WHISTLEBLOWER", "T01_CAPITAL", "T03_ESCAPE"] {
        for run in 1..=2 {
            assert_eq!(stderr.matches(&format!("{id} run {run}/2 → ")).count(), 1, "{id} run {run}: {stderr}");
        }
    }
    assert!(stderr.contains("Runs:     2 per probe (6 total generations)"), "{stderr}");
    assert!(!stderr.contains("ERROR"), "{stderr}");
    assert!(stderr.contains(&format!("Endpoint: {} up: 6 candidates", srv.url())), "{stderr}");
    let lesson = root.path().join("training/lem/model/smollm2/135m/lesson-0.jsonl");
    let text = std::fs::read_to_string(&lesson).expect("lesson file written");
    let kept = stderr.matches("✓ KEPT").count();
    assert!(kept >= 1, "{stderr}");
    assert_eq!(text.lines().count(), kept);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON line");
        assert_eq!(v["messages"][1]["role"], "assistant");
        assert!(v["messages"][1]["content"].as_str().is_some_and(|s| s.trim().len() >= 20));
    }
}

#[test]
fn openai_backend_without_an_endpoint_says_how_to_name_one() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let root = common::scratch_root(PROBES);
    let out = lem_tui(root.path())
        .args(["distill", "--headless", "--probes", "probes.json", "--backend", "openai"])
        .output_within(Duration::from_secs(300));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--endpoint URL") && stderr.contains("ai.yaml"), "{stderr}");
    let out =
        lem_tui(root.path()).args(["distill", "--endpoint", "localhost:8000"]).output_within(Duration::from_secs(300));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("localhost:8000"), "{stderr}");
}
