//! Tags and bulk decisions through the engine, on an ingested lesson file (`lem-tui review`'s
//! session, no backend): each decision of a bulk
//! reaches the store and the lesson file exactly as a single one does, tags are stored
//! append-only and come back on resume, and exports carry them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lem_tui::dataset::{self, Options};
use lem_tui::distill::{BulkAction, Control, Decision, EngineEvent, Review, Tagging};
use lem_tui::lesson::{TrainingExample, training_line};
use lem_tui::scorer::{Mode, Scorer, Thresholds};
use lem_tui::store::Store;
use lem_tui::store::export::{self, Filter, Format, Request};
use tokio::sync::mpsc;

const HANG: Duration = Duration::from_secs(60);

/// Six prompts, two answers each (the first the longer, better scored one).
fn qa() -> Vec<(String, [String; 2])> {
    (0..6)
        .map(|i| {
            (
                format!("Question {i}: why does the river {i} bend towards the sea?"),
                [
                    format!(
                        "The river {i} bends because water erodes the outer bank faster, carrying sediment \
                         downstream and depositing it where the current slows on the inner bank."
                    ),
                    format!("It bends {i}."),
                ],
            )
        })
        .collect()
}

fn line(p: &str, a: &str) -> String {
    training_line(&TrainingExample::user_assistant(p, a))
}

fn write_data(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for (p, answers) in qa() {
        for a in &answers {
            text.push_str(&line(&p, a));
        }
    }
    let path = dir.join("data.jsonl");
    std::fs::write(&path, text).expect("data");
    path
}

struct Session {
    events: mpsc::Receiver<EngineEvent>,
    control: mpsc::Sender<Control>,
    task: tokio::task::JoinHandle<Result<lem_tui::distill::Summary, lem_tui::distill::DistillError>>,
    seen: Vec<EngineEvent>,
}

impl Session {
    fn open(dir: &Path, files: &[PathBuf]) -> (Self, lem_tui::store::ResumeReport) {
        let none = std::sync::Arc::new(lem_tui::backend::none::NoBackend);
        let s = lem_tui::commands::review::open_session(
            &dir.join("s.sqlite3"),
            dir,
            files,
            &dataset::default_output(files),
            0.0,
            Thresholds::default(),
            none,
        )
        .expect("session opens");
        let (ev_tx, events) = mpsc::channel(64);
        let (control, ctl_rx) = mpsc::channel(16);
        let task = tokio::spawn(s.engine.run(ev_tx, ctl_rx, tokio_util::sync::CancellationToken::new()));
        (Self { events, control, task, seen: Vec::new() }, s.resume)
    }

    async fn until(&mut self, what: &str, pred: impl Fn(&EngineEvent) -> bool) -> EngineEvent {
        loop {
            let ev = match tokio::time::timeout(HANG, self.events.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => panic!("the engine ended before {what}; events:\n{:#?}", self.seen),
                Err(_) => panic!("no {what} within {HANG:?}; events:\n{:#?}", self.seen),
            };
            self.seen.push(ev.clone());
            if pred(&ev) {
                return ev;
            }
        }
    }

    async fn send(&self, c: Control) {
        self.control.send(c).await.expect("the engine takes controls");
    }

    async fn stop(mut self) -> Vec<EngineEvent> {
        // An engine with nothing left to decide has ended by itself already.
        let _ = self.control.send(Control::Stop { now: false }).await;
        if !self.seen.iter().any(|e| matches!(e, EngineEvent::Finished(_))) {
            self.until("Finished", |e| matches!(e, EngineEvent::Finished(_))).await;
        }
        tokio::time::timeout(HANG, self.task).await.expect("ends").expect("joins").expect("no error");
        self.seen
    }
}

fn bulk_done(e: &EngineEvent) -> bool {
    matches!(e, EngineEvent::BulkProgress { done, total, .. } if done == total)
}

/// (probe id, decision kind) of every decision row, in order.
fn decision_rows(db: &Path) -> Vec<(String, String)> {
    let store = Store::open_existing(db).expect("store");
    let mut stmt = store
        .conn()
        .prepare("SELECT p.probe_id, d.kind FROM decisions d JOIN probes p ON p.id = d.probe_row ORDER BY d.id")
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").collect::<Result<_, _>>().expect("rows")
}

