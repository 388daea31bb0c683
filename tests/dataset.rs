//! Ingesting datasets into the session store: every shape, the sandwich, dedup by content,
//! bad lines named and skipped, scores stored with their scorer, and an ingested session
//! reviewed and exported like a generated one.

use std::path::{Path, PathBuf};

use lem_tui::config::sandwich;
use lem_tui::dataset::{self, Options, Report};
use lem_tui::distill::{Decider, Decision, Journal, ProbeStart};
use lem_tui::lesson::{TrainingExample, training_line};
use lem_tui::scorer::{Mode, Scorer, Thresholds};
use lem_tui::store::{ModelIdentity, Opened, Store, scores};

const KERNEL: &str = "You are guided by the axioms.\n{\"framework\": \"axioms-of-life\"}";
const SIG: &str = "Dream lofty dreams.";

const PROMPTS: [&str; 3] = [
    "How can a displaced person prove their credentials?",
    "Explain encryption to a child using notes passed in class.",
    "Why is forgetting necessary for forgiveness?",
];
const ANSWERS: [&str; 3] = [
    "They can rebuild trust through verifiable attestations that colleagues signed and stored.",
    "Imagine you fold a note and write it in a secret code that only your friend understands.",
    "Forgetting lets people grow; a perfect record would hold every mistake against them forever.",
];

fn lesson_line(prompt: &str, answer: &str) -> String {
    training_line(&TrainingExample::user_assistant(sandwich(Some(KERNEL), Some(SIG), prompt), answer))
}

fn opts(dir: &Path, files: &[PathBuf]) -> Options {
    Options {
        root: dir.to_owned(),
        output: dataset::default_output(files),
        sandwich: None,
        thresholds: Thresholds::default(),
        threads: 2,
    }
}

/// A sandwich lesson file: three answers, a duplicate of the first, a malformed line, a line
/// that is not UTF-8, a blank line and a line of the wrong shape.
fn lesson_file(dir: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    for (p, a) in PROMPTS.iter().zip(ANSWERS) {
        bytes.extend_from_slice(lesson_line(p, a).as_bytes());
    }
    bytes.extend_from_slice(lesson_line(PROMPTS[0], ANSWERS[0]).as_bytes()); // 4: duplicate of 1
    bytes.extend_from_slice(b"{\"messages\": [{\"role\": \"user\", \"content\": \"cut off\n"); // 5
    bytes.extend_from_slice(b"{\"prompt\": \"caf\xe9\", \"completion\": \"x\"}\n"); // 6
    bytes.extend_from_slice(b"\n"); // 7: blank, ignored
    bytes.extend_from_slice(b"{\"text\": \"no shape\"}\n"); // 8
    let path = dir.join("lesson.jsonl");
    std::fs::write(&path, bytes).expect("write lesson");
    path
}

fn ingest(store: &Store, dir: &Path, files: &[PathBuf]) -> Report {
    dataset::ingest(store, files, &opts(dir, files)).expect("ingest")
}

#[test]
fn a_lesson_file_is_ingested_with_bad_and_duplicate_lines_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = lesson_file(dir.path());
    let store = Store::open(&dir.path().join("s.sqlite3")).expect("store");
    let report = ingest(&store, dir.path(), std::slice::from_ref(&file));
    let f = &report.files[0];
    assert_eq!((f.lines, f.candidates, f.new_probes), (8, 3, 3), "{report}");
    assert_eq!((f.kernel_chars, f.signature_chars), (Some(KERNEL.chars().count()), Some(SIG.len())));
    assert_eq!(f.duplicates.len(), 1);
    assert_eq!((f.duplicates[0].line, f.duplicates[0].of.as_str()), (4, "lesson.jsonl:1"));
    let bad: Vec<(usize, &str)> = f.bad.iter().map(|b| (b.line, b.what.as_str())).collect();
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(bad[0].0 == 5 && bad[0].1.starts_with("not JSON: "), "{bad:?}");
    assert_eq!(bad[1], (6, "not UTF-8 (at byte 15)"));
    assert!(bad[2].0 == 8 && bad[2].1.contains("found keys [text]"), "{bad:?}");
    let text = report.to_string();
    for needle in [
        "lesson.jsonl:5: not JSON",
        "lesson.jsonl:6: not UTF-8",
        "lesson.jsonl:8: expected `messages`",
        "lesson.jsonl:4: duplicate of lesson.jsonl:1",
        "3 bad line(s) skipped",
        "1 duplicate(s)",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }

    // Scored as the engine scores a candidate: against the bare probe, not the sandwich.
    let scorer = Scorer::new(Mode::Cold);
    let rows: Vec<(String, String, f64, f64, f64)> = store
        .conn()
        .prepare(
            "SELECT p.prompt, c.text, c.composite, c.uplift, c.echo FROM candidates c
             JOIN probes p ON p.id = c.probe_row ORDER BY c.id",
        )
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 3);
    for ((prompt, text, composite, uplift, echo), (p, a)) in rows.iter().zip(PROMPTS.iter().zip(ANSWERS)) {
        assert_eq!((prompt.as_str(), text.as_str()), (*p, a));
        let (g, d) = scorer.score_with_delta(p, a, Thresholds::default());
        assert_eq!((*composite, *uplift, *echo), (g.composite, d.uplift, d.echo));
    }
    // Every score names its scorer and version.
    let s = scores::scores_of(&store, 1).expect("scores");
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].scorer.as_str(), s[0].version.as_str()), ("grammar-v3", env!("CARGO_PKG_VERSION")));
    assert_eq!(s[0].composite, Some(rows[0].2));

    // The same file again adds nothing and names every line a duplicate of the first ingest.
    let again = ingest(&store, dir.path(), std::slice::from_ref(&file));
    assert_eq!((again.session, again.candidates(), again.duplicates()), (report.session, 0, 4));
    assert!(again.files[0].duplicates[0].of.starts_with("candidate 1 of an earlier ingest"), "{again}");
    let n: i64 = store.conn().query_row("SELECT count(*) FROM candidates", [], |r| r.get(0)).expect("count");
    assert_eq!(n, 3);
    let (lines, bad): (i64, i64) = store
        .conn()
        .query_row("SELECT lines, bad FROM datasets ORDER BY id LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("dataset row");
    assert_eq!((lines, bad), (8, 3));
}

