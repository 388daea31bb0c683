//! `lem-tui export`: each format's records, the manifest and its hash, the seeded split,
//! filters, and atomic replacement. The store is built through the library (store_fixture).

mod common;
mod store_fixture;

use common::OutputWithin;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use lem_tui::lesson::{TrainingExample, training_line};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn export(store: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .arg("export")
        .args(args)
        .arg("--store")
        .arg(store)
        .env("LEM_TUI_LOG", store.with_extension("log"))
        .output_within(Duration::from_secs(120));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn records(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("export written");
    text.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect()
}

fn manifest(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("manifest")).expect("manifest JSON")
}

#[test]
fn lesson_and_sft_exports_hold_kept_responses_once() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store_fixture::build(dir.path());
    let out = dir.path().join("lesson.jsonl");
    let run = export(&db, &["lesson", "--out", out.to_str().expect("utf-8")]);
    let text = std::fs::read_to_string(&out).expect("written");
    let expected = [
        ("KERNEL\n\nExplain tides.", "Tides come from the moon's pull."),
        ("KERNEL\n\nSay hi.", "Hello there, friend!"),
        ("KERNEL\n\nName a prime.", "Two is the only even prime."),
    ];
    let want: String = expected.iter().map(|(u, a)| training_line(&TrainingExample::user_assistant(*u, *a))).collect();
    assert_eq!(text, want, "LEM's bytes, sandwiched, the repeated kept response once");
    let m = manifest(&dir.path().join("lesson.jsonl.manifest.json"));
    assert_eq!(m["sha256"], sha(text.as_bytes()));
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), sha(text.as_bytes()), "stdout is the provenance hash");
    assert_eq!(m["counts"]["records"], 3);
    assert_eq!(m["counts"]["duplicates"], 1);
    assert_eq!(m["counts"]["sessions"], 2);
    assert_eq!(m["format"], "lesson");
    assert_eq!(m["files"][0]["sha256"], sha(text.as_bytes()));

    let sft = dir.path().join("sft.jsonl");
    export(&db, &["sft", "--out", sft.to_str().expect("utf-8")]);
    let recs = records(&sft);
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["messages"][0]["content"], "Explain tides.", "SFT is plain by default");
    assert_eq!(recs[0]["messages"][1]["role"], "assistant");
    export(&db, &["sft", "--sandwich", "--out", sft.to_str().expect("utf-8")]);
    assert_eq!(records(&sft)[0]["messages"][0]["content"], "KERNEL\n\nExplain tides.");
}

#[test]
fn dpo_pairs_prefer_rejected_candidates_then_the_lowest_scored() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store_fixture::build(dir.path());
    let out = dir.path().join("dpo.jsonl");
    export(&db, &["dpo", "--out", out.to_str().expect("utf-8")]);
    let got: Vec<(String, String, String)> = records(&out)
        .iter()
        .map(|r| {
            assert_eq!(r.as_object().map(serde_json::Map::len), Some(3), "{r}");
            let s = |k: &str| r[k].as_str().expect("string column").to_owned();
            (s("prompt"), s("chosen"), s("rejected"))
        })
        .collect();
    let t = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        got,
        [
            t("Explain tides.", "Tides come from the moon's pull.", "Tides."),
            t("Explain tides.", "Tides come from the moon's pull.", "Moon."),
            t("Name a prime.", "Two is the only even prime.", "Four."),
        ]
    );
    let m = manifest(&dir.path().join("dpo.jsonl.manifest.json"));
    assert_eq!(m["counts"]["unpaired"], 1, "Say hi. has one candidate only");
}

#[test]
fn kto_labels_kept_true_and_rejected_or_gated_false() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store_fixture::build(dir.path());
    let out = dir.path().join("kto.jsonl");
    export(&db, &["kto", "--out", out.to_str().expect("utf-8")]);
    let recs = records(&out);
    let label = |text: &str| recs.iter().find(|r| r["completion"] == text).map(|r| r["label"].clone());
    assert_eq!(recs.len(), 6, "{recs:?}");
    assert_eq!(label("Tides come from the moon's pull."), Some(Value::Bool(true)));
    assert_eq!(label("Two is the only even prime."), Some(Value::Bool(true)));
    assert_eq!(label("Seven is prime."), Some(Value::Bool(false)), "rejected by the operator");
    assert_eq!(label("Rain is water."), Some(Value::Bool(false)), "below the gate");
    assert_eq!(label("One, two, three."), None, "undone, then skipped by the operator: no verdict");
    assert_eq!(label("Tides."), None, "a runner-up of a kept probe is not a negative");
}

#[test]
fn a_seeded_split_is_reproducible_and_hashes_like_the_whole() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store_fixture::build(dir.path());
    let whole = dir.path().join("kto.jsonl");
    export(&db, &["kto", "--out", whole.to_str().expect("utf-8")]);
    let split = dir.path().join("split");
    let s = split.to_str().expect("utf-8");
    export(&db, &["kto", "--out", s, "--valid", "0.34", "--split-seed", "5"]);
    let m = manifest(&split.join("manifest.json"));
    assert_eq!((m["counts"]["train"].as_u64(), m["counts"]["valid"].as_u64()), (Some(4), Some(2)));
    assert_eq!(m["sha256"], manifest(&dir.path().join("kto.jsonl.manifest.json"))["sha256"]);
    let before = (
        std::fs::read(split.join("train.jsonl")).expect("train"),
        std::fs::read(split.join("valid.jsonl")).expect("valid"),
    );
    export(&db, &["kto", "--out", s, "--valid", "0.34", "--split-seed", "5"]);
    assert_eq!(before.0, std::fs::read(split.join("train.jsonl")).expect("train"));
    assert_eq!(before.1, std::fs::read(split.join("valid.jsonl")).expect("valid"));
    let names: Vec<String> = std::fs::read_dir(&split)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "no temp files left: {names:?}");
}

#[test]
fn filters_narrow_the_export_and_are_recorded() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = store_fixture::build(dir.path());
    let out = dir.path().join("f.jsonl");
    let o = out.to_str().expect("utf-8");
    export(&db, &["sft", "--out", o, "--session", "2"]);
    assert_eq!(records(&out).len(), 2);
    export(&db, &["sft", "--out", o, "--min-score", "55"]);
    let recs = records(&out);
    assert_eq!(recs.len(), 2, "Say hi. (50) is below 55: {recs:?}");
    let m = manifest(&dir.path().join("f.jsonl.manifest.json"));
    assert_eq!(m["filter"]["min_score"], 55.0);
    let c = rusqlite::Connection::open(&db).expect("db");
    let n: i64 = c.query_row("SELECT count(*) FROM exports", [], |r| r.get(0)).expect("count");
    assert_eq!(n, 2, "every export is recorded in the store");

    let fail = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .args(["export", "sft", "--out", o, "--model", "gemma3/27b", "--store"])
        .arg(&db)
        .output_within(Duration::from_secs(120));
    assert!(!fail.status.success());
    assert!(String::from_utf8_lossy(&fail.stderr).contains("no session"), "{}", String::from_utf8_lossy(&fail.stderr));
    assert_eq!(records(&out).len(), 2, "a failed export leaves the previous file alone");
}

#[test]
fn a_missing_store_is_a_clear_error() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .args(["export", "lesson", "--out"])
        .arg(dir.path().join("x.jsonl"))
        .arg("--store")
        .arg(dir.path().join("none.sqlite3"))
        .output_within(Duration::from_secs(120));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no session store at") && err.contains("none.sqlite3"), "{err}");
    assert!(!dir.path().join("x.jsonl").exists() && !dir.path().join("none.sqlite3").exists());
}