/// (probe id, tags JSON, note, decision kind or None) of every tag row, in order.
fn tag_rows(db: &Path) -> Vec<(String, String, Option<String>, Option<String>)> {
    let store = Store::open_existing(db).expect("store");
    let mut stmt = store
        .conn()
        .prepare(
            "SELECT p.probe_id, t.tags, t.note, d.kind FROM decision_tags t JOIN probes p ON p.id = t.probe_row
             LEFT JOIN decisions d ON d.id = t.decision_id ORDER BY t.id",
        )
        .expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn id(n: usize) -> String {
    // Each prompt's first line number in data.jsonl (two lines a prompt).
    format!("data.jsonl:{}", 2 * n + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_bulk_on_an_ingested_file_then_resume_and_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let files = vec![write_data(d)];
    let db = d.join("s.sqlite3");
    {
        let store = Store::open(&db).expect("store");
        let opts = Options {
            root: d.to_owned(),
            output: dataset::default_output(&files),
            sandwich: None,
            thresholds: Thresholds::default(),
            threads: 2,
        };
        dataset::ingest(&store, &files, &opts).expect("ingest");
    }
    let output = dataset::default_output(&files);
    let (mut s, resume) = Session::open(d, &files);
    assert_eq!(resume.to_finish, 6, "{resume}");
    s.until("P0 in review", |e| matches!(e, EngineEvent::AwaitingReview { probe: 0, .. })).await;

    // A tag before the decision: stored without one.
    let tone = Tagging::new(["tone"], Some("check the register"));
    s.send(Control::Tag { probe: 0, tagging: tone.clone() }).await;
    let ev = s.until("P0 tagged", |e| matches!(e, EngineEvent::Tagged { .. })).await;
    assert_eq!(ev, EngineEvent::Tagged { tags: vec![(0, tone.clone())] });

    // Bulk reject of P1..P3 (not the one under review): each its own decision, in order.
    s.send(Control::Bulk { probes: vec![1, 2, 3], action: BulkAction::Reject }).await;
    let ev = s.until("the reject bulk done", bulk_done).await;
    assert_eq!(ev, EngineEvent::BulkProgress { done: 3, total: 3, decided: 3 });
    let decided: Vec<usize> = s
        .seen
        .iter()
        .filter_map(|e| match e {
            EngineEvent::ProbeDecided { probe, decision: Decision::Rejected, .. } => Some(*probe),
            _ => None,
        })
        .collect();
    assert_eq!(decided, [1, 2, 3]);
    assert!(std::fs::read_to_string(&output).unwrap_or_default().is_empty(), "rejects write no line");

    // Bulk accept over P0 (under review), P2 (decided already: left alone) and P4.
    s.send(Control::Bulk { probes: vec![0, 2, 4], action: BulkAction::Accept }).await;
    let ev = s.until("the accept bulk done", bulk_done).await;
    assert_eq!(ev, EngineEvent::BulkProgress { done: 3, total: 3, decided: 2 });
    let scorer = Scorer::new(Mode::Cold);
    let qa = qa();
    let best = |i: usize| {
        let [a, b] = &qa[i].1;
        if scorer.score(b).composite > scorer.score(a).composite { b.clone() } else { a.clone() }
    };
    let lesson = std::fs::read_to_string(&output).expect("lesson");
    assert_eq!(lesson, [line(&qa[0].0, &best(0)), line(&qa[4].0, &best(4))].concat());

    // The engine moves on to the next undecided probe (P5), which a bulk tag leaves open.
    s.until("P5 in review", |e| matches!(e, EngineEvent::AwaitingReview { probe: 5, .. })).await;
    let short = Tagging::new(["short", "tone"], None);
    s.send(Control::Bulk { probes: vec![4, 5], action: BulkAction::Tag(short.clone()) }).await;
    let ev = s.until("the bulk tag", |e| matches!(e, EngineEvent::Tagged { .. })).await;
    assert_eq!(ev, EngineEvent::Tagged { tags: vec![(4, short.clone()), (5, short.clone())] });
    s.until("the tag bulk done", bulk_done).await;
    // A reject with a reason: the reject, then the note on its decision.
    s.send(Control::Review { probe: 5, review: Review::RejectAll }).await;
    s.send(Control::Tag { probe: 5, tagging: Tagging::new(["short"], Some("misses the sea")) }).await;
    s.until("P5 reason stored", |e| matches!(e, EngineEvent::Tagged { tags } if tags[0].0 == 5)).await;
    s.stop().await;

    assert_eq!(
        decision_rows(&db),
        [
            (id(1), "rejected"),
            (id(2), "rejected"),
            (id(3), "rejected"),
            (id(0), "kept"),
            (id(4), "kept"),
            (id(5), "rejected")
        ]
        .map(|(a, b)| (a, b.to_owned()))
    );
    let tags = |v: &[&str]| serde_json::to_string(v).expect("json");
    assert_eq!(
        tag_rows(&db),
        [
            (id(0), tags(&["tone"]), Some("check the register".to_owned()), None),
            (id(4), tags(&["short", "tone"]), None, Some("kept".to_owned())),
            (id(5), tags(&["short", "tone"]), None, None),
            (id(5), tags(&["short"]), Some("misses the sea".to_owned()), Some("rejected".to_owned())),
        ]
    );

    // Resume: nothing left to decide, the stored tags come back (the latest row of each).
    let (mut s, resume) = Session::open(d, &files);
    assert_eq!((resume.done(), resume.to_finish), (6, 0), "{resume}");
    let ev = s.until("stored tags", |e| matches!(e, EngineEvent::Tagged { .. })).await;
    assert_eq!(
        ev,
        EngineEvent::Tagged {
            tags: vec![(0, tone.clone()), (4, short.clone()), (5, Tagging::new(["short"], Some("misses the sea")))]
        }
    );
    s.stop().await;
    assert_eq!(std::fs::read_to_string(&output).expect("lesson"), lesson, "resume wrote nothing more");

    // Exports: SFT lines carry `meta`, the manifest counts records per tag; --tag narrows.
    let store = Store::open_existing(&db).expect("store");
    let out = d.join("sft.jsonl");
    let req = |out: &Path, format, tag: Option<&str>| Request {
        format,
        prompt: None,
        filter: Filter { tag: tag.map(str::to_owned), ..Filter::default() },
        split: None,
        out: out.to_owned(),
        edit_pairs: true,
    };
    let m = export::export(&store, &req(&out, Format::Sft, None)).expect("sft export");
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&out).expect("sft").lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let sft = |i: usize, meta: serde_json::Value| {
        serde_json::json!({"messages": [{"role": "user", "content": qa[i].0}, {"role": "assistant", "content": best(i)}],
            "meta": meta})
    };
    assert_eq!(
        lines,
        [
            sft(0, serde_json::json!({"tags": ["tone"], "note": "check the register"})),
            sft(4, serde_json::json!({"tags": ["short", "tone"], "note": ""})),
        ]
    );
    assert_eq!(m.tags, [("short".to_owned(), 1), ("tone".to_owned(), 2)].into_iter().collect());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("sft.jsonl.manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    assert_eq!(manifest["tags"], serde_json::json!({"short": 1, "tone": 2}));
    let dpo = d.join("dpo.jsonl");
    export::export(&store, &req(&dpo, Format::Dpo, Some("SHORT"))).expect("dpo export");
    let dpo_lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&dpo).expect("dpo").lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    let worst = |i: usize| qa[i].1.iter().find(|a| **a != best(i)).cloned().expect("the other answer");
    assert_eq!(
        dpo_lines,
        [serde_json::json!({"prompt": qa[4].0, "chosen": best(4), "rejected": worst(4),
            "meta": {"tags": ["short", "tone"], "note": ""}})]
    );
    let check = r#"
import sys
from datasets import load_dataset
from trl.data_utils import is_conversational, maybe_extract_prompt
sft = load_dataset("json", data_files=sys.argv[1], split="train")
assert sft.column_names == ["messages", "meta"] and len(sft) == 2, sft
assert sft[0]["meta"]["tags"] == ["tone"], sft[0]
dpo = load_dataset("json", data_files=sys.argv[2], split="train")
assert dpo.column_names == ["prompt", "chosen", "rejected", "meta"] and len(dpo) == 1, dpo.column_names
row = dpo[0]
assert not is_conversational(row) and maybe_extract_prompt(row)["prompt"] == row["prompt"]
print("consumers ok")
"#;
    let o = std::process::Command::new("python3").args(["-c", check]).arg(&out).arg(&dpo).output().expect("python3");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("consumers ok"), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
}