#[test]
fn sft_prompt_completion_and_dpo_files_become_candidates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sft = dir.path().join("sft.jsonl");
    std::fs::write(
        &sft,
        concat!(
            r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi?"},{"role":"assistant","content":"Hello there, friend."},{"role":"user","content":"What is a mesh network?"},{"role":"assistant","content":"Devices relay messages for each other without a central server."}]}"#,
            "\n",
            r#"{"id":"pc-1","domain":"Network","prompt":"What is a mesh network?","completion":"A network where every node forwards traffic."}"#,
            "\n",
        ),
    )
    .expect("write sft");
    let dpo = dir.path().join("dpo.jsonl");
    std::fs::write(
        &dpo,
        concat!(
            r#"{"prompt":"Why rotate keys?","chosen":"Rotation limits the damage a stolen key can do.","rejected":"No reason."}"#,
            "\n",
            r#"{"prompt":"Why rotate keys?","chosen":"Rotation limits the damage a stolen key can do."}"#,
            "\n",
        ),
    )
    .expect("write dpo");
    let store = Store::open(&dir.path().join("s.sqlite3")).expect("store");
    let files = [sft, dpo];
    let report = ingest(&store, dir.path(), &files);
    assert_eq!(report.candidates(), 4, "{report}");
    assert_eq!(report.files[0].shapes.get("chat"), Some(&1));
    assert_eq!(report.files[0].shapes.get("prompt_completion"), Some(&1));
    assert_eq!(report.files[1].bad[0].what, "field `rejected` is missing (a DPO line needs both)");
    // Two answers to one prompt across lines and files are candidates of one probe.
    let probes = dataset::dataset_probes(&store, report.session).expect("probes");
    let ids: Vec<&str> = probes.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["sft.jsonl:1", "dpo.jsonl:1"]);
    let roles: Vec<(String, i64, String)> = store
        .conn()
        .prepare("SELECT role, c.run_no, coalesce(context, '') FROM dataset_items i JOIN candidates c ON c.id = i.candidate_id ORDER BY c.id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(roles[0].0, "answer");
    assert_eq!(roles[1].1, 1, "the second answer to the same prompt is its second candidate");
    assert!(roles[0].2.contains("\"system\":\"Be brief.\"") && roles[0].2.contains("Hello there"), "{}", roles[0].2);
    assert_eq!((roles[2].0.as_str(), roles[3].0.as_str()), ("chosen", "rejected"));
}

#[test]
fn an_ingested_session_is_reviewed_and_exported_like_a_generated_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = lesson_file(dir.path());
    let db = dir.path().join("s.sqlite3");
    let files = vec![lem_tui::store::canonical(&file)];
    let output = dataset::default_output(&files);
    {
        let store = Store::open(&db).expect("store");
        let report = ingest(&store, dir.path(), &files);
        let spec = dataset::review_spec(&store, dir.path(), &files, &output).expect("spec");
        assert_eq!((spec.kernel.as_deref(), spec.signature.as_deref()), (Some(KERNEL), Some(SIG)));
        let probes = dataset::dataset_probes(&store, report.session).expect("probes");
        drop(store);
        let opened = Opened::open(&db, &output).expect("open");
        let (mut journal, starts, resume) = opened.begin(&spec, &probes, &ModelIdentity::default()).expect("begin");
        assert_eq!((resume.session, resume.to_finish), (report.session, 3), "{resume}");
        let ProbeStart::Review(cands) = &starts[0] else { panic!("{starts:?}") };
        let kept = Decision::Kept { run: 0, by: Decider::Operator };
        let id = journal.decision(0, &probes[0], &kept, cands).expect("decide");
        let ProbeStart::Review(cands1) = &starts[1] else { panic!("{starts:?}") };
        journal.decision(1, &probes[1], &Decision::Rejected, cands1).expect("reject");
        let _ = id;
    }
    let out = dir.path().join("sft.jsonl");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .args(["export", "sft", "--store"])
        .arg(&db)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("export runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let text = std::fs::read_to_string(&out).expect("sft written");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(v["messages"][0]["content"], PROMPTS[0]);
    assert_eq!(v["messages"][1]["content"], ANSWERS[0]);
    let lesson = dir.path().join("lesson-out.jsonl");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .args(["export", "lesson", "--store"])
        .arg(&db)
        .arg("--out")
        .arg(&lesson)
        .output()
        .expect("export runs");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    // The sandwich is rebuilt byte for byte: the exported line is the ingested one.
    assert_eq!(std::fs::read_to_string(&lesson).expect("lesson"), lesson_line(PROMPTS[0], ANSWERS[0]));
}

