//! Two real servers, one killed mid-run: the run completes, no candidate is lost or counted
//! twice, and the dead endpoint is reported.

mod common;
#[path = "support/llama_server.rs"]
mod llama_server;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::OutputWithin;

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
    let _deadline = common::deadline(Duration::from_secs(600));
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
            JobEvent::Unavailable { error } => panic!("A was up all along: {error}"),
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
    headless_run_with_a_killed_endpoint(1);
}

/// The same with every probe generated at once (`--probes-in-flight 4`): the kill hits all of
/// them mid-stream, and the lines still come out once each, in probe order.
#[test]
fn probes_in_flight_survive_a_killed_endpoint_and_keep_probe_order() {
    headless_run_with_a_killed_endpoint(4);
}

fn headless_run_with_a_killed_endpoint(in_flight: u32) {
    let _deadline = common::deadline(Duration::from_secs(600));
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
        .args(["--probes-in-flight", &in_flight.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let _watched = common::watch_child("lem-tui distill", &child, Some(root.path().join("lem-tui.log")));
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
    let chapters: Vec<String> = std::fs::read_to_string(lesson)
        .expect("lesson")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a whole JSON line");
            let user = v["messages"][0]["content"].as_str().expect("user turn").to_owned();
            user.rsplit("Chapter ").next().expect("a chapter").to_owned()
        })
        .collect();
    assert_eq!(chapters.len(), kept, "{text}");
    let mut sorted = chapters.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(chapters, sorted, "each probe's line once, in probe order");
}

/// utime + stime of a process, in clock ticks (USER_HZ, 100 on Linux).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The only endpoint is killed mid-run (as a crashed server is): lem-tui waits for it with next
/// to no CPU, stops within two minutes with the default `--endpoint-wait` (exit 75, naming the
/// endpoint and its error), leaves only whole lines in the lesson file, and the same command
/// finishes the run once a server is back on that address.
#[test]
fn the_only_endpoint_dying_stops_the_run_and_the_same_command_resumes_it() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let model = common::model_path("smollm2/135m");
    let mut srv = LlamaServer::start(&model, 1);
    let (url, port) = (srv.url(), srv.port);
    let probes: Vec<serde_json::Value> = (1..=4)
        .map(|i| serde_json::json!({"id": format!("L{i:02}"), "domain": "Story", "prompt": format!("{LONG} Chapter {i}.")}))
        .collect();
    let root = common::scratch_root(&serde_json::to_string(&probes).expect("json"));
    let command = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_lem-tui"));
        c.current_dir(root.path())
            .env("LEM_TUI_LOG", root.path().join("lem-tui.log"))
            .env("LEM_TUI_STORE", root.path().join("store.db"))
            .args(["distill", "--headless", "--probes", "probes.json", "--runs", "2", "--max-tokens", "200"])
            .args(["--seed", "3", "--min-score", "1", "--concurrency", "1", "--endpoint", &url]);
        c
    };
    let mut child = command().stderr(Stdio::piped()).spawn().expect("runs");
    let _watched = common::watch_child("lem-tui distill", &child, Some(root.path().join("lem-tui.log")));
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
        }
    });
    let mut lines = Vec::new();
    // The first finished candidate: the next one is streaming now (one request at a time).
    while let Ok(line) = rx.recv() {
        let first = line.contains(" run 1/2 → ");
        lines.push(line);
        if first {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    srv.kill();
    let killed = Instant::now();
    // CPU over the wait, from a few seconds after the kill (the attempt that broke and its
    // retries) to the last reading before the process exits.
    std::thread::sleep(Duration::from_secs(3));
    let first = (cpu_ticks(pid).expect("lem-tui is waiting"), Instant::now());
    let mut last = first;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if let Some(t) = cpu_ticks(pid) {
            last = (t, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let stopped_after = killed.elapsed();
    reader.join().expect("reader");
    lines.extend(rx.try_iter());
    let text = lines.join("\n");
    eprintln!("the stopped run ended with:\n{}", lines[lines.len().saturating_sub(4)..].join("\n"));
    assert_eq!(status.code(), Some(75), "exit 75 when no endpoint comes back:\n{text}");
    assert!(stopped_after < Duration::from_secs(120), "stopped {stopped_after:?} after the kill:\n{text}");
    assert!(text.contains("no endpoint came back within 90s") && text.contains(&url), "{text}");
    assert!(
        ["stream broke", "cannot connect", "stream ended"].iter().any(|e| text.contains(&format!("{url}: {e}"))),
        "the endpoint's last error is named:\n{text}"
    );
    let (ticks, wall) = (last.0 - first.0, last.1.duration_since(first.1));
    assert!(wall > Duration::from_secs(60), "measured over most of the wait: {wall:?}");
    #[allow(clippy::cast_precision_loss)]
    let share = ticks as f64 / 100.0 / wall.as_secs_f64();
    eprintln!("lem-tui waiting for an endpoint: {ticks} ticks over {wall:?} = {:.1} % of a core", share * 100.0);
    assert!(share < 0.2, "lem-tui used {:.0} % of a core while waiting:\n{text}", share * 100.0);
    let lesson = root.path().join("training/lem/model/smollm2/135m/lesson-0.jsonl");
    let before = std::fs::read_to_string(&lesson).unwrap_or_default();
    assert!(before.is_empty() || before.ends_with('\n'), "whole lines only: {before:?}");
    for line in before.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("each line is whole JSON");
    }
    let kept_before = text.matches("✓ KEPT").count();
    assert_eq!(before.lines().count(), kept_before, "{text}");

    // A server is back at the same address: the same command resumes and finishes the run.
    let _srv = LlamaServer::start_on(&model, 1, false, Some(port));
    let out = command().output_within(Duration::from_secs(400));
    let again = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{again}", out.status);
    assert!(again.contains("resumed"), "{again}");
    let decided_before = text.matches("✓ KEPT").count() + text.matches("✗ SKIP").count();
    let decided_now = again.matches("✓ KEPT").count() + again.matches("✗ SKIP").count();
    assert_eq!(decided_before + decided_now, 4, "every probe decided once:\n{text}\n---\n{again}");
    let after = std::fs::read_to_string(&lesson).expect("lesson");
    assert!(after.starts_with(&before), "lines already written stay as they were");
    assert_eq!(after.lines().count(), kept_before + again.matches("✓ KEPT").count());
}
