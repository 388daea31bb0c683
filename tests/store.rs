//! The session store through its library API: write-through, resume plans, reconciling the
//! lesson file, dedup, undo, refusals (lock, damaged or newer store) and the model hash cache.

use std::path::{Path, PathBuf};

use lem_tui::backend::{Metrics, Sampling};
use lem_tui::distill::{Candidate, Decider, Decision, Journal, Outcome, ProbeStart};
use lem_tui::lesson::{TrainingExample, training_line};
use lem_tui::probes::Probe;
use lem_tui::scorer::{DeltaScore, GrammarScore};
use lem_tui::store::{ModelIdentity, Opened, ResumeReport, SessionJournal, SessionSpec, Store, StoreError};

pub fn spec(dir: &Path, fresh: bool) -> SessionSpec {
    SessionSpec {
        root: dir.to_owned(),
        model: "smollm2/135m".into(),
        probes: "probes.json".into(),
        output: dir.join("out/lesson.jsonl"),
        fresh,
        kernel: None,
        signature: None,
        mode: "auto".into(),
        sampling: Sampling::default(),
        config: serde_json::json!({}),
    }
}

pub fn probe(id: &str, prompt: &str) -> Probe {
    Probe { id: id.into(), domain: Some("Test".into()), prompt: prompt.into(), source: "probes.json".into() }
}

pub fn cand(run: u32, text: &str, composite: f64) -> Candidate {
    Candidate {
        run,
        text: text.into(),
        outcome: Outcome::Scored {
            grammar: GrammarScore { composite, verb_diversity: 3, ..GrammarScore::default() },
            delta: DeltaScore { uplift: 1.5, echo: 0.25, ..DeltaScore::default() },
        },
        metrics: Metrics { generated_tokens: 7, ..Metrics::default() },
        seed: u64::MAX - u64::from(run),
        temperature: 0.7,
        derived_from: None,
    }
}

fn db(dir: &Path) -> PathBuf {
    dir.join("store.sqlite3")
}

fn model() -> ModelIdentity {
    ModelIdentity { name: "m".into(), path: "m.gguf".into(), backend: "llama.cpp".into(), ..ModelIdentity::default() }
}

fn begin(dir: &Path, s: &SessionSpec, probes: &[Probe]) -> (SessionJournal, Vec<ProbeStart>, ResumeReport) {
    Opened::open(&db(dir), &s.output).expect("opens").begin(s, probes, &model()).expect("begins")
}

fn lesson(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("out/lesson.jsonl")).unwrap_or_default()
}

fn line(prompt: &str, response: &str) -> String {
    training_line(&TrainingExample::user_assistant(prompt, response))
}

const KEEP: Decision = Decision::Kept { run: 1, by: Decider::Gate };

#[test]
fn resume_plan_is_done_review_or_fresh() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec(dir.path(), false);
    let probes = [probe("A", "alpha?"), probe("B", "beta?"), probe("C", "gamma?")];
    let (mut j, starts, report) = begin(dir.path(), &s, &probes);
    assert!(!report.resumed && report.to_generate == 3, "{report:?}");
    assert!(starts.iter().all(|s| *s == ProbeStart::Fresh));
    let a = [cand(0, "first answer", 30.0), cand(1, "second answer", 50.0)];
    for c in &a {
        j.candidate(0, &probes[0], c).expect("candidate");
    }
    let id = j.decision(0, &probes[0], &KEEP, &a).expect("decision");
    j.written(id, 0..10).expect("written");
    let cancelled = Candidate { outcome: Outcome::Cancelled, ..cand(1, "half", 0.0) };
    j.candidate(1, &probes[1], &cand(0, "b answer", 20.0)).expect("candidate");
    j.candidate(1, &probes[1], &cancelled).expect("candidate");
    drop(j);

    let (_j, starts, report) = begin(dir.path(), &s, &probes);
    assert!(report.resumed);
    assert_eq!((report.kept, report.to_finish, report.to_generate), (1, 1, 1), "{report:?}");
    assert_eq!(starts[0], ProbeStart::Done(KEEP));
    assert_eq!(starts[1], ProbeStart::Review(vec![cand(0, "b answer", 20.0)]), "cancelled candidates are not reviewed");
    assert_eq!(starts[2], ProbeStart::Fresh);
    assert!(report.to_string().contains("1/3 probes done (1 kept, 0 skipped, 0 rejected)"), "{report}");
}

