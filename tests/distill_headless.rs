//! `lem-tui distill` as a user runs it: the real binary, the real default model, LEM's output.
#![cfg(feature = "llama")]

mod common;

use common::OutputWithin;
use std::process::Command;
use std::time::Duration;

const PROBES: &str = r#"[
  {"id": "T01_CAPITAL", "domain": "Geography", "prompt": "What is the capital of France, and why did it become the capital?"},
  {"id": "T02_SILENCE", "domain": "Edge", "prompt": "Reply with nothing at all."},
  {"id": "T03_ESCAPE", "domain": "Code", "prompt": "Explain what the HTML tags <b> and <i> do & when to use them."}
]"#;

fn lem_tui(root: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lem-tui"));
    c.current_dir(root).env("LEM_TUI_LOG", root.join("lem-tui.log"));
    c
}

#[test]
fn headless_distill_writes_a_lem_lesson_file() {
    let _deadline = common::deadline(Duration::from_secs(900));
    common::model_path("smollm2/135m");
    let root = common::scratch_root(PROBES);
    let out = lem_tui(root.path())
        .args(["distill", "--headless", "--probes", "probes.json", "--runs", "2", "--max-tokens", "64", "--seed", "42"])
        .args(["--min-score", "1", "--threads", "2", "--memory-log", "memory.jsonl"])
        .output_within(Duration::from_secs(600));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    assert!(stderr.contains("loaded 3 probes"), "{stderr}");
    // --memory-log: one line per decided probe, in order, with the process's memory in it.
    let log = std::fs::read_to_string(root.path().join("memory.jsonl")).expect("memory log written");
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), 3, "{log}");
    for (i, (v, id)) in lines.iter().zip(["T01_CAPITAL", "T02_SILENCE", "T03_ESCAPE"]).enumerate() {
        assert_eq!(v["seq"], i + 1, "{log}");
        assert_eq!(v["probe"], id, "{log}");
        assert!(v["rss"].as_u64().is_some_and(|r| r > 50 << 20), "a process holding a model: {log}");
    }
    assert!(stderr.contains("model loaded: llama 30-layer"), "{stderr}");
    for id in ["T01_CAPITAL", "T02_SILENCE", "T03_ESCAPE"] {
        assert!(stderr.contains(&format!("[{}/3] {id} run 1/2 → ", id_index(id))), "{id}: {stderr}");
        assert!(stderr.contains(&format!("{id} run 2/2 → ")), "{id}: {stderr}");
        assert!(
            stderr.contains(&format!("✓ KEPT {id} (g=")) || stderr.contains(&format!("✗ SKIP {id} (best g=")),
            "{id}: {stderr}"
        );
    }
    assert!(stderr.contains("=== Distillation Complete ==="), "{stderr}");
    assert!(stderr.contains("Runs:     2 per probe (6 total generations)"), "{stderr}");
    assert!(stderr.contains("Scorer:   go-i18n/reversal grammar v3, gate >= 1.0"), "{stderr}");

    // Default output routing: <training>/<lessons[phase]> from smollm2/135m.yaml, created with
    // its parent directories.
    let lesson = root.path().join("training/lem/model/smollm2/135m/lesson-0.jsonl");
    let text = std::fs::read_to_string(&lesson).expect("lesson file written");
    let kept = stderr.matches("✓ KEPT").count();
    assert!(kept >= 1, "the gate at 1.0 keeps any real answer: {stderr}");
    assert_eq!(text.lines().count(), kept);
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        let msgs = v["messages"].as_array().expect("messages");
        assert_eq!(v.as_object().map(serde_json::Map::len), Some(1), "only messages: {line}");
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0]["role"], "user");
        assert_eq!(msgs[1]["role"], "assistant");
        assert!(msgs[1]["content"].as_str().is_some_and(|s| s.trim().len() >= 20));
        // Go's encoder escapes HTML characters; a raw '<' would mean a non-LEM writer.
        assert!(!line.contains('<') && !line.contains('>') && !line.contains('&'), "{line}");
    }
    if text.contains("T03") || text.contains("HTML tags") {
        assert!(text.contains(r"\u003cb\u003e"), "{text}");
    }

    // A second run appends, as LEM does (nothing truncated).
    let again = lem_tui(root.path())
        .args(["distill", "--headless", "--probes", "probes.json", "--runs", "1", "--max-tokens", "48"])
        .args(["--min-score", "1", "--seed", "1"])
        .output_within(Duration::from_secs(600));
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let after = std::fs::read_to_string(&lesson).expect("still there");
    assert!(after.starts_with(&text), "earlier lines untouched");
}

fn id_index(id: &str) -> usize {
    match id {
        "T01_CAPITAL" => 1,
        "T02_SILENCE" => 2,
        _ => 3,
    }
}

