//! Bad input through the real binary: each is refused with a message naming the file (and the
//! line/column or field), a non-zero exit, no panic, and no lesson file created or changed.
//! None needs a model: config and probe errors stop a `--dry-run`, and store errors stop a real
//! run before the model loads.

mod common;

use common::OutputWithin;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PROBES: &str = r#"[{"id": "A", "prompt": "What is a tide?"}]"#;
/// smollm2/135m's default lesson file, relative to the root (the working directory).
const DEFAULT_OUT: &str = "training/lem/model/smollm2/135m/lesson-0.jsonl";

fn run(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .current_dir(root)
        .env("LEM_TUI_LOG", root.join("lem-tui.log"))
        .env("LEM_TUI_STORE", root.join("store.sqlite3"))
        .arg("distill")
        .args(args)
        .output_within(Duration::from_secs(120))
}

/// Runs, expects a clean refusal, returns stderr.
fn refused(root: &Path, args: &[&str]) -> String {
    let out = run(root, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} succeeded:\n{err}");
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    assert!(err.starts_with("error: ") || err.contains("\nerror: "), "{args:?}: {err}");
    assert!(!root.join(DEFAULT_OUT).exists(), "{args:?} created the lesson file");
    assert!(!root.join("training").exists(), "{args:?} created the training directory");
    err
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, bytes).expect("write");
}

#[test]
fn malformed_yaml_names_the_file_line_and_column() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let root = common::scratch_root(PROBES);
    write(root.path(), ".core/ai/ai.yaml", b"version: 1\nscorer:\n  min_score: [40\ngenerate: {}\n");
    let err = refused(root.path(), &["--dry-run", "--probes", "probes.json"]);
    assert!(err.contains("ai.yaml") && err.contains("line") && err.contains("column"), "{err}");
}

#[test]
fn wrong_types_name_the_file_field_and_line() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let root = common::scratch_root(PROBES);
    let model = ".core/ai/models/smollm2/135m.yaml";
    let text = std::fs::read_to_string(root.path().join(model)).expect("model yaml");
    write(root.path(), model, text.replace("max_tokens: 512", "max_tokens: lots").as_bytes());
    let err = refused(root.path(), &["--dry-run", "--probes", "probes.json"]);
    assert!(err.contains("135m.yaml") && err.contains("generate.max_tokens") && err.contains("line"), "{err}");
}

#[test]
fn unknown_set_and_missing_files_are_named() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let root = common::scratch_root(PROBES);
    let err = refused(root.path(), &["--dry-run", "--probes", "nosuch"]);
    assert!(err.contains("`nosuch`") && err.contains("probes.yaml") && err.contains("available: demo, seeds"), "{err}");
    let err = refused(root.path(), &["--dry-run", "--probes", "missing.json"]);
    assert!(err.contains("`missing.json`") && err.contains("nor a file"), "{err}");
    let yaml = "version: 1\nsets:\n  broken:\n    phase: 0\n    files:\n      - gone.json\n";
    write(root.path(), ".core/ai/probes.yaml", yaml.as_bytes());
    let err = refused(root.path(), &["--dry-run", "--probes", "broken"]);
    assert!(err.contains("probe set `broken`") && err.contains("gone.json") && err.contains("not found"), "{err}");
}