#[test]
fn every_score_field_is_stored_and_identical_candidates_are_flagged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec(dir.path(), false);
    let p = [probe("A", "alpha?")];
    let (mut j, _, _) = begin(dir.path(), &s, &p);
    j.candidate(0, &p[0], &cand(0, "same", 42.0)).expect("candidate");
    j.candidate(0, &p[0], &cand(1, "same", 42.0)).expect("candidate");
    let failed = Candidate { outcome: Outcome::Failed("boom".into()), ..cand(2, "", 0.0) };
    j.candidate(0, &p[0], &failed).expect("candidate");
    type Row = (u32, Option<f64>, Option<f64>, Option<String>, Option<i64>, i64, Option<String>);
    let rows: Vec<Row> = {
        let mut st = j
            .store()
            .conn()
            .prepare("SELECT run_no, composite, echo, grammar, duplicate_of, seed, error FROM candidates ORDER BY id")
            .expect("prepare");
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert_eq!(rows[0].1, Some(42.0));
    assert_eq!(rows[0].2, Some(0.25));
    assert!(rows[0].3.as_deref().is_some_and(|g| g.contains("\"verb_diversity\":3")), "{rows:?}");
    assert_eq!(rows[0].4, None);
    assert!(rows[1].4.is_some(), "the second identical candidate points at the first");
    assert_eq!(rows[0].5 as u64, u64::MAX, "seeds keep all 64 bits");
    assert_eq!(rows[2].6.as_deref(), Some("boom"));
}

#[test]
fn a_decision_committed_but_not_written_is_written_once_on_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec(dir.path(), false);
    let p = [probe("A", "alpha?")];
    let a = [cand(0, "first", 30.0), cand(1, "second", 50.0)];
    let (mut j, _, _) = begin(dir.path(), &s, &p);
    j.decision(0, &p[0], &KEEP, &a).expect("decision");
    drop(j); // killed before the line was appended

    let (j, _, report) = begin(dir.path(), &s, &p);
    assert_eq!((report.written, report.found), (1, 0), "{report:?}");
    assert_eq!(lesson(dir.path()), line("alpha?", "second"));
    assert!(j.is_duplicate("alpha?", "second"));
    drop(j);
    let (_, _, report) = begin(dir.path(), &s, &p);
    assert_eq!((report.written, report.found, report.missing), (0, 0, 0), "{report:?}");
    assert_eq!(lesson(dir.path()), line("alpha?", "second"), "never twice");
}

#[test]
fn a_line_already_in_the_file_is_recorded_not_rewritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec(dir.path(), false);
    let p = [probe("A", "alpha?")];
    let a = [cand(0, "first", 30.0), cand(1, "second", 50.0)];
    let (mut j, _, _) = begin(dir.path(), &s, &p);
    j.decision(0, &p[0], &KEEP, &a).expect("decision");
    drop(j);
    // Killed after the append, before `written`; and another tool's line is there too.
    std::fs::create_dir_all(dir.path().join("out")).expect("mkdir");
    let other =
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"y\"}]}\n";
    std::fs::write(dir.path().join("out/lesson.jsonl"), format!("{other}{}", line("alpha?", "second"))).expect("write");
    let (_, _, report) = begin(dir.path(), &s, &p);
    assert_eq!((report.written, report.found), (0, 1), "{report:?}");
    assert_eq!(lesson(dir.path()).lines().count(), 2);
}

#[test]
fn a_torn_line_of_ours_is_cut_and_written_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec(dir.path(), false);
    let p = [probe("A", "alpha?")];
    let a = [cand(0, "first", 30.0), cand(1, "second", 50.0)];
    let (mut j, _, _) = begin(dir.path(), &s, &p);
    j.decision(0, &p[0], &KEEP, &a).expect("decision");
    drop(j);
    let full = line("alpha?", "second");
    std::fs::create_dir_all(dir.path().join("out")).expect("mkdir");
    std::fs::write(dir.path().join("out/lesson.jsonl"), &full[..full.len() / 2]).expect("write");
    let (_, _, report) = begin(dir.path(), &s, &p);
    assert_eq!(report.torn_cut, (full.len() / 2) as u64);
    assert_eq!(lesson(dir.path()), full);

    // Someone else's torn line is left alone; ours starts on a new line after it.
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec(dir.path(), false);
    let (mut j, _, _) = begin(dir.path(), &s, &p);
    j.decision(0, &p[0], &KEEP, &a).expect("decision");
    drop(j);
    std::fs::create_dir_all(dir.path().join("out")).expect("mkdir");
    std::fs::write(dir.path().join("out/lesson.jsonl"), "{\"other\":").expect("write");
    let (_, _, report) = begin(dir.path(), &s, &p);
    assert_eq!((report.torn_cut, report.written), (0, 1));
    assert_eq!(lesson(dir.path()), format!("{{\"other\":\n{full}"));
}