#[test]
fn review_ingest_only_prints_the_summary_and_names_bad_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = lesson_file(dir.path());
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .args(["review", "--ingest-only", "--store"])
        .arg(dir.path().join("s.sqlite3"))
        .arg(&file)
        .output()
        .expect("review runs");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{err}");
    assert!(err.contains("lesson.jsonl:5: not JSON") && err.contains("3 candidates added"), "{err}");
}

/// The next engine event that `pick` accepts, within the test's deadline.
async fn wait_for<T>(
    rx: &mut tokio::sync::mpsc::Receiver<lem_tui::distill::EngineEvent>,
    mut pick: impl FnMut(&lem_tui::distill::EngineEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ev =
            tokio::time::timeout_at(deadline, rx.recv()).await.expect("engine event in time").expect("engine open");
        if let Some(t) = pick(&ev) {
            return t;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_reviews_ingested_data_without_a_backend() {
    use lem_tui::backend::none::NO_BACKEND;
    use lem_tui::distill::{Control, EngineEvent, Outcome, Review};

    let dir = tempfile::tempdir().expect("tempdir");
    let file = lesson_file(dir.path());
    let db = dir.path().join("s.sqlite3");
    let files = vec![file];
    let output = dataset::default_output(&files);
    {
        let store = Store::open(&db).expect("store");
        ingest(&store, dir.path(), &files);
    }
    let open = |gate| {
        let none = std::sync::Arc::new(lem_tui::backend::none::NoBackend);
        lem_tui::commands::review::open_session(&db, dir.path(), &files, &output, gate, Thresholds::default(), none)
            .expect("session opens")
    };
    let s = open(0.0);
    assert_eq!((s.resume.to_finish, s.resume.done()), (3, 0), "{}", s.resume);
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::channel(1024);
    let (ctl_tx, ctl_rx) = tokio::sync::mpsc::channel(64);
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(s.engine.run(ev_tx, ctl_rx, cancel.clone()));
    let review = |probe, review| Control::Review { probe, review };

    let n = wait_for(&mut ev_rx, |e| match e {
        EngineEvent::AwaitingReview { probe: 0, candidates, .. } => Some(candidates.len()),
        _ => None,
    })
    .await;
    assert_eq!(n, 1);
    // Asking for more without a model: a failed candidate that says why, and the probe is
    // reviewed again with the stored one intact.
    ctl_tx.send(review(0, Review::More { n: 1 })).await.expect("send");
    let failed = wait_for(&mut ev_rx, |e| match e {
        EngineEvent::CandidateDone { probe: 0, candidate } => Some(candidate.outcome.clone()),
        _ => None,
    })
    .await;
    assert_eq!(failed, Outcome::Failed(NO_BACKEND.into()));
    wait_for(&mut ev_rx, |e| matches!(e, EngineEvent::AwaitingReview { probe: 0, .. }).then_some(())).await;
    ctl_tx.send(review(0, Review::Accept { run: 0, below_gate_ok: true })).await.expect("send");
    wait_for(&mut ev_rx, |e| matches!(e, EngineEvent::AwaitingReview { probe: 1, .. }).then_some(())).await;
    ctl_tx.send(review(1, Review::RejectAll)).await.expect("send");
    wait_for(&mut ev_rx, |e| matches!(e, EngineEvent::AwaitingReview { probe: 2, .. }).then_some(())).await;
    ctl_tx.send(Control::Stop { now: true }).await.expect("send");
    cancel.cancel();
    while ev_rx.recv().await.is_some() {}
    tokio::time::timeout(std::time::Duration::from_secs(30), task).await.expect("engine ends").expect("joins").ok();

    // The accepted answer is in the lesson file exactly as the ingested line was (sandwich
    // rebuilt from the detected kernel and signature).
    assert_eq!(std::fs::read_to_string(&output).expect("lesson"), lesson_line(PROMPTS[0], ANSWERS[0]));
    // Reopening resumes: two decided, one to finish.
    let again = open(0.0);
    assert_eq!((again.resume.done(), again.resume.to_finish), (2, 1), "{}", again.resume);
}
