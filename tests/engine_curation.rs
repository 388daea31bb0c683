//! Edits and reopened decisions (issue 16, items 1 and 6) against a scripted backend, the real
//! session store and the real lesson file: `Control::AddEdit` scores and stores an edit derived
//! from its parent, which is kept like any candidate; `Control::Reopen` takes back a decision
//! however old, its lesson line cut from the middle of the file, in review and in auto mode and
//! across a resume; and a kill at each point of a mid-file removal is finished exactly by the
//! next start (the test re-runs itself as a child process and kills it at a failpoint).

mod common;
// Shared with engine_controls.rs, which uses the rest of it.
#[allow(dead_code)]
mod engine_harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use engine_harness::*;
use lem_tui::backend::GenRequest;
use lem_tui::backend::scripted::{Call, Step};
use lem_tui::distill::{Control, CurationMode, Decider, Decision, EngineEvent, Outcome, ProbeStart, Review};
use lem_tui::lesson::{TrainingExample, training_line};
use lem_tui::scorer::{Mode, Scorer, Thresholds};
use lem_tui::store::Opened;

use CurationMode::{Auto, Review as ReviewMode};

fn line(prompt: &str, response: &str) -> String {
    training_line(&TrainingExample::user_assistant(prompt, response))
}

fn file(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("lesson.jsonl")).unwrap_or_default()
}

fn accept(probe: usize, run: u32) -> Control {
    Control::Review { probe, review: Review::Accept { run, below_gate_ok: false } }
}

const EDIT: &str = "The moon's gravity pulls the near side of the oceans toward it and the far side lags \
                    behind, so two bulges of water follow the moon around the turning earth: two high \
                    tides a day, and the sun's pull makes them spring or neap.";

