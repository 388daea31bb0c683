//! A session end to end on the default model: the first run starts it, a re-run resumes it and
//! generates nothing, `--fresh` starts another whose identical answers are not written twice,
//! the lesson export reproduces the lesson file, and `--no-store` behaves like LEM.
#![cfg(feature = "llama")]

mod common;

use common::OutputWithin;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PROBES: &str = r#"[
  {"id": "S1_TIDES", "prompt": "Explain how the moon causes tides."},
  {"id": "S2_BREAD", "prompt": "Describe how to bake a simple loaf of bread."}
]"#;

fn distill(root: &Path, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .current_dir(root)
        .env("LEM_TUI_LOG", root.join("lem-tui.log"))
        .env("LEM_TUI_STORE", root.join("store.sqlite3"))
        .args(["distill", "--headless", "--probes", "probes.json", "--output", "lesson.jsonl"])
        .args(["--runs", "2", "--max-tokens", "24", "--min-score", "1", "--threads", "2", "--seed", "5"])
        .args(extra)
        .output_within(Duration::from_secs(600));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{extra:?}: {err}");
    err
}

fn lesson(root: &Path) -> String {
    std::fs::read_to_string(root.join("lesson.jsonl")).unwrap_or_default()
}

#[test]
fn a_session_resumes_dedups_and_exports_its_lesson_file() {
    let _deadline = common::deadline(Duration::from_secs(900));
    common::model_path("smollm2/135m");
    let root = common::scratch_root(PROBES);
    let r = root.path();

    let first = distill(r, &[]);
    assert!(first.contains("session 1 started (run 1, ") && first.contains("2 probes to generate"), "{first}");
    let kept = first.matches("✓ KEPT").count();
    assert!(kept >= 1, "{first}");
    let text = lesson(r);
    assert_eq!(text.lines().count(), kept);

    let again = distill(r, &[]);
    assert!(again.contains("session 1 resumed (run 2, ") && again.contains("2/2 probes done"), "{again}");
    assert!(!again.contains(" run 1/2 →"), "nothing is generated again: {again}");
    assert_eq!(lesson(r), text);

    // The same seed gives the same answers: a new session on purpose, but no line twice.
    let fresh = distill(r, &["--fresh"]);
    assert!(fresh.contains("session 2 started"), "{fresh}");
    assert_eq!(fresh.matches("not written twice").count(), kept, "{fresh}");
    assert_eq!(lesson(r), text, "no duplicates");

    // The store's lesson export is the lesson file, byte for byte, and says which hash it has.
    let exported = r.join("export.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .args(["export", "lesson", "--out"])
        .arg(&exported)
        .arg("--store")
        .arg(r.join("store.sqlite3"))
        .output_within(Duration::from_secs(600));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&exported).expect("exported"), text);

    let c = rusqlite::Connection::open(r.join("store.sqlite3")).expect("store");
    let count = |sql: &str| -> i64 { c.query_row(sql, [], |row| row.get(0)).expect(sql) };
    assert_eq!(count("SELECT count(*) FROM runs"), 3);
    assert_eq!(count("SELECT count(*) FROM candidates"), 8, "every candidate of both sessions is recorded");
    assert_eq!(count("SELECT count(*) FROM lesson_writes"), i64::try_from(kept).expect("small"));
    assert_eq!(count("SELECT count(*) FROM decisions WHERE decider = 'auto:gate'"), 4);
    assert_eq!(count("SELECT count(DISTINCT model_sha256) FROM runs"), 1);
    assert_eq!(
        c.query_row("SELECT model_sha256 FROM runs LIMIT 1", [], |row| row.get::<_, String>(0)).expect("sha"),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "the weights' digest"
    );
    drop(c);

    // Without a store: LEM's behaviour, appending regardless.
    let plain = distill(r, &["--no-store"]);
    assert!(!plain.contains("session "), "{plain}");
    assert!(lesson(r).starts_with(&text) && lesson(r).lines().count() == 2 * kept, "LEM appends again");
}