#[test]
fn duplicates_are_found_by_content_with_or_without_the_sandwich() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = spec(dir.path(), false);
    s.kernel = Some("KERNEL".into());
    std::fs::create_dir_all(dir.path().join("out")).expect("mkdir");
    let py = "{\"messages\": [{\"role\": \"user\", \"content\": \"KERNEL\\n\\na <b>\"}, {\"role\": \"assistant\", \"content\": \"r\"}]}\n";
    std::fs::write(dir.path().join("out/lesson.jsonl"), format!("{py}{}", line("plain", "q"))).expect("write");
    let (j, _, _) = begin(dir.path(), &s, &[probe("A", "a <b>")]);
    assert!(j.is_duplicate("a <b>", "r"), "a Python-escaped sandwiched line");
    assert!(j.is_duplicate("plain", "q"), "a line without the kernel");
    assert!(!j.is_duplicate("a <b>", "other"));
}

#[test]
fn undo_is_a_new_row_and_reopens_the_probe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec(dir.path(), false);
    let p = [probe("A", "alpha?")];
    let a = [cand(0, "first", 30.0), cand(1, "second", 50.0)];
    let (mut j, _, _) = begin(dir.path(), &s, &p);
    for c in &a {
        j.candidate(0, &p[0], c).expect("candidate");
    }
    let id = j.decision(0, &p[0], &KEEP, &a).expect("decision");
    j.written(id, 0..5).expect("written");
    assert!(j.is_duplicate("alpha?", "second"));
    let u = j.undo(id, Some(0..5)).expect("undo");
    assert!(j.is_duplicate("alpha?", "second"), "an undo under way has not taken the line out yet");
    j.undo_finished(u, true).expect("finished");
    assert!(!j.is_duplicate("alpha?", "second"), "an undone line no longer counts");
    let kinds: Vec<String> = {
        let mut st = j.store().conn().prepare("SELECT kind FROM decisions ORDER BY id").expect("prepare");
        st.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
    };
    assert_eq!(kinds, ["kept", "undo"]);
    drop(j);
    let (_, starts, report) = begin(dir.path(), &s, &p);
    assert_eq!(starts[0], ProbeStart::Review(a.to_vec()));
    assert_eq!((report.kept, report.missing), (0, 0));
}

#[test]
fn fresh_starts_a_new_session_with_the_same_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = [probe("A", "alpha?")];
    let (mut j, _, first) = begin(dir.path(), &spec(dir.path(), false), &p);
    j.decision(0, &p[0], &Decision::Skipped { best: 1.0, by: Decider::Gate }, &[]).expect("decision");
    drop(j);
    let (_, starts, fresh) = begin(dir.path(), &spec(dir.path(), true), &p);
    assert!(!fresh.resumed && fresh.session > first.session);
    assert_eq!(starts, [ProbeStart::Fresh]);
    let (_, starts, again) = begin(dir.path(), &spec(dir.path(), false), &p);
    assert_eq!((again.session, starts), (fresh.session, vec![ProbeStart::Fresh]), "the newest session resumes");
}

#[test]
fn a_second_process_on_the_same_lesson_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out/lesson.jsonl");
    let held = Opened::open(&db(dir.path()), &out).expect("first");
    let err = Opened::open(&db(dir.path()), &out).err().expect("second is refused");
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Locked { .. }), "{msg}");
    assert!(msg.contains("session already open") && msg.contains(&std::process::id().to_string()), "{msg}");
    assert!(Opened::open(&db(dir.path()), &dir.path().join("other.jsonl")).is_ok(), "another output is fine");
    drop(held);
    assert!(Opened::open(&db(dir.path()), &out).is_ok(), "released on drop");
}

#[test]
fn newer_damaged_and_foreign_stores_are_refused_with_a_way_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(dir.path());
    let store = Store::open(&path).expect("creates");
    store.conn().pragma_update(None, "user_version", 99).expect("bump");
    drop(store);
    let msg = Store::open(&path).expect_err("newer").to_string();
    assert!(msg.contains("newer lem-tui (schema version 99") && msg.contains("--store"), "{msg}");

    std::fs::write(&path, b"this is not a database, just forty-odd bytes of text.....").expect("write");
    let _ = std::fs::remove_file(dir.path().join("store.sqlite3-wal"));
    let msg = Store::open(&path).expect_err("garbage").to_string();
    assert!(msg.contains("not a lem-tui database or is damaged") && msg.contains("mv "), "{msg}");

    let foreign = dir.path().join("foreign.db");
    let c = rusqlite::Connection::open(&foreign).expect("open");
    c.execute_batch("CREATE TABLE t (x)").expect("create");
    drop(c);
    let msg = Store::open(&foreign).expect_err("foreign").to_string();
    assert!(msg.contains("another application"), "{msg}");
}