#[test]
fn dry_run_prints_lems_plan_and_loads_no_model() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let root = common::scratch_root(PROBES);
    let out = lem_tui(root.path())
        .args(["distill", "--dry-run", "--probes", "probes.json", "--model", "gemma3/270m", "--mem-limit", "4"])
        .output_within(Duration::from_secs(600));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = "\
Model:    gemma3-270m ()
Backend:  llama.cpp
Probes:   3
Runs:     3 per probe (9 total generations)
Gate:     grammar v3 composite >= 40.0
Generate: temp=0.75 max_tokens=512 top_p=0.95
Memory:   cache=8GB limit=4GB
Output:   training/lem/model/gemma3/270m/lesson-0.jsonl

  T01_CAPITAL: What is the capital of France, and why did it become the capital?
  T02_SILENCE: Reply with nothing at all.
  T03_ESCAPE: Explain what the HTML tags <b> and <i> do & when to use them.
";
    assert_eq!(stdout, expected);
    assert!(!root.path().join("training").exists(), "a dry run writes nothing");
}

#[test]
fn lem_style_single_dash_flags_work() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let root = common::scratch_root(PROBES);
    let out = lem_tui(root.path())
        .args(["distill", "-dry-run", "-probes", "probes.json", "-runs", "5", "-output", "x.jsonl"])
        .output_within(Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Runs:     5 per probe (15 total generations)"), "{stdout}");
    assert!(stdout.contains("Output:   x.jsonl"), "{stdout}");
}

#[test]
fn bad_probe_file_names_file_and_index() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let root = common::scratch_root(r#"[{"id": "A", "prompt": "fine"}, {"id": "B", "prompt": "  "}]"#);
    let out = lem_tui(root.path())
        .args(["distill", "--dry-run", "--probes", "probes.json"])
        .output_within(Duration::from_secs(600));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("probes.json") && stderr.contains('1'), "{stderr}");
}

/// A new user outside any project: the built-in configuration and demo probes are used (and
/// said to be), `init` writes them out, and a run with `--root` reads the written copy.
#[test]
fn works_from_an_empty_folder_on_the_built_in_defaults() {
    let _deadline = common::deadline(Duration::from_secs(900));
    common::model_path("smollm2/135m");
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |store: &str, args: &[&str]| {
        let out = lem_tui(dir.path())
            .env("LEM_TUI_STORE", dir.path().join(store))
            .args(args)
            .output_within(Duration::from_secs(600));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };

    let (code, stdout, stderr) = run("a.db", &["distill", "--dry-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("Model:    smollm2-135m-instruct ()\nBackend:  llama.cpp\nProbes:   20\n"), "{stdout}");
    assert!(stdout.contains("Runs:     3 per probe") && stdout.contains("  P01_IDENTITY_WHISTLEBLOWER: "), "{stdout}");
    assert!(stderr.contains("no .core/ai/ in") && stderr.contains("built-in configuration"), "said so: {stderr}");
    assert!(stderr.contains("lem-tui init"), "{stderr}");

    let (code, _, stderr) =
        run("b.db", &["distill", "--headless", "--runs", "1", "--max-tokens", "16", "--seed", "3", "--min-score", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("loaded 20 probes") && stderr.contains("built-in configuration"), "{stderr}");
    assert_eq!(stderr.matches(" run 1/1 → ").count(), 20, "{stderr}");
    let lesson = dir.path().join("training/lem/model/smollm2/135m/lesson-0.jsonl");
    let kept = stderr.matches("✓ KEPT").count();
    assert_eq!(std::fs::read_to_string(&lesson).unwrap_or_default().lines().count(), kept, "{stderr}");

    let (code, _, stderr) = run("c.db", &["init", "proj"]);
    assert_eq!(code, Some(0), "{stderr}");
    let ai = dir.path().join("proj/.core/ai/ai.yaml");
    assert!(ai.is_file() && dir.path().join("proj/assets/probes/P01-P20.json").is_file(), "{stderr}");
    let (code, _, stderr) = run("c.db", &["init", "proj"]);
    assert_eq!(code, Some(1), "a second init overwrites nothing: {stderr}");
    assert!(stderr.contains("already exists") && stderr.contains("nothing was written"), "{stderr}");
    // The written copy is the one read: an edit shows in the plan, and nothing says "built-in".
    let text = std::fs::read_to_string(&ai).expect("ai.yaml");
    std::fs::write(&ai, text.replace("runs: 3", "runs: 2")).expect("edit");
    let (code, stdout, stderr) = run("c.db", &["distill", "--dry-run", "--root", "proj"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("Runs:     2 per probe (40 total generations)"), "{stdout}");
    assert!(!stderr.contains("built-in"), "{stderr}");
    let args = ["distill", "--headless", "--root", "proj", "--runs", "1", "--max-tokens", "8", "--seed", "3"];
    let (code, _, stderr) = run("c.db", &args);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr.matches(" run 1/1 → ").count(), 20, "{stderr}");
    assert!(!stderr.contains("built-in"), "{stderr}");

    // A missing file is named once, with its cause once (no "…(os error 2): …(os error 2)").
    std::fs::remove_file(&ai).expect("rm");
    let (code, _, stderr) = run("c.db", &["distill", "--dry-run", "--root", "proj"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("ai.yaml") && stderr.contains("lem-tui init"), "what to do: {stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "the cause once: {stderr}");

    let (_, help, _) = run("c.db", &["--help"]);
    assert!(help.contains("init") && help.contains("Write the built-in configuration"), "{help}");
}
