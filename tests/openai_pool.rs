//! Two real servers, one killed mid-run: the run completes, no candidate is lost or counted
//! twice, and the dead endpoint is reported.

mod common;
#[path = "support/llama_server.rs"]
mod llama_server;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use lem_tui::backend::openai::{self, EndpointOptions, OpenAiOptions};
use lem_tui::backend::{Backend, GenRequest, JobEvent, Message, Sampling};
use llama_server::LlamaServer;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn two_servers() -> (LlamaServer, LlamaServer) {
    let model = common::model_path("smollm2/135m");
    (LlamaServer::start(&model, 1), LlamaServer::start(&model, 1))
}

const LONG: &str = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_server_mid_stream_loses_and_duplicates_nothing() {
    let (a, mut b) = two_servers();
    let opts = OpenAiOptions {
        endpoints: [&a, &b].iter().map(|s| EndpointOptions { url: s.url(), concurrency: Some(2) }).collect(),
        batch_n: false,
        ..OpenAiOptions::default()
    };
    let backend = tokio::task::block_in_place(|| openai::connect(opts)).expect("connects");
    let n = 6;
    let sampling = Sampling { max_tokens: 96, temperature: 0.9, seed: 11, ..Sampling::default() };
    let req = GenRequest { messages: vec![Message::user(LONG)], sampling, n };
    let (tx, mut rx) = mpsc::channel(256);
    backend.generate(req, tx, CancellationToken::new()).expect("accepted");
    let mut streamed = vec![String::new(); n as usize];
    let mut ended = vec![0u32; n as usize];
    let mut restarts = 0;
    let mut b_done_at_kill = None;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(300), rx.recv()).await.expect("no hang") {
        if b_done_at_kill.is_none() {
            let s = backend.endpoints();
            // B is streaming a candidate that has produced a few tokens: kill it now.
            if s[1].in_flight > 0 && s[1].tokens >= 5 {
                b_done_at_kill = Some(s[1].done);
                b.kill();
            }
        }
        match ev {
            JobEvent::Token { candidate, text } => {
                assert_eq!(ended[candidate as usize], 0, "token after the end");
                streamed[candidate as usize].push_str(&text);
            }
            JobEvent::Restart { candidate, reason } => {
                restarts += 1;
                assert!(reason.contains(&b.url()), "the dead endpoint is named: {reason}");
                streamed[candidate as usize].clear();
            }
            JobEvent::Done { candidate, text, .. } => {
                ended[candidate as usize] += 1;
                assert_eq!(streamed[candidate as usize], text, "what was shown is what was kept");
                assert!(!text.trim().is_empty());
            }
            JobEvent::Failed { candidate, error } => panic!("candidate {candidate} lost: {error}"),
            JobEvent::Prefilled { .. } => {}
        }
    }
    assert_eq!(ended, vec![1; n as usize], "exactly one Done per candidate");
    let b_done_at_kill = b_done_at_kill.expect("B was killed mid-run");
    let s = backend.endpoints();
    assert!(!s[1].up && s[1].last_error.is_some(), "the dead endpoint is reported: {s:?}");
    assert!(s[0].up);
    assert_eq!(s[0].done + s[1].done, u64::from(n), "{s:?}");
    // The candidate B was streaming is regenerated on A, unless it finished in the instant
    // between the check and the kill.
    assert!(restarts >= 1 || s[1].done > b_done_at_kill, "restarts {restarts}, {s:?}");
}

#[test]
fn headless_run_survives_a_killed_endpoint_and_reports_it() {
    let (a, mut b) = two_servers();
    let probes: Vec<serde_json::Value> = (1..=4)
        .map(|i| serde_json::json!({"id": format!("L{i:02}"), "domain": "Story", "prompt": format!("{LONG} Chapter {i}.")}))
        .collect();
    let root = common::scratch_root(&serde_json::to_string(&probes).expect("json"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .current_dir(root.path())
        .env("LEM_TUI_LOG", root.path().join("lem-tui.log"))
        .env("LEM_TUI_STORE", root.path().join("store.db"))
        .args(["distill", "--headless", "--probes", "probes.json", "--runs", "3", "--max-tokens", "96", "--seed", "3"])
        .args(["--min-score", "1", "--concurrency", "2", "--endpoint", &a.url(), "--endpoint", &b.url()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("utf-8");
        // The first finished candidate: the run is in full swing on both servers.
        if line.contains(" run ") && line.contains(" → ") && lines.iter().all(|l: &String| !l.contains(" → ")) {
            b.kill();
        }
        lines.push(line);
    }
    let status = child.wait().expect("exits");
    let text = lines.join("\n");
    assert!(status.success(), "{text}");
    for i in 1..=4 {
        for run in 1..=3 {
            assert_eq!(text.matches(&format!("L{i:02} run {run}/3 → ")).count(), 1, "L{i:02} run {run}:\n{text}");
        }
    }
    assert!(!text.contains("ERROR"), "no candidate lost:\n{text}");
    assert!(text.contains("Runs:     3 per probe (12 total generations)"), "{text}");
    let dead = format!("Endpoint: {} down:", b.url());
    assert!(text.contains(&dead) && text.contains("failed attempts — "), "the dead endpoint is reported:\n{text}");
    assert!(text.contains(&format!("Endpoint: {} up:", a.url())), "{text}");
    let lesson = root.path().join("training/lem/model/smollm2/135m/lesson-0.jsonl");
    let kept = text.matches("✓ KEPT").count();
    assert_eq!(std::fs::read_to_string(lesson).expect("lesson").lines().count(), kept);
}