#[test]
fn probe_files_that_are_not_arrays_of_probes_are_refused() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let cases: [(&[u8], &[&str]); 4] = [
        (br#"{"id": "A", "prompt": "x"}"#, &["probes.json", "line 1 column"]),
        (b"[{\"id\": \"A\", \"prompt\": \"caf\xe9 \xff\"}]", &["probes.json", "line 1 column"]),
        (b"[]", &["probes.json", "no probes", "empty array"]),
        (br#"[{"id": 7, "prompt": "x"}]"#, &["probes.json", "id"]),
    ];
    for (bytes, needles) in cases {
        let root = common::scratch_root(PROBES);
        write(root.path(), "probes.json", bytes);
        let err = refused(root.path(), &["--dry-run", "--probes", "probes.json"]);
        for n in needles {
            assert!(err.contains(n), "{:?}: missing {n:?} in {err}", String::from_utf8_lossy(bytes));
        }
    }
    let root = common::scratch_root(PROBES);
    let yaml = "version: 1\nsets:\n  zen:\n    phase: 0\n    files: []\n";
    write(root.path(), ".core/ai/probes.yaml", yaml.as_bytes());
    let err = refused(root.path(), &["--dry-run", "--probes", "zen"]);
    assert!(err.contains("probe set `zen` has no probes") && err.contains("`files:` list is empty"), "{err}");
}

#[test]
fn negative_and_absurd_limits_name_the_flag_or_field() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let root = common::scratch_root(PROBES);
    let cases: [(&[&str], &[&str]); 11] = [
        (&["--runs=-1"], &["--runs", "negative"]),
        (&["--mem-limit=-4"], &["--mem-limit", "negative"]),
        (&["--min-score=-1"], &["--min-score", "negative"]),
        (&["--runs", "100000"], &["--runs", "distill.runs", "64"]),
        (&["--max-tokens", "100000000"], &["--max-tokens", "generate.max_tokens"]),
        (&["--mem-limit", "100000"], &["--mem-limit", "distill.memory_limit"]),
        (&["--cache-limit", "99999"], &["--cache-limit", "distill.cache_limit"]),
        (&["--threads", "0"], &["--threads", "1-1024"]),
        (&["--min-score", "1000"], &["--min-score", "scorer.min_score", "0-100"]),
        (&["--probes-in-flight", "4"], &["--probes-in-flight", "needs --headless"]),
        (&["--headless", "--sequential", "--probes-in-flight", "2"], &["--probes-in-flight", "--sequential"]),
    ];
    for (flags, needles) in cases {
        let mut args = vec!["--dry-run", "--probes", "probes.json"];
        args.extend_from_slice(flags);
        let err = refused(root.path(), &args);
        for n in needles {
            assert!(err.contains(n), "{flags:?}: missing {n:?} in {err}");
        }
    }
    let ai = std::fs::read_to_string(root.path().join(".core/ai/ai.yaml")).expect("ai.yaml");
    write(root.path(), ".core/ai/ai.yaml", ai.replace("top_p: 0.95", "top_p: 7").as_bytes());
    let err = refused(root.path(), &["--dry-run", "--probes", "probes.json"]);
    assert!(err.contains("ai.yaml") && err.contains("generate.top_p") && err.contains("got 7"), "{err}");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

#[test]
fn an_unwritable_output_is_found_before_anything_runs() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let root = common::scratch_root(PROBES);
    write(root.path(), "plain-file", b"x");
    let mut cases: Vec<(PathBuf, &str)> = vec![
        (root.path().join("plain-file/sub/lesson.jsonl"), "is not a directory"),
        (root.path().to_owned(), "is a directory"),
    ];
    if Path::new("/sys").is_dir() {
        // Read-only even for root, unlike a chmod-ed directory.
        cases.push((PathBuf::from("/sys/lem-tui-test.jsonl"), "directory /sys is not writable"));
        cases.push((PathBuf::from("/sys/lem-tui-test/sub/lesson.jsonl"), "cannot be created in /sys"));
    }
    if !is_root() {
        use std::os::unix::fs::PermissionsExt;
        let ro = root.path().join("ro");
        std::fs::create_dir(&ro).expect("mkdir");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        cases.push((ro.join("lesson.jsonl"), "is not writable"));
    }
    for (out, needle) in cases {
        let o = out.to_str().expect("utf-8");
        // Without --dry-run: the check runs before the model would load.
        let err = refused(root.path(), &["--headless", "--probes", "probes.json", "--output", o]);
        assert!(err.contains("cannot write the lesson file") && err.contains(o) && err.contains(needle), "{o}: {err}");
        assert!(!root.path().join("store.sqlite3").exists(), "{o}: nothing opened");
    }
    assert_eq!(std::fs::read(root.path().join("plain-file")).expect("still there"), b"x");
}

#[test]
fn a_damaged_or_newer_store_is_refused_with_a_way_out() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let root = common::scratch_root(PROBES);
    let out = root.path().join("lesson.jsonl");
    std::fs::write(&out, "{\"messages\":[]}\n").expect("existing lesson file");
    let args = ["--headless", "--probes", "probes.json", "--output", "lesson.jsonl", "--max-tokens", "8"];

    std::fs::write(root.path().join("store.sqlite3"), vec![0x42u8; 4096]).expect("garbage");
    let err = refused(root.path(), &args);
    assert!(
        err.contains("store.sqlite3") && err.contains("damaged") && err.contains("mv ") && err.contains("--no-store"),
        "{err}"
    );
    assert!(!err.contains("loading model"), "refused before the model loads: {err}");

    std::fs::remove_file(root.path().join("store.sqlite3")).expect("rm");
    let store = lem_tui::store::Store::open(&root.path().join("store.sqlite3")).expect("create");
    store.conn().pragma_update(None, "user_version", lem_tui::store::SCHEMA_VERSION + 1).expect("bump");
    drop(store);
    let err = refused(root.path(), &args);
    assert!(err.contains("newer lem-tui") && err.contains("Upgrade lem-tui") && err.contains("--store"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).expect("lesson"), "{\"messages\":[]}\n", "not truncated");
}

#[test]
fn a_second_process_on_the_same_session_is_refused() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let root = common::scratch_root(PROBES);
    let db = root.path().join("store.sqlite3");
    let _held = lem_tui::store::Opened::open(&db, &root.path().join("lesson.jsonl")).expect("first holder");
    let err = refused(root.path(), &["--headless", "--probes", "probes.json", "--output", "lesson.jsonl"]);
    assert!(err.contains("session already open") && err.contains(&std::process::id().to_string()), "{err}");
    assert!(err.contains("lesson.jsonl"), "{err}");
    assert!(!root.path().join("lesson.jsonl").exists());
}
