//! Every `Control` the engine obeys, in review and in auto mode, against a scripted backend
//! (the model is not what is under test here) and the real session store and lesson file.
//! A script holds a generation at an exact point until the test releases it, so each test
//! acts at a known moment and asserts what followed from the engine's events, the store's rows
//! and the lesson file's lines, never from the clock.
//!
//! Which test covers which control:
//!
//! | control          | review mode                                   | auto mode                                   |
//! |------------------|-----------------------------------------------|---------------------------------------------|
//! | Pause, Resume    | pause_during_a_batch_review                   | pause_during_a_batch_auto, undo_in_auto_mode |
//! | Stop             | stop_review                                   | stop_auto                                   |
//! | CancelGeneration | cancel_mid_candidate_review                   | cancel_mid_candidate_auto                   |
//! | SetMode          | review_to_auto_decides_the_probe_in_review    | auto_to_review_stops_at_the_probe           |
//! | SetRuns, SetTemperature, SetLimits | settings_mid_probe_review   | settings_mid_probe_auto                     |
//! | Review           | review_decisions_and_refusals, below_the_gate | review_in_auto_mode_is_refused, undo_in_auto_mode |
//! | Undo             | undo_a_written_line_then_more                 | undo_in_auto_mode                           |
//! | Tag, Bulk        | tag_and_bulk_in_a_generated_review_run_then_resume (and tests/curation_engine.rs) | — |
//!
//! Resume with undecided candidates (a gap in the stored runs): resume_fills_the_gap_{review,auto}.

mod engine_harness;

use std::sync::Arc;

use engine_harness::*;
use lem_tui::backend::{Backend, Limits, Metrics};
use lem_tui::distill::{Candidate, Control, CurationMode, Decider, Decision, EngineEvent, Outcome, Review};
use lem_tui::store::Opened;

use CurationMode::{Auto, Review as ReviewMode};