#[test]
fn model_digests_are_cached_by_path_size_and_mtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&db(dir.path())).expect("opens");
    let weights = dir.path().join("w.gguf");
    std::fs::write(&weights, b"abc").expect("write");
    let id = lem_tui::store::model_identity(&store, "m", "llama.cpp", &weights.to_string_lossy()).expect("identity");
    assert_eq!(id.sha256.as_deref(), Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    assert_eq!(id.size, Some(3));
    let cached: i64 = store.conn().query_row("SELECT count(*) FROM model_files", [], |r| r.get(0)).expect("count");
    assert_eq!(cached, 1);
    store.conn().execute("UPDATE model_files SET sha256 = 'from-the-cache'", []).expect("mark");
    let again = lem_tui::store::model_identity(&store, "m", "llama.cpp", &weights.to_string_lossy()).expect("again");
    assert_eq!(again.sha256.as_deref(), Some("from-the-cache"), "the second start reads the cache");
    std::fs::write(&weights, b"abcd").expect("rewrite");
    let changed =
        lem_tui::store::model_identity(&store, "m", "llama.cpp", &weights.to_string_lossy()).expect("changed");
    assert_eq!(changed.sha256.as_deref(), Some("88d4266fd4e6338d13b845fcf289579d209c897823b9217da3e161936f031589"));
    let remote = lem_tui::store::model_identity(&store, "gpt", "openai", "http://host/v1").expect("remote");
    assert_eq!((remote.size, remote.sha256), (None, None));
}

/// An undo is an intent recorded before the lesson file is cut. A kill between the two leaves
/// the intent; the next start finishes it when the line is still where the intent says (the
/// file's last line, or mid-file once another writer appended after it: that line is kept), and
/// rolls it back (the decision stands) when the line moved.
#[test]
fn an_interrupted_undo_is_finished_or_rolled_back_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = spec(dir.path(), false);
    let p = [probe("A", "alpha?"), probe("B", "beta?")];
    let a = [cand(0, "first", 30.0), cand(1, "second", 50.0)];
    let out = dir.path().join("out/lesson.jsonl");
    std::fs::create_dir_all(out.parent().expect("dir")).expect("mkdir");
    let keep_a = |j: &mut SessionJournal| {
        let id = j.decision(0, &p[0], &KEEP, &a).expect("decision");
        let mut text = lesson(dir.path());
        let start = text.len() as u64;
        text.push_str(&line("alpha?", "second"));
        std::fs::write(&out, &text).expect("write");
        j.written(id, start..text.len() as u64).expect("written");
        (id, start..text.len() as u64)
    };

    // Killed after the intent, before the cut: finished at start.
    let (mut j, _, _) = begin(dir.path(), &s, &p);
    for c in &a {
        j.candidate(0, &p[0], c).expect("candidate");
    }
    let (id, range) = keep_a(&mut j);
    let _intent = j.undo(id, Some(range)).expect("intent");
    drop(j);
    let (mut j, starts, report) = begin(dir.path(), &s, &p);
    assert_eq!(lesson(dir.path()), "", "the undo was finished: the line is out");
    assert_eq!((report.undone, report.undo_rolled_back), (1, 0), "{report:?}");
    assert_eq!(starts[0], ProbeStart::Review(a.to_vec()), "the probe is undecided again");

    // Killed after the intent, and another writer appended after the line: the line is cut
    // from the middle, the other writer's kept.
    let (id, range) = keep_a(&mut j);
    let _intent = j.undo(id, Some(range)).expect("intent");
    drop(j);
    let other = line("someone else", "appended");
    std::fs::write(&out, lesson(dir.path()) + &other).expect("append");
    let (mut j, starts, report) = begin(dir.path(), &s, &p);
    assert_eq!(lesson(dir.path()), other, "only our line is out");
    assert_eq!((report.undone, report.undo_rolled_back), (1, 0), "{report:?}");
    assert_eq!(starts[0], ProbeStart::Review(a.to_vec()), "the probe is undecided again");

    // Killed after the intent, and the line moved (a line written before it): rolled back.
    std::fs::write(&out, "").expect("empty");
    let (id, range) = keep_a(&mut j);
    let _intent = j.undo(id, Some(range)).expect("intent");
    drop(j);
    std::fs::write(&out, other.clone() + &line("alpha?", "second")).expect("insert before");
    let (_, starts, report) = begin(dir.path(), &s, &p);
    assert_eq!(lesson(dir.path()), other + &line("alpha?", "second"), "the file is left alone");
    assert_eq!((report.undone, report.undo_rolled_back), (0, 1), "{report:?}");
    assert_eq!(starts[0], ProbeStart::Done(KEEP), "the decision stands");
}
