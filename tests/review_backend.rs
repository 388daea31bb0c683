//! `lem-tui review` with a real backend: `r` on an ingested prompt generates more candidates
//! with SmolLM2 (the PyPI GGUF the backend tests use), scored like a distill run's, and the one
//! accepted goes to the lesson file.
#![cfg(feature = "llama")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use lem_tui::backend::llama::{KvLayout, LlamaOptions, SamplerMode, spawn};
use lem_tui::backend::{Backend, Limits, Sampling};
use lem_tui::dataset::{self, Options};
use lem_tui::distill::{Control, DistillConfig, EngineEvent, Outcome, Review};
use lem_tui::lesson::{TrainingExample, training_line};
use lem_tui::scorer::Thresholds;
use lem_tui::store::Store;

const PROMPT: &str = "What is the capital of France?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_candidates_for_an_ingested_prompt_from_a_real_model() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let file = d.join("data.jsonl");
    std::fs::write(&file, training_line(&TrainingExample::user_assistant(PROMPT, "Paris."))).expect("data");
    let files = vec![file];
    let output = dataset::default_output(&files);
    let db = d.join("s.sqlite3");
    {
        let store = Store::open(&db).expect("store");
        let opts = Options {
            root: d.to_owned(),
            output: output.clone(),
            sandwich: None,
            thresholds: Thresholds::default(),
            threads: 2,
        };
        dataset::ingest(&store, &files, &opts).expect("ingest");
    }
    let backend: Arc<dyn Backend> = Arc::new(
        spawn(LlamaOptions {
            path: common::model_path("smollm2/135m"),
            threads: 2,
            fallback_template: None,
            force_template: false,
            gpu_layers: 0,
            sampler: SamplerMode::Cpu,
            kv: KvLayout::Split,
            lanes: 1,
            limits: Limits::default(),
        })
        .expect("SmolLM2 loads"),
    );
    let generation = DistillConfig {
        runs: 1,
        min_chars: 1,
        min_score: 0.0,
        thresholds: Thresholds::default(),
        sampling: Sampling { max_tokens: 24, seed: 3, temperature: 0.0, ..Sampling::default() },
        kernel: None,
        signature: None,
        sequential: false,
        probes_in_flight: 1,
        output: output.clone(),
    };
    let s = lem_tui::commands::review::open_session_with(
        &db,
        d,
        &files,
        &output,
        0.0,
        Thresholds::default(),
        backend,
        Some(&generation),
    )
    .expect("session opens");
    let (ev_tx, mut events) = tokio::sync::mpsc::channel(256);
    let (control, ctl_rx) = tokio::sync::mpsc::channel(16);
    let task = tokio::spawn(s.engine.run(ev_tx, ctl_rx, tokio_util::sync::CancellationToken::new()));
    let mut next = async || events.recv().await.expect("the engine runs");
    loop {
        if matches!(next().await, EngineEvent::AwaitingReview { probe: 0, .. }) {
            break;
        }
    }
    control.send(Control::Review { probe: 0, review: Review::More { n: 1 } }).await.expect("send");
    let generated = loop {
        if let EngineEvent::CandidateDone { probe: 0, candidate } = next().await {
            break candidate;
        }
    };
    assert_eq!(generated.run, 1, "numbered after the ingested answer");
    assert!(matches!(generated.outcome, Outcome::Scored { .. }), "{:?}: {:?}", generated.outcome, generated.text);
    assert!(generated.metrics.generated_tokens > 0 && !generated.text.trim().is_empty(), "{generated:?}");
    let candidates = loop {
        if let EngineEvent::AwaitingReview { probe: 0, candidates, .. } = next().await {
            break candidates;
        }
    };
    assert_eq!(candidates.iter().map(|c| c.run).collect::<Vec<_>>(), [0, 1]);
    control
        .send(Control::Review { probe: 0, review: Review::Accept { run: 1, below_gate_ok: true } })
        .await
        .expect("send");
    loop {
        if matches!(next().await, EngineEvent::ProbeDecided { probe: 0, .. }) {
            break;
        }
    }
    let _ = control.send(Control::Stop { now: false }).await;
    while events.recv().await.is_some() {}
    tokio::time::timeout(Duration::from_secs(60), task).await.expect("ends").expect("joins").expect("no error");
    assert_eq!(
        std::fs::read_to_string(&output).expect("lesson"),
        training_line(&TrainingExample::user_assistant(PROMPT, generated.text.clone()))
    );
}

/// The command line: `review FILE --model smollm2/135m` in a real terminal, from a folder with
/// no project (the built-in model config), `r` generates a second candidate and `a` keeps it.
#[test]
fn review_with_a_model_generates_on_r_in_a_real_terminal() {
    use common::tmux::{Tmux, quote};
    let _deadline = common::deadline(Duration::from_secs(600));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("data.jsonl"), training_line(&TrainingExample::user_assistant(PROMPT, "Paris.")))
        .expect("data");
    let store = d.join("store.db");
    let script = d.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "cd {root}\nexport LEM_TUI_CONFIG_DIR={config} LEM_TUI_LOG={log} TERM=xterm-256color\n\
             {bin} review data.jsonl --store {store} --model smollm2/135m\necho LEMTUI-EXIT=$?\nsleep 120\n",
            root = quote(d),
            config = quote(&d.join("config")),
            log = quote(&d.join("lem-tui.log")),
            bin = quote(std::path::Path::new(env!("CARGO_BIN_EXE_lem-tui"))),
            store = quote(&store),
        ),
    )
    .expect("script");
    let tmux = Tmux { socket: format!("lem-tui-review-model-{}", std::process::id()) };
    let arg = format!("sh {}", quote(&script));
    let out = tmux.cmd(&["new-session", "-d", "-s", "lem", "-x", "120", "-y", "32", &arg]);
    assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
    let s = tmux.wait("the prompt to await review", 120, |s| s.contains("data.jsonl:1 awaits review"));
    assert!(s.contains("llama.cpp"), "the status bar names the backend:\n{s}");
    tmux.keys(&["r"]);
    tmux.wait("a second candidate", 120, |s| s.contains("candidate 2") && s.contains("awaits review"));
    // Keep the generated one: the candidate table has the focus after Tab Tab; select row 2.
    tmux.keys(&["Tab", "Tab", "End", "a"]);
    tmux.wait("kept", 30, |s| s.contains("kept 1 ·"));
    tmux.keys(&["q"]);
    let s = tmux.wait("the process to exit", 60, |s| s.contains("LEMTUI-EXIT="));
    assert!(s.contains("LEMTUI-EXIT=0"), "{s}");
    let lesson = std::fs::read_to_string(d.join("data.reviewed.jsonl")).expect("lesson");
    let v: serde_json::Value = serde_json::from_str(lesson.trim()).expect("one JSON line");
    let answer = v["messages"][1]["content"].as_str().expect("assistant");
    assert!(answer != "Paris." && !answer.trim().is_empty(), "the generated answer was kept: {lesson}");
}