// --- Review ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_decisions_and_refusals() {
    let mut h = Harness::start(&Setup { probes: 3, ..Setup::new(ReviewMode) }, plain, tmp());
    h.until("P0 in review", reviewing(0)).await;
    h.send(Control::Review { probe: 1, review: Review::Skip }).await;
    h.until("a decision for the wrong probe refused", refused("P1 is not awaiting review")).await;
    h.send(Control::Review { probe: 0, review: Review::Accept { run: 9, below_gate_ok: false } }).await;
    h.until("an unknown run refused", refused("no candidate 10")).await;
    h.send(Control::Review { probe: 0, review: Review::Accept { run: 1, below_gate_ok: false } }).await;
    let ev = h.until("P0 decided", decided(0)).await;
    assert_eq!(decision_of(&ev), Decision::Kept { run: 1, by: Decider::Operator });
    assert_eq!(responses(h.dir.path()), [answer("Why are there tides?", 1)], "the accepted candidate's line");

    h.until("P1 in review", reviewing(1)).await;
    h.send(Control::Review { probe: 1, review: Review::RejectAll }).await;
    assert_eq!(decision_of(&h.until("P1 decided", decided(1)).await), Decision::Rejected);
    h.until("P2 in review", reviewing(2)).await;
    h.send(Control::Review { probe: 2, review: Review::Skip }).await;
    assert!(matches!(
        decision_of(&h.until("P2 decided", decided(2)).await),
        Decision::Skipped { by: Decider::Operator, .. }
    ));
    assert_eq!(h.lesson().len(), 1, "reject and skip write nothing");
    assert_eq!(h.decisions(), [d("P0", "kept"), d("P1", "rejected"), d("P2", "skipped")]);
    // All decided: the engine waits (an undo is still possible) until told to stop.
    h.send(Control::Stop { now: false }).await;
    let (summary, ..) = h.finish().await;
    assert_eq!((summary.kept, summary.skipped, summary.probes_done), (1, 2, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_gate_needs_a_confirmation() {
    let mut h = Harness::start(&Setup { probes: 1, min_score: 1000.0, ..Setup::new(ReviewMode) }, plain, tmp());
    h.until("P0 in review", reviewing(0)).await;
    h.send(Control::Review { probe: 0, review: Review::Accept { run: 0, below_gate_ok: false } }).await;
    h.until("an unconfirmed accept below the gate refused", refused("below the gate")).await;
    assert!(h.lesson().is_empty());
    h.send(Control::Review { probe: 0, review: Review::Accept { run: 0, below_gate_ok: true } }).await;
    assert_eq!(decision_of(&h.until("P0 kept", decided(0)).await), Decision::Kept { run: 0, by: Decider::Operator });
    assert_eq!(h.lesson().len(), 1);
    h.send(Control::Stop { now: false }).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_in_auto_mode_is_refused() {
    let mut h = Harness::start(&Setup::new(Auto), hold_first, tmp());
    h.until("P0 streams", token(0)).await;
    h.send(Control::Review { probe: 0, review: Review::Skip }).await;
    h.backend.release(2);
    h.until("the decision refused: nothing awaits review", refused("P0 is not awaiting review")).await;
    let (summary, seen, dir) = h.finish().await;
    assert_eq!(summary.kept, 2, "the gate decided both: {seen:#?}");
    assert_eq!(decisions(dir.path()), [d("P0", "kept"), d("P1", "kept")]);
    assert_eq!(lesson(dir.path()).len(), 2);
}

// --- Undo -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_a_written_line_then_more() {
    let mut h = Harness::start(&Setup::new(ReviewMode), plain, tmp());
    for p in 0..2 {
        h.until("in review", reviewing(p)).await;
        h.send(Control::Review { probe: p, review: Review::Accept { run: 0, below_gate_ok: false } }).await;
        h.until("decided", decided(p)).await;
    }
    let (a0, a1) = (answer("Why are there tides?", 0), answer("How does bread rise?", 0));
    assert_eq!(responses(h.dir.path()), [a0.clone(), a1.clone()]);

    h.send(Control::Undo).await;
    let ev = h.until("P1 undone", |e| matches!(e, EngineEvent::Undone { .. })).await;
    assert_eq!(ev, EngineEvent::Undone { probe: 1, decision: Decision::Kept { run: 0, by: Decider::Operator } });
    assert_eq!(responses(h.dir.path()), std::slice::from_ref(&a0), "the lesson file lost the undone line");
    assert_eq!(h.decisions(), [d("P0", "kept"), d("P1", "kept"), d("P1", "undo")]);

    // More after the undo: one more candidate, numbered after the two it has.
    h.until("P1 in review again", reviewing(1)).await;
    h.send(Control::Review { probe: 1, review: Review::More { n: 1 } }).await;
    let ev = h.until("P1 generating", started(1)).await;
    assert_eq!(ev, EngineEvent::ProbeStarted { probe: 1, runs: vec![2] });
    let ev = h.until("P1 in review with three", reviewing(1)).await;
    let EngineEvent::AwaitingReview { candidates, .. } = ev else { unreachable!() };
    assert_eq!(candidates.iter().map(|c| c.run).collect::<Vec<_>>(), [0, 1, 2]);
    h.send(Control::Review { probe: 1, review: Review::Accept { run: 2, below_gate_ok: false } }).await;
    h.until("P1 decided", decided(1)).await;
    let a1_2 = answer("How does bread rise?", 2);
    assert_eq!(responses(h.dir.path()), [a0.clone(), a1_2]);

    // Undo twice: both lines go; the probe in review waits behind the reopened one.
    h.send(Control::Undo).await;
    h.until("P1 undone", |e| matches!(e, EngineEvent::Undone { probe: 1, .. })).await;
    h.until("P1 in review", reviewing(1)).await;
    h.send(Control::Undo).await;
    h.until("P0 undone", |e| matches!(e, EngineEvent::Undone { probe: 0, .. })).await;
    h.until("P0 in review first", reviewing(0)).await;
    assert!(h.lesson().is_empty(), "{:?}", h.lesson());
    h.send(Control::Undo).await;
    h.until("nothing left to undo", refused("nothing to undo")).await;
    h.send(Control::Review { probe: 0, review: Review::Skip }).await;
    h.until("P0 skipped", decided(0)).await;
    h.until("then P1 in review", reviewing(1)).await;
    h.send(Control::Stop { now: false }).await;
    let (summary, _, dir) = h.finish().await;
    assert_eq!((summary.kept, summary.skipped, summary.probes_done), (0, 1, 1));
    assert!(lesson(dir.path()).is_empty());
    let c = rusqlite::Connection::open(db(dir.path())).expect("store");
    let ends: Vec<String> = c
        .prepare("SELECT how FROM lesson_removal_ends ORDER BY undo_id")
        .expect("query")
        .query_map([], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("decoded");
    assert_eq!(ends, ["removed", "removed", "removed"], "each undo's cut is recorded as done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_in_auto_mode() {
    let mut h = Harness::start(&Setup::new(Auto), hold_first, tmp());
    h.until("P0 streams", token(0)).await;
    h.send(Control::Pause).await;
    h.until("paused", |e| matches!(e, EngineEvent::Settings(s) if s.paused)).await;
    h.backend.release(2);
    let ev = h.until("P0 decided by the gate", decided(0)).await;
    assert!(matches!(decision_of(&ev), Decision::Kept { by: Decider::Gate, .. }), "{ev:?}");
    assert_eq!(h.lesson().len(), 1);
    h.send(Control::Undo).await;
    h.until("P0 undone", |e| matches!(e, EngineEvent::Undone { probe: 0, .. })).await;
    assert!(h.lesson().is_empty(), "the gate's line is gone");
    h.send(Control::Resume).await;
    // The operator took the probe in hand: it awaits review even in auto mode.
    h.until("P0 in review", reviewing(0)).await;
    h.send(Control::Review { probe: 0, review: Review::Accept { run: 1, below_gate_ok: false } }).await;
    assert_eq!(decision_of(&h.until("P0 kept", decided(0)).await), Decision::Kept { run: 1, by: Decider::Operator });
    let ev = h.until("P1 decided by the gate", decided(1)).await;
    assert!(matches!(decision_of(&ev), Decision::Kept { by: Decider::Gate, .. }));
    let (summary, seen, dir) = h.finish().await;
    assert!(seen.contains(&EngineEvent::Unpaused));
    assert_eq!(summary.kept, 2);
    assert_eq!(responses(dir.path())[0], answer("Why are there tides?", 1));
    assert_eq!(decisions(dir.path()), [d("P0", "kept"), d("P0", "undo"), d("P0", "kept"), d("P1", "kept")]);
}

// --- Pause and resume -----------------------------------------------------------------------

/// A pause during a batch lets the batch finish and starts nothing new; the probe in review can
/// still be decided. `SetRuns` is a marker: once its `Settings` is seen the engine is past the
/// first probe, and had it not paused the next probe would have started before it.
async fn pause_during_a_batch(mode: CurationMode) {
    let mut h = Harness::start(&Setup::new(mode), hold_first, tmp());
    h.until("P0 streams", token(0)).await;
    h.send(Control::Pause).await;
    h.until("paused", |e| matches!(e, EngineEvent::Settings(s) if s.paused)).await;
    h.backend.release(2);
    if mode == ReviewMode {
        h.until("P0 in review while paused", reviewing(0)).await;
        h.send(Control::Review { probe: 0, review: Review::Accept { run: 0, below_gate_ok: false } }).await;
    }
    h.until("P0 decided", decided(0)).await;
    let done = h.seen.iter().filter(|e| matches!(e, EngineEvent::CandidateDone { probe: 0, .. })).count();
    assert_eq!(done, 2, "the batch ran to its end");
    h.send(Control::SetRuns(3)).await;
    h.until("the marker", |e| matches!(e, EngineEvent::Settings(s) if s.runs == 3)).await;
    assert!(h.position(started(1)).is_none(), "nothing started while paused: {:#?}", h.seen);
    h.send(Control::Resume).await;
    let ev = h.until("P1 starts after the resume", started(1)).await;
    assert_eq!(ev, EngineEvent::ProbeStarted { probe: 1, runs: vec![0, 1, 2] });
    let unpaused = h.position(|e| *e == EngineEvent::Unpaused).expect("unpaused");
    assert!(unpaused < h.position(started(1)).expect("started"));
    if mode == ReviewMode {
        h.until("P1 in review", reviewing(1)).await;
        h.send(Control::Stop { now: false }).await;
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_during_a_batch_review() {
    pause_during_a_batch(ReviewMode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_during_a_batch_auto() {
    pause_during_a_batch(Auto).await;
}

// --- Cancel ---------------------------------------------------------------------------------

async fn cancel_mid_candidate(mode: CurationMode) {
    // Sequential: the cancel must also stop the runs not yet requested.
    let setup = Setup { sequential: true, runs: 3, ..Setup::new(mode) };
    let mut h = Harness::start(&setup, hold_first, tmp());
    h.until("P0 streams", token(0)).await;
    h.send(Control::CancelGeneration).await;
    let ev = h.until("run 0 ends", |e| matches!(e, EngineEvent::CandidateDone { probe: 0, .. })).await;
    let EngineEvent::CandidateDone { candidate, .. } = ev else { unreachable!() };
    assert_eq!((candidate.run, &candidate.outcome), (0, &Outcome::Cancelled));
    assert!(candidate.text.len() < answer("Why are there tides?", 0).len(), "cut mid-candidate");
    match mode {
        Auto => {
            let ev = h.until("P0 decided", decided(0)).await;
            assert_eq!(decision_of(&ev), Decision::Skipped { best: 0.0, by: Decider::Gate });
        }
        ReviewMode => {
            let ev = h.until("P0 in review", reviewing(0)).await;
            let EngineEvent::AwaitingReview { candidates, best, .. } = ev else { unreachable!() };
            assert_eq!(candidates.len(), 1, "runs 1 and 2 were never requested");
            assert_eq!(best, None);
            h.send(Control::CancelGeneration).await;
            h.until("nothing to cancel", refused("nothing is being generated")).await;
            h.send(Control::Review { probe: 0, review: Review::More { n: 1 } }).await;
            assert_eq!(h.until("more", started(0)).await, EngineEvent::ProbeStarted { probe: 0, runs: vec![1] });
            h.until("P0 in review", reviewing(0)).await;
            h.send(Control::Review { probe: 0, review: Review::Accept { run: 1, below_gate_ok: false } }).await;
            h.until("P0 decided", decided(0)).await;
            h.until("P1 in review", reviewing(1)).await;
            h.send(Control::Stop { now: false }).await;
        }
    }
    let backend = Arc::clone(&h.backend);
    let (_, _, dir) = h.finish().await;
    let p0 = backend.requests().iter().filter(|r| prompt_of(r) == "Why are there tides?").count();
    assert_eq!(p0, if mode == Auto { 1 } else { 2 }, "runs 1 and 2 of the first batch were never requested");
    let c = rusqlite::Connection::open(db(dir.path())).expect("store");
    let cancelled: i64 =
        c.query_row("SELECT COUNT(*) FROM candidates WHERE outcome = 'cancelled'", [], |r| r.get(0)).expect("count");
    assert_eq!(cancelled, 1, "the cancelled candidate is on record");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_candidate_review() {
    cancel_mid_candidate(ReviewMode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_candidate_auto() {
    cancel_mid_candidate(Auto).await;
}

// --- Settings mid-probe ---------------------------------------------------------------------

async fn settings_mid_probe(mode: CurationMode) {
    let mut h = Harness::start(&Setup::new(mode), hold_first, tmp());
    h.until("P0 streams", token(0)).await;
    let limits = Limits { cache_bytes: 1 << 30, memory_bytes: 8 << 30 };
    h.send(Control::SetRuns(3)).await;
    h.send(Control::SetTemperature(1.25)).await;
    h.send(Control::SetLimits(limits)).await;
    h.send(Control::SetRuns(0)).await;
    h.send(Control::SetTemperature(9.0)).await;
    // The backend's answer to the limits may come before or after the refusals.
    h.seen_or_until("limits applied", |e| matches!(e, EngineEvent::Settings(s) if s.limits == limits)).await;
    h.seen_or_until("runs 0 refused", refused("runs must be 1-64, not 0")).await;
    h.seen_or_until("temperature 9 refused", refused("temperature must be 0-5")).await;
    h.backend.refuse_limits(Some("the allocator says no"));
    let tight = Limits { cache_bytes: 0, memory_bytes: 1 << 20 };
    h.send(Control::SetLimits(tight)).await;
    let ev = h.until("limits refused", |e| matches!(e, EngineEvent::LimitsRefused { .. })).await;
    assert_eq!(ev, EngineEvent::LimitsRefused { limits: tight, reason: "the allocator says no".into() });
    h.backend.release(2);
    if mode == ReviewMode {
        h.until("P0 in review", reviewing(0)).await;
        h.send(Control::Review { probe: 0, review: Review::Accept { run: 0, below_gate_ok: false } }).await;
    }
    h.until("P0 decided", decided(0)).await;
    assert_eq!(h.until("P1", started(1)).await, EngineEvent::ProbeStarted { probe: 1, runs: vec![0, 1, 2] });
    if mode == ReviewMode {
        h.until("P1 in review", reviewing(1)).await;
        h.send(Control::Stop { now: false }).await;
    }
    let backend = Arc::clone(&h.backend);
    let (_, seen, _) = h.finish().await;
    assert!(
        !seen.iter().any(|e| matches!(e, EngineEvent::Settings(s) if s.limits == tight)),
        "refused limits are never reported as applied"
    );
    let done: Vec<&Candidate> = seen
        .iter()
        .filter_map(|e| match e {
            EngineEvent::CandidateDone { candidate, .. } => Some(candidate),
            _ => None,
        })
        .collect();
    assert_eq!(done.iter().map(|c| c.temperature).collect::<Vec<_>>(), [0.7, 0.7, 1.25, 1.25, 1.25]);
    let requests = backend.requests();
    assert_eq!(requests.iter().map(|r| (r.n, r.sampling.temperature)).collect::<Vec<_>>(), [(2, 0.7), (3, 1.25)]);
    assert_eq!(backend.memory().limits, limits, "the accepted limits are the backend's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_mid_probe_review() {
    settings_mid_probe(ReviewMode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_mid_probe_auto() {
    settings_mid_probe(Auto).await;
}

// --- Mode -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_to_auto_decides_the_probe_in_review() {
    let mut h = Harness::start(&Setup::new(ReviewMode), plain, tmp());
    h.until("P0 in review", reviewing(0)).await;
    h.send(Control::SetMode(Auto)).await;
    let ev = h.until("P0 decided by the gate", decided(0)).await;
    assert!(matches!(decision_of(&ev), Decision::Kept { by: Decider::Gate, .. }));
    let ev = h.until("P1 decided by the gate", decided(1)).await;
    assert!(matches!(decision_of(&ev), Decision::Kept { by: Decider::Gate, .. }));
    let (summary, seen, _) = h.finish().await;
    assert_eq!(summary.kept, 2);
    assert_eq!(seen.iter().filter(|e| matches!(e, EngineEvent::AwaitingReview { .. })).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_to_review_stops_at_the_probe() {
    let mut h = Harness::start(&Setup::new(Auto), hold_first, tmp());
    h.until("P0 streams", token(0)).await;
    h.send(Control::SetMode(ReviewMode)).await;
    h.until("review mode", |e| matches!(e, EngineEvent::Settings(s) if s.mode == ReviewMode)).await;
    h.backend.release(2);
    h.until("P0 in review", reviewing(0)).await;
    assert!(h.position(decided(0)).is_none(), "the gate did not decide it");
    h.send(Control::Review { probe: 0, review: Review::RejectAll }).await;
    h.until("P0 rejected", decided(0)).await;
    h.until("P1 in review", reviewing(1)).await;
    h.send(Control::Stop { now: false }).await;
    let (_, _, dir) = h.finish().await;
    assert_eq!(decisions(dir.path()), [d("P0", "rejected")]);
}

// --- Stop -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_review() {
    // Stop while a probe awaits review: it stays undecided, its candidates stored.
    let mut h = Harness::start(&Setup::new(ReviewMode), plain, tmp());
    h.until("P0 in review", reviewing(0)).await;
    h.send(Control::Stop { now: false }).await;
    let (summary, _, dir) = h.finish().await;
    assert_eq!(summary.probes_done, 0);
    assert!(summary.stopped_early.is_some(), "{summary:?}");
    assert!(decisions(dir.path()).is_empty());
    // Stop now, mid-candidate, on the next start: the candidates in flight end cancelled.
    let mut h = Harness::start(&Setup::new(ReviewMode), hold_first, dir);
    let ev = h.until("resumed", |e| matches!(e, EngineEvent::Resumed { .. })).await;
    let EngineEvent::Resumed { undecided, .. } = ev else { unreachable!() };
    assert_eq!(undecided.iter().map(|(p, c)| (*p, c.len())).collect::<Vec<_>>(), [(0, 2)]);
    h.until("P0 in review (nothing to generate)", reviewing(0)).await;
    h.send(Control::Review { probe: 0, review: Review::Skip }).await;
    h.until("P1 streams", token(1)).await;
    h.send(Control::Stop { now: true }).await;
    let (summary, seen, dir) = h.finish().await;
    let p1: Vec<&Outcome> = seen
        .iter()
        .filter_map(|e| match e {
            EngineEvent::CandidateDone { probe: 1, candidate } => Some(&candidate.outcome),
            _ => None,
        })
        .collect();
    assert_eq!(p1, [&Outcome::Cancelled, &Outcome::Cancelled]);
    assert!(summary.stopped_early.is_some());
    assert_eq!(decisions(dir.path()), [d("P0", "skipped")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_auto() {
    // Stop after the probe in progress: it is decided and written, the next is not started.
    let mut h = Harness::start(&Setup { probes: 3, ..Setup::new(Auto) }, hold_first, tmp());
    h.until("P0 streams", token(0)).await;
    h.send(Control::Stop { now: false }).await;
    h.backend.release(2);
    let (summary, seen, dir) = h.finish().await;
    assert_eq!(summary.probes_done, 1);
    assert_eq!(summary.stopped_early.as_deref(), Some("stopped with 2 probe(s) left"));
    assert!(!seen.iter().any(started(1)));
    assert_eq!(lesson(dir.path()).len(), 1);
    // Stop now on the next start, mid-candidate: nothing of P1 is decided or written.
    let mut h = Harness::start(&Setup { probes: 3, ..Setup::new(Auto) }, hold_first, dir);
    h.until("P1 streams", token(1)).await;
    h.send(Control::Stop { now: true }).await;
    let (summary, _, dir) = h.finish().await;
    assert_eq!(summary.probes_done, 1, "P0 from before; P1 cancelled");
    assert_eq!(decisions(dir.path()), [d("P0", "kept")]);
    assert_eq!(lesson(dir.path()).len(), 1);
}

// --- Resume ---------------------------------------------------------------------------------

/// A kill left P0 with runs 0 and 2 stored (run 1 was in flight). The engine reports them on
/// resume, generates exactly runs 1 and 3 (the gap first, with the seed run 1 had), and
/// decides with all four.
async fn resume_fills_the_gap(mode: CurationMode) {
    let dir = tmp();
    let probes = probes(2);
    {
        let (mut j, _, _) = Opened::open(&db(dir.path()), &dir.path().join("lesson.jsonl"))
            .expect("store")
            .begin(&spec(dir.path()), &probes, &model())
            .expect("begin");
        use lem_tui::distill::Journal;
        for run in [0u32, 2] {
            let c = Candidate {
                run,
                text: answer(&probes[0].prompt, u64::from(run)),
                outcome: Outcome::TooShort,
                metrics: Metrics::default(),
                seed: SEED + u64::from(run),
                temperature: 0.7,
                derived_from: None,
            };
            j.candidate(0, &probes[0], &c).expect("stored");
        }
    }
    let mut h = Harness::start(&Setup { runs: 4, ..Setup::new(mode) }, plain, dir);
    let ev = h.until("resumed", |e| matches!(e, EngineEvent::Resumed { .. })).await;
    let EngineEvent::Resumed { done, undecided } = ev else { unreachable!() };
    assert!(done.is_empty());
    assert_eq!(
        undecided.iter().map(|(p, c)| (*p, c.iter().map(|c| c.run).collect())).collect::<Vec<(usize, Vec<u32>)>>(),
        [(0, vec![0, 2])]
    );
    assert_eq!(h.until("P0 generates", started(0)).await, EngineEvent::ProbeStarted { probe: 0, runs: vec![1, 3] });
    let runs_streamed: std::collections::BTreeSet<u32> = {
        h.until("P0 done", |e| matches!(e, EngineEvent::CandidateDone { probe: 0, candidate } if candidate.run == 3))
            .await;
        h.seen
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Token { probe: 0, run, .. } => Some(*run),
                _ => None,
            })
            .collect()
    };
    assert_eq!(runs_streamed.into_iter().collect::<Vec<_>>(), [1, 3], "tokens carry the engine's run numbers");
    let seeds: Vec<u64> = h.backend.requests().iter().map(|r| r.sampling.seed).collect();
    assert_eq!(seeds, [SEED + 1, SEED + 3], "the gap is generated with its own seed");
    match mode {
        ReviewMode => {
            let ev = h.until("P0 in review", reviewing(0)).await;
            let EngineEvent::AwaitingReview { candidates, .. } = ev else { unreachable!() };
            assert_eq!(candidates.iter().map(|c| c.run).collect::<Vec<_>>(), [0, 1, 2, 3]);
            h.send(Control::Review { probe: 0, review: Review::Accept { run: 3, below_gate_ok: false } }).await;
            h.until("P0 decided", decided(0)).await;
            h.until("P1 in review", reviewing(1)).await;
            h.send(Control::Stop { now: false }).await;
        }
        Auto => {
            h.until("P0 decided", decided(0)).await;
        }
    }
    let (_, _, dir) = h.finish().await;
    assert_eq!(decisions(dir.path())[0], d("P0", "kept"));
    let kept = &responses(dir.path())[0];
    assert!(kept == &answer(&probes[0].prompt, 1) || kept == &answer(&probes[0].prompt, 3), "{kept}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_fills_the_gap_review() {
    resume_fills_the_gap(ReviewMode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_fills_the_gap_auto() {
    resume_fills_the_gap(Auto).await;
}

// --- Tag, Bulk ------------------------------------------------------------------------------

fn bulk_done(e: &EngineEvent) -> bool {
    matches!(e, EngineEvent::BulkProgress { done, total, .. } if done == total)
}

/// (probe id, tags JSON, note, kind of the decision tagged) of every tag row, in order.
fn tag_rows(dir: &std::path::Path) -> Vec<(String, String, Option<String>, Option<String>)> {
    let c = rusqlite::Connection::open(db(dir)).expect("store");
    let mut st = c
        .prepare(
            "SELECT p.probe_id, t.tags, t.note, d.kind FROM decision_tags t JOIN probes p ON p.id = t.probe_row
             LEFT JOIN decisions d ON d.id = t.decision_id ORDER BY t.id",
        )
        .expect("query");
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("decoded")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_and_bulk_in_a_generated_review_run_then_resume() {
    use lem_tui::distill::{BulkAction, Tagging};
    let mut h = Harness::start(&Setup { probes: 3, ..Setup::new(ReviewMode) }, plain, tmp());
    h.until("P0 in review", reviewing(0)).await;
    // A bulk accept over all three: only P0 has candidates; P1 and P2 are not generated yet and
    // stay open (the engine generates them next, as usual).
    h.send(Control::Bulk { probes: vec![0, 1, 2], action: BulkAction::Accept }).await;
    let kept = decision_of(&h.until("P0 decided", decided(0)).await);
    let Decision::Kept { run, by: Decider::Operator } = kept else { panic!("{kept:?}") };
    assert_eq!(h.until("bulk done", bulk_done).await, EngineEvent::BulkProgress { done: 3, total: 3, decided: 1 });
    assert_eq!(responses(h.dir.path()), [answer("Why are there tides?", u64::from(run))]);
    h.until("P1 in review", reviewing(1)).await;
    // Tagging the decided P0 attaches the tags to its kept decision; an unknown probe is refused.
    let facts = Tagging::new(["facts", " facts ", ""], Some("  "));
    assert_eq!(facts, Tagging { tags: vec!["facts".into()], note: None }, "tags trimmed and deduplicated");
    h.send(Control::Tag { probe: 0, tagging: facts.clone() }).await;
    assert_eq!(
        h.until("P0 tagged", |e| matches!(e, EngineEvent::Tagged { .. })).await,
        EngineEvent::Tagged { tags: vec![(0, facts.clone())] }
    );
    h.send(Control::Tag { probe: 7, tagging: facts.clone() }).await;
    h.until("an unknown probe refused", refused("no probe 8 to tag")).await;
    // A bulk reject over P1 (under review) and P0 (decided: left alone).
    h.send(Control::Bulk { probes: vec![1, 0], action: BulkAction::Reject }).await;
    assert_eq!(decision_of(&h.until("P1 decided", decided(1)).await), Decision::Rejected);
    assert_eq!(h.until("bulk done", bulk_done).await, EngineEvent::BulkProgress { done: 2, total: 2, decided: 1 });
    h.until("P2 in review", reviewing(2)).await;
    h.send(Control::Stop { now: false }).await;
    let (summary, _, dir) = h.finish().await;
    assert_eq!((summary.kept, summary.skipped), (1, 1));
    assert_eq!(decisions(dir.path()), [d("P0", "kept"), d("P1", "rejected")]);
    assert_eq!(tag_rows(dir.path()), [("P0".into(), r#"["facts"]"#.into(), None, Some("kept".into()))]);

    // Resume: the tags come back before P2 is reviewed; nothing decided is decided again.
    let mut h = Harness::start(&Setup { probes: 3, ..Setup::new(ReviewMode) }, plain, dir);
    let ev = h.until("stored tags", |e| matches!(e, EngineEvent::Tagged { .. })).await;
    assert_eq!(ev, EngineEvent::Tagged { tags: vec![(0, facts)] });
    h.until("P2 in review", reviewing(2)).await;
    h.send(Control::Stop { now: false }).await;
    let (_, _, dir) = h.finish().await;
    assert_eq!(responses(dir.path()), [answer("Why are there tides?", u64::from(run))], "the file is as it was");
    assert_eq!(decisions(dir.path()), [d("P0", "kept"), d("P1", "rejected")]);
}