fn prompt(i: usize) -> String {
    probes(3)[i].prompt.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_scored_stored_derived_and_kept() {
    let mut h = Harness::start(&Setup::new(ReviewMode), plain, tmp());
    h.until("P0 in review", reviewing(0)).await;
    h.send(Control::AddEdit { probe: 0, parent: 1, text: answer(&prompt(0), 1) }).await;
    h.until("an unchanged edit refused", refused("unchanged")).await;
    h.send(Control::AddEdit { probe: 0, parent: 7, text: EDIT.into() }).await;
    h.until("an edit of no candidate refused", refused("no candidate 8")).await;
    h.send(Control::AddEdit { probe: 0, parent: 1, text: EDIT.into() }).await;
    let ev = h.until("the edit stored", |e| matches!(e, EngineEvent::EditAdded { .. })).await;
    let EngineEvent::EditAdded { probe: 0, candidate } = ev else { panic!("{ev:?}") };
    assert_eq!((candidate.run, candidate.derived_from, candidate.text.as_str()), (2, Some(1), EDIT));
    // Scored as a generated candidate is: grammar v3 and the delta against the bare prompt.
    let scorer = Scorer::new(Mode::Cold);
    let (grammar, delta) = scorer.score_against(&scorer.imprint(&prompt(0)), EDIT, Thresholds::default());
    assert_eq!(candidate.outcome, Outcome::Scored { grammar, delta });

    h.send(accept(0, 2)).await;
    assert_eq!(decision_of(&h.until("P0 kept", decided(0)).await), Decision::Kept { run: 2, by: Decider::Operator });
    assert_eq!(file(h.dir.path()), line(&prompt(0), EDIT), "the lesson line has the edited text");
    h.until("P1 in review", reviewing(1)).await;
    h.send(Control::Stop { now: false }).await;
    let (_, _, dir) = h.finish().await;

    // The original is kept as it was; the edit names it.
    let c = rusqlite::Connection::open(db(dir.path())).expect("store");
    let rows: Vec<(i64, i64, String, Option<i64>)> = c
        .prepare("SELECT id, run_no, text, derived_from FROM candidates WHERE probe_row = 1 ORDER BY id")
        .expect("query")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("decoded");
    let parent = rows.iter().find(|r| r.1 == 1).expect("the original");
    assert_eq!(parent.2, answer(&prompt(0), 1));
    assert_eq!(rows.last().map(|r| (r.1, r.2.as_str(), r.3)), Some((2, EDIT, Some(parent.0))));
    let kept: i64 = c
        .query_row("SELECT c.run_no FROM decisions d JOIN candidates c ON c.id = d.candidate_id", [], |r| r.get(0))
        .expect("kept");
    assert_eq!(kept, 2);
    drop(c);

    // Resumed: P0 stands as the edit, nothing is written again, P1 comes back to review.
    let mut h = Harness::start(&Setup::new(ReviewMode), plain, dir);
    let ev = h.until("resumed", |e| matches!(e, EngineEvent::Resumed { .. })).await;
    let EngineEvent::Resumed { done, .. } = ev else { unreachable!() };
    assert_eq!(done, [(0, Decision::Kept { run: 2, by: Decider::Operator })]);
    h.until("P1 in review", reviewing(1)).await;
    h.send(Control::Stop { now: false }).await;
    let (_, _, dir) = h.finish().await;
    assert_eq!(file(dir.path()), line(&prompt(0), EDIT));
}

/// The removal records of the store: (start, end, how).
fn removals(dir: &std::path::Path) -> Vec<(i64, i64, Option<String>)> {
    let c = rusqlite::Connection::open(db(dir)).expect("store");
    c.prepare(
        "SELECT r.start, r.end, e.how FROM lesson_removals r LEFT JOIN lesson_removal_ends e USING (undo_id)
         ORDER BY r.undo_id",
    )
    .expect("query")
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
    .expect("rows")
    .collect::<Result<_, _>>()
    .expect("decoded")
}

fn len(s: &str) -> i64 {
    i64::try_from(s.len()).expect("small")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_an_older_decision_then_resume_exactly() {
    let mut h = Harness::start(&Setup { probes: 3, ..Setup::new(ReviewMode) }, plain, tmp());
    for (p, run) in [(0, 0), (1, 0), (2, 1)] {
        h.until("in review", reviewing(p)).await;
        h.send(accept(p, run)).await;
        h.until("decided", decided(p)).await;
    }
    let l = |p: usize, run: u64| line(&prompt(p), &answer(&prompt(p), run));
    assert_eq!(file(h.dir.path()), [l(0, 0), l(1, 0), l(2, 1)].concat());

    // The first decision, not the last: its line leaves the top of the file.
    h.send(Control::Reopen { probe: 0 }).await;
    let ev = h.until("P0 reopened", |e| matches!(e, EngineEvent::Undone { .. })).await;
    assert_eq!(ev, EngineEvent::Undone { probe: 0, decision: Decision::Kept { run: 0, by: Decider::Operator } });
    assert_eq!(file(h.dir.path()), [l(1, 0), l(2, 1)].concat(), "byte for byte");
    assert_eq!(removals(h.dir.path()), [(0, len(&l(0, 0)), Some("removed".into()))]);
    h.until("P0 in review again", reviewing(0)).await;
    h.send(Control::Reopen { probe: 0 }).await;
    h.until("reopening the probe under review refused", refused("already awaiting review")).await;
    h.send(accept(0, 1)).await;
    h.until("P0 decided again", decided(0)).await;
    assert_eq!(file(h.dir.path()), [l(1, 0), l(2, 1), l(0, 1)].concat());

    // A line in the middle: P1 becomes a rejection.
    h.send(Control::Reopen { probe: 1 }).await;
    h.until("P1 reopened", |e| matches!(e, EngineEvent::Undone { probe: 1, .. })).await;
    h.until("P1 in review", reviewing(1)).await;
    h.send(Control::Review { probe: 1, review: Review::RejectAll }).await;
    assert_eq!(decision_of(&h.until("P1 rejected", decided(1)).await), Decision::Rejected);
    assert_eq!(file(h.dir.path()), [l(2, 1), l(0, 1)].concat());
    assert_eq!(removals(h.dir.path())[1], (0, len(&l(1, 0)), Some("removed".into())));
    assert_eq!(
        h.decisions(),
        [
            d("P0", "kept"),
            d("P1", "kept"),
            d("P2", "kept"),
            d("P0", "undo"),
            d("P0", "kept"),
            d("P1", "undo"),
            d("P1", "rejected")
        ],
        "every change is a new row"
    );
    h.send(Control::Stop { now: false }).await;
    let (_, _, dir) = h.finish().await;

    // Resumed: the store's decisions are the file's lines; nothing is written or cut.
    let mut h = Harness::start(&Setup { probes: 3, ..Setup::new(ReviewMode) }, plain, dir);
    let ev = h.until("resumed", |e| matches!(e, EngineEvent::Resumed { .. })).await;
    let EngineEvent::Resumed { done, undecided } = ev else { unreachable!() };
    assert!(undecided.is_empty());
    let op = Decider::Operator;
    // Oldest standing decision first: P2's, then P0's and P1's second ones.
    assert_eq!(
        done,
        [(2, Decision::Kept { run: 1, by: op }), (0, Decision::Kept { run: 1, by: op }), (1, Decision::Rejected)]
    );
    assert_eq!(file(h.dir.path()), [l(2, 1), l(0, 1)].concat());
    // A decision of the earlier run, reopened from the store: its candidates come with it.
    h.send(Control::Reopen { probe: 2 }).await;
    h.until("P2 reopened", |e| matches!(e, EngineEvent::Undone { probe: 2, .. })).await;
    let ev = h.until("P2 in review", reviewing(2)).await;
    let EngineEvent::AwaitingReview { candidates, .. } = ev else { unreachable!() };
    assert_eq!(candidates.iter().map(|c| c.run).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(file(h.dir.path()), l(0, 1), "the earlier run's line is out");
    h.send(Control::Review { probe: 2, review: Review::Skip }).await;
    h.until("P2 skipped", decided(2)).await;
    h.send(Control::Stop { now: false }).await;
    let (summary, _, dir) = h.finish().await;
    assert_eq!(summary.probes_done, 3);

    let (_, starts, report) = Opened::open(&db(dir.path()), &dir.path().join("lesson.jsonl"))
        .expect("store")
        .begin(&spec(dir.path()), &probes(3), &model())
        .expect("begin");
    assert!(matches!(
        starts[..],
        [
            ProbeStart::Done(Decision::Kept { run: 1, .. }),
            ProbeStart::Done(Decision::Rejected),
            ProbeStart::Done(Decision::Skipped { .. })
        ]
    ));
    assert_eq!((report.written, report.missing, report.undone), (0, 0, 0), "{report}");
    assert_eq!(file(dir.path()), l(0, 1));
}

/// The summary counts this run's decisions: reopening one an earlier session made takes nothing
/// from what this run kept, and the new decision counts as this run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_an_earlier_sessions_decision_keeps_this_runs_counts() {
    let mut h = Harness::start(&Setup { probes: 2, ..Setup::new(ReviewMode) }, plain, tmp());
    for p in 0..2 {
        h.until("in review", reviewing(p)).await;
        h.send(accept(p, 0)).await;
        h.until("decided", decided(p)).await;
    }
    h.send(Control::Stop { now: false }).await;
    let (_, _, dir) = h.finish().await;

    let mut h = Harness::start(&Setup { probes: 2, ..Setup::new(ReviewMode) }, plain, dir);
    h.until("resumed", |e| matches!(e, EngineEvent::Resumed { .. })).await;
    // This run keeps P1 again (after reopening it), then rejects P0, kept by the first run.
    h.send(Control::Reopen { probe: 1 }).await;
    h.until("P1 in review", reviewing(1)).await;
    h.send(accept(1, 1)).await;
    h.until("P1 kept", decided(1)).await;
    h.send(Control::Reopen { probe: 0 }).await;
    h.until("P0 in review", reviewing(0)).await;
    h.send(Control::Review { probe: 0, review: Review::RejectAll }).await;
    h.until("P0 rejected", decided(0)).await;
    h.send(Control::Stop { now: false }).await;
    let (summary, _, dir) = h.finish().await;
    assert_eq!((summary.probes_done, summary.kept, summary.skipped), (2, 1, 1), "{summary:?}");
    let l = |p: usize, run: u64| line(&prompt(p), &answer(&prompt(p), run));
    assert_eq!(file(dir.path()), l(1, 1));
}

/// Holds the second request (P1's) after its first piece.
fn hold_second(req: &GenRequest, call: Call) -> Vec<Step> {
    let mut steps = plain(req, call);
    if call.request == 1 {
        steps.insert(1, Step::Hold);
    }
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_in_auto_mode_waits_for_the_generation_then_asks_the_operator() {
    let mut h = Harness::start(&Setup::new(Auto), hold_second, tmp());
    h.until("P0 decided by the gate", decided(0)).await;
    h.until("P1 streams", token(1)).await;
    h.send(Control::Reopen { probe: 0 }).await;
    h.send(Control::AddEdit { probe: 0, parent: 0, text: EDIT.into() }).await;
    h.backend.release(2);
    h.until("P1 decided by the gate", decided(1)).await;
    h.until("P0 reopened", |e| matches!(e, EngineEvent::Undone { probe: 0, .. })).await;
    let ev = h.until("the edit stored", |e| matches!(e, EngineEvent::EditAdded { .. })).await;
    assert!(matches!(ev, EngineEvent::EditAdded { probe: 0, candidate } if candidate.derived_from == Some(0)));
    h.until("P0 in review: the operator took it in hand", reviewing(0)).await;
    let p1 = responses(h.dir.path());
    assert_eq!(p1.len(), 1, "P0's line is out, P1's stays: {p1:?}");
    h.send(accept(0, 2)).await;
    h.until("P0 kept", decided(0)).await;
    let (_, _, dir) = h.finish().await;
    assert_eq!(responses(dir.path()), [p1[0].clone(), EDIT.to_owned()]);
    assert_eq!(decisions(dir.path()), [d("P0", "kept"), d("P1", "kept"), d("P0", "undo"), d("P0", "kept")]);
}

// --- Kills during a mid-file removal ---------------------------------------------------------

/// Where the child is killed, and what the next start finds: the intent recorded and the file
/// untouched; the rest written beside the file, not yet renamed; renamed, its end not recorded.
const POINTS: [&str; 3] = ["undo-intent", "rewrite-written", "undo-truncated"];

/// Not a test of its own: the child process of the kill test (it does nothing unless that test
/// started it). Three kept probes, then the first reopened; it freezes at the armed failpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_child() {
    let Ok(root) = std::env::var("LEM_TUI_KILL_DIR") else { return };
    let dir = tempfile::tempdir_in(root).expect("dir");
    let path = dir.path().to_owned();
    let mut h = Harness::start(&Setup { probes: 3, ..Setup::new(ReviewMode) }, plain, dir);
    for p in 0..3 {
        h.until("in review", reviewing(p)).await;
        h.send(accept(p, 0)).await;
        h.until("decided", decided(p)).await;
    }
    eprintln!("child dir {}", path.display());
    h.send(Control::Reopen { probe: 0 }).await;
    h.until("never: the failpoint freezes the store's thread", |_| false).await;
}

#[test]
fn a_kill_during_a_mid_file_removal_is_finished_at_the_next_start() {
    let _deadline = common::deadline(Duration::from_secs(600));
    for point in POINTS {
        let root = tmp();
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "kill_child", "--nocapture", "--test-threads", "1"])
            .env("LEM_TUI_KILL_DIR", root.path())
            .env("LEM_TUI_FAILPOINT", point)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("child");
        let _watch = common::watch_child(format!("child at {point}"), &child, None);
        let mut dir = None;
        for l in BufReader::new(child.stderr.take().expect("stderr")).lines() {
            let l = l.expect("stderr line");
            if let Some(d) = l.strip_prefix("child dir ") {
                dir = Some(std::path::PathBuf::from(d));
            }
            if l == format!("failpoint {point} reached") {
                break;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let dir = dir.unwrap_or_else(|| panic!("{point}: the child never reached the reopen"));
        let l = |p: usize| line(&prompt(p), &answer(&prompt(p), 0));
        let before = file(&dir);
        match point {
            "undo-intent" | "rewrite-written" => assert_eq!(before, [l(0), l(1), l(2)].concat(), "{point}"),
            _ => assert_eq!(before, [l(1), l(2)].concat(), "{point}"),
        }
        assert_eq!(removals(&dir), [(0, len(&l(0)), None)], "{point}: an intent without an end");

        let (_, starts, report) = Opened::open(&db(&dir), &dir.join("lesson.jsonl"))
            .expect("store")
            .begin(&spec(&dir), &probes(3), &model())
            .expect("begin");
        assert_eq!(file(&dir), [l(1), l(2)].concat(), "{point}: the removal finished, byte for byte");
        assert_eq!(removals(&dir), [(0, len(&l(0)), Some("removed".into()))], "{point}");
        assert_eq!((report.undone, report.undo_rolled_back, report.written), (1, 0, 0), "{point}: {report}");
        assert!(matches!(starts[0], ProbeStart::Review(ref c) if c.len() == 2), "{point}: P0 is undecided again");
        assert!(matches!(starts[1..], [ProbeStart::Done(_), ProbeStart::Done(_)]), "{point}");
        assert!(!dir.join(".lesson.jsonl.lem-tui-rewrite").exists(), "{point}: no leftover beside the file");
    }
}
