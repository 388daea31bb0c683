//! `update` for every action: pure, so each test is state in, action, state and effects out.

use std::time::Duration;

use super::*;
use crate::app::state::{InputContext, Pane, RunInfo, State, Status};
use crate::backend::{Limits, MemorySnapshot, Metrics};
use crate::distill::{Candidate, Control, CurationMode, Decider, Decision, EngineEvent, Outcome, Review, Summary};
use crate::probes::Probe;
use crate::scorer::{DeltaScore, GrammarScore};

fn probe(id: &str, domain: &str) -> Probe {
    Probe { id: id.into(), domain: Some(domain.into()), prompt: format!("prompt of {id}"), source: "t.json".into() }
}

fn state(mode: CurationMode) -> State {
    let probes = [probe("P01_CAPITAL", "Geography"), probe("P02_SILENCE", "Edge"), probe("P03_CODE", "Code")];
    let info = RunInfo { backend: "llama.cpp".into(), model: "smollm2".into(), output: "out.jsonl".into(), gate: 40.0 };
    let settings = State::initial_settings(mode, 2, 0.8, Limits::from_gb(8, 16));
    let mut s = State::new(info, &probes, settings);
    update(&mut s, Action::Resize { width: 80, height: 24 });
    s
}

pub fn cand(run: u32, composite: f64, text: &str) -> Candidate {
    Candidate {
        run,
        text: text.into(),
        outcome: Outcome::Scored {
            grammar: GrammarScore { composite, verb_diversity: 3, noun_diversity: 4, ..GrammarScore::default() },
            delta: DeltaScore { uplift: 5.0, echo: 0.2, enrichment: 3.0, ..DeltaScore::default() },
        },
        metrics: Metrics { generated_tokens: 10, decode_tok_s: 120.0, ..Metrics::default() },
        seed: 42 + u64::from(run),
        temperature: 0.8,
        derived_from: None,
    }
}

fn ev(s: &mut State, event: EngineEvent) -> Vec<Effect> {
    let at = s.now + Duration::from_millis(10);
    update(s, Action::Engine { event, at })
}

fn cmd(s: &mut State, c: Command) -> Vec<Effect> {
    update(s, Action::Command(c))
}

/// Probe 0 generated two candidates (45.0 and 60.0) and awaits review.
fn reviewing() -> State {
    let mut s = state(CurationMode::Review);
    ev(&mut s, EngineEvent::ProbeStarted { probe: 0, runs: (0..2).collect() });
    let candidates = vec![cand(0, 45.0, "first answer"), cand(1, 60.0, "second, better answer")];
    ev(&mut s, EngineEvent::AwaitingReview { probe: 0, candidates, best: Some(1), gate: 40.0 });
    s
}

fn review_fx(probe: usize, review: Review) -> Vec<Effect> {
    vec![Effect::Control(Control::Review { probe, review })]
}

#[test]
fn tokens_stream_into_the_live_candidate_and_the_stream_pane() {
    let mut s = state(CurationMode::Review);
    ev(&mut s, EngineEvent::ProbeStarted { probe: 0, runs: (0..2).collect() });
    assert_eq!(s.probes[0].status, Status::Generating);
    assert_eq!(s.stream.target, Some((0, 0)));
    for w in ["Paris ", "is ", "the ", "capital."] {
        ev(&mut s, EngineEvent::Token { probe: 0, run: 0, text: w.into() });
    }
    ev(&mut s, EngineEvent::Token { probe: 0, run: 1, text: "Other".into() });
    assert_eq!(s.stream.text.text(), "Paris is the capital.");
    assert_eq!(s.live[0].tokens, 4);
    assert_eq!(s.throughput.total_tokens, 5);
    assert!(s.generating());
    ev(&mut s, EngineEvent::CandidateDone { probe: 0, candidate: cand(0, 50.0, "Paris is the capital.") });
    assert_eq!(s.rows(0).len(), 2, "one done, one still live");
    assert_eq!(s.stream.text.text(), "Paris is the capital.", "same target keeps its text");
}

#[test]
fn the_final_text_replaces_what_was_streamed_when_they_differ() {
    let mut s = state(CurationMode::Auto);
    ev(&mut s, EngineEvent::ProbeStarted { probe: 0, runs: (0..1).collect() });
    ev(&mut s, EngineEvent::Token { probe: 0, run: 0, text: "partial".into() });
    ev(&mut s, EngineEvent::CandidateDone { probe: 0, candidate: cand(0, 50.0, "the whole answer") });
    assert_eq!(s.stream.text.text(), "the whole answer");
}

#[test]
fn sequential_runs_move_the_stream_to_the_streaming_candidate() {
    let mut s = state(CurationMode::Auto);
    ev(&mut s, EngineEvent::ProbeStarted { probe: 0, runs: (0..2).collect() });
    ev(&mut s, EngineEvent::Token { probe: 0, run: 0, text: "one".into() });
    ev(&mut s, EngineEvent::CandidateDone { probe: 0, candidate: cand(0, 50.0, "one") });
    ev(&mut s, EngineEvent::Token { probe: 0, run: 1, text: "two".into() });
    assert_eq!(s.stream.target, Some((0, 1)));
    ev(&mut s, EngineEvent::Token { probe: 0, run: 1, text: " more".into() });
    assert_eq!(s.stream.text.text(), "two more");
}

#[test]
fn restarted_clears_the_stream() {
    let mut s = state(CurationMode::Auto);
    ev(&mut s, EngineEvent::ProbeStarted { probe: 0, runs: (0..1).collect() });
    ev(&mut s, EngineEvent::Token { probe: 0, run: 0, text: "garbage".into() });
    ev(&mut s, EngineEvent::Restarted { probe: 0, run: 0, reason: "endpoint failed".into() });
    assert_eq!(s.stream.text.text(), "");
    assert_eq!(s.live[0].text, "");
    assert!(s.note.as_ref().is_some_and(|n| n.text.contains("endpoint failed")));
}

#[test]
fn awaiting_review_selects_the_probe_and_its_best() {
    let s = reviewing();
    assert_eq!((s.reviewing, s.selected, s.cand), (Some(0), 0, 1));
    assert_eq!(s.probes[0].status, Status::Review);
    assert_eq!(s.stream.text.text(), "second, better answer");
}

#[test]
fn accept_sends_the_selected_candidate() {
    let mut s = reviewing();
    assert_eq!(cmd(&mut s, Command::Accept), review_fx(0, Review::Accept { run: 1, below_gate_ok: false }));
    assert!(s.decision_sent);
    assert!(cmd(&mut s, Command::Accept).is_empty(), "no second decision before the engine answers");
    ev(
        &mut s,
        EngineEvent::ProbeDecided { probe: 0, decision: Decision::Kept { run: 1, by: Decider::Operator }, best: None },
    );
    assert_eq!(s.probes[0].status, Status::Kept);
    assert_eq!((s.reviewing, s.decision_sent), (None, false));
    assert_eq!(s.counts().kept, 1);
}

#[test]
fn accept_below_the_gate_needs_confirmation() {
    let mut s = reviewing();
    s.info.gate = 50.0;
    s.focus = Pane::Candidates;
    cmd(&mut s, Command::Up);
    assert_eq!(s.cand, 0);
    assert!(cmd(&mut s, Command::Accept).is_empty());
    assert!(matches!(s.modal, Some(Modal::ConfirmAccept { run: 0, .. })));
    assert_eq!(s.input_context(), InputContext::Confirm);
    assert_eq!(cmd(&mut s, Command::Confirm), review_fx(0, Review::Accept { run: 0, below_gate_ok: true }));
    assert!(s.modal.is_none());

    let mut s = reviewing();
    s.info.gate = 50.0;
    s.cand = 0;
    cmd(&mut s, Command::Accept);
    assert!(cmd(&mut s, Command::Back).is_empty(), "declining sends nothing");
    assert!(s.modal.is_none() && !s.decision_sent);
}

#[test]
fn reject_more_skip_go_to_the_probe_under_review() {
    let mut s = reviewing();
    assert_eq!(cmd(&mut s, Command::Reject), review_fx(0, Review::RejectAll));
    let mut s = reviewing();
    assert_eq!(cmd(&mut s, Command::More), review_fx(0, Review::More { n: 2 }));
    let mut s = reviewing();
    assert_eq!(cmd(&mut s, Command::Skip), review_fx(0, Review::Skip));
}

#[test]
fn decisions_elsewhere_are_refused_locally() {
    let mut s = reviewing();
    s.focus = Pane::Probes;
    cmd(&mut s, Command::Down);
    assert_eq!(s.selected, 1);
    assert!(cmd(&mut s, Command::Accept).is_empty());
    assert!(s.note.as_ref().is_some_and(|n| n.text.contains("P01_CAPITAL is")), "{:?}", s.note);
    let mut s = state(CurationMode::Auto);
    assert!(cmd(&mut s, Command::Reject).is_empty());
    assert!(s.note.as_ref().is_some_and(|n| n.text.contains("auto mode")));
}

#[test]
fn the_last_decision_in_review_says_how_to_leave() {
    let mut s = reviewing();
    for probe in [1, 2] {
        ev(&mut s, EngineEvent::ProbeDecided { probe, decision: Decision::Rejected, best: None });
    }
    cmd(&mut s, Command::Accept);
    ev(
        &mut s,
        EngineEvent::ProbeDecided { probe: 0, decision: Decision::Kept { run: 1, by: Decider::Operator }, best: None },
    );
    assert!(s.note.as_ref().is_some_and(|n| n.text.contains("all 3 probes decided: u undoes")), "{:?}", s.note);
    assert_eq!(cmd(&mut s, Command::Quit), vec![Effect::Quit], "nothing is generating: no question");
}

#[test]
fn undo_and_undone() {
    let mut s = reviewing();
    cmd(&mut s, Command::Accept);
    ev(
        &mut s,
        EngineEvent::ProbeDecided { probe: 0, decision: Decision::Kept { run: 1, by: Decider::Operator }, best: None },
    );
    assert_eq!(cmd(&mut s, Command::Undo), vec![Effect::Control(Control::Undo)]);
    ev(&mut s, EngineEvent::Undone { probe: 0, decision: Decision::Kept { run: 1, by: Decider::Operator } });
    assert_eq!(s.probes[0].status, Status::Review);
    assert!(s.note.as_ref().is_some_and(|n| n.text.contains("lesson line was removed")));
}

#[test]
fn pause_resume_cancel_mode() {
    let mut s = state(CurationMode::Review);
    assert_eq!(cmd(&mut s, Command::Pause), vec![Effect::Control(Control::Pause)]);
    let mut paused = s.settings;
    paused.paused = true;
    ev(&mut s, EngineEvent::Settings(paused));
    assert_eq!(cmd(&mut s, Command::Pause), vec![Effect::Control(Control::Resume)]);
    assert!(cmd(&mut s, Command::Cancel).is_empty(), "nothing generating");
    ev(&mut s, EngineEvent::ProbeStarted { probe: 0, runs: (0..1).collect() });
    assert_eq!(cmd(&mut s, Command::Cancel), vec![Effect::Control(Control::CancelGeneration)]);
    assert_eq!(cmd(&mut s, Command::Mode), vec![Effect::Control(Control::SetMode(CurationMode::Auto))]);
}

#[test]
fn limits_form_validates_and_applies_changes() {
    let mut s = state(CurationMode::Review);
    cmd(&mut s, Command::Limits);
    assert_eq!(s.input_context(), InputContext::Text);
    // memory limit: 16 → 1x (bad), then 12
    update(&mut s, Action::Backspace);
    update(&mut s, Action::Backspace);
    update(&mut s, Action::Char('x'));
    update(&mut s, Action::Char('1'));
    update(&mut s, Action::Char('.'));
    update(&mut s, Action::Char('.'));
    assert!(cmd(&mut s, Command::Open).is_empty(), "1.. is not a number");
    let Some(Modal::Limits(f)) = &s.modal else { panic!("form stays open") };
    assert!(f.fields[0].error.as_ref().is_some_and(|e| e.contains("1..")));
    update(&mut s, Action::Backspace);
    update(&mut s, Action::Backspace);
    update(&mut s, Action::Char('2'));
    cmd(&mut s, Command::Down);
    cmd(&mut s, Command::Down);
    update(&mut s, Action::Backspace);
    update(&mut s, Action::Char('3'));
    let fx = cmd(&mut s, Command::Open);
    assert_eq!(
        fx,
        vec![
            Effect::Control(Control::SetLimits(Limits {
                memory_bytes: 12 * crate::backend::memory::GIB,
                cache_bytes: 8 * crate::backend::memory::GIB
            })),
            Effect::Control(Control::SetRuns(3)),
        ]
    );
    assert!(s.modal.is_none());

    cmd(&mut s, Command::Limits);
    cmd(&mut s, Command::Up);
    for _ in 0..3 {
        update(&mut s, Action::Backspace);
    }
    update(&mut s, Action::Char('7'));
    assert!(cmd(&mut s, Command::Open).is_empty(), "temperature 7 is out of range");
    let Some(Modal::Limits(f)) = &s.modal else { panic!("form stays open") };
    assert_eq!(f.focus, 3);
    update(&mut s, Action::Backspace);
    update(&mut s, Action::Char('1'));
    assert_eq!(cmd(&mut s, Command::Open), vec![Effect::Control(Control::SetTemperature(1.0))]);
    let mut s = state(CurationMode::Review);
    cmd(&mut s, Command::Limits);
    assert!(cmd(&mut s, Command::Back).is_empty());
    assert!(s.modal.is_none());
}

#[test]
fn navigation_focus_and_paging() {
    let mut s = reviewing();
    assert_eq!(s.focus, Pane::Probes);
    cmd(&mut s, Command::NextPane);
    assert_eq!(s.focus, Pane::Stream);
    cmd(&mut s, Command::PrevPane);
    cmd(&mut s, Command::PrevPane);
    assert_eq!(s.focus, Pane::Candidates);
    cmd(&mut s, Command::Top);
    assert_eq!(s.cand, 0);
    cmd(&mut s, Command::Bottom);
    assert_eq!(s.cand, 1);
    cmd(&mut s, Command::PageUp);
    assert_eq!(s.cand, 0);
    cmd(&mut s, Command::PageDown);
    assert_eq!(s.cand, 1);
    s.focus = Pane::Probes;
    cmd(&mut s, Command::Bottom);
    assert_eq!(s.selected, 2);
    assert!(!s.auto_select, "the operator moved away");
    cmd(&mut s, Command::Up);
    assert_eq!(s.selected, 1);
    cmd(&mut s, Command::Open);
    assert_eq!(s.focus, Pane::Candidates);
}

#[test]
fn stream_scrolls_and_follows() {
    let mut s = state(CurationMode::Auto);
    ev(&mut s, EngineEvent::ProbeStarted { probe: 0, runs: (0..1).collect() });
    for i in 0..60 {
        ev(&mut s, EngineEvent::Token { probe: 0, run: 0, text: format!("line {i}\n") });
    }
    s.focus = Pane::Stream;
    cmd(&mut s, Command::Up);
    assert!(!s.stream.follow);
    let top = s.stream.top;
    ev(&mut s, EngineEvent::Token { probe: 0, run: 0, text: "more\n".into() });
    assert_eq!(s.stream.top, top, "new output does not move a scrolled view");
    cmd(&mut s, Command::Top);
    assert_eq!(s.stream.top, 0);
    cmd(&mut s, Command::Bottom);
    assert!(s.stream.follow);
}

#[test]
fn open_detail_scroll_and_close() {
    let mut s = reviewing();
    let long: String = (0..200).map(|i| format!("word{i} ")).collect();
    s.probes[0].candidates[1].text = long;
    s.focus = Pane::Candidates;
    cmd(&mut s, Command::Open);
    let Some(Modal::Detail { run: 1, .. }) = &s.modal else { panic!("detail open: {:?}", s.modal) };
    cmd(&mut s, Command::PageDown);
    cmd(&mut s, Command::Down);
    let Some(Modal::Detail { top, .. }) = &s.modal else { panic!("still open") };
    assert!(*top > 1);
    update(&mut s, Action::Resize { width: 160, height: 48 });
    cmd(&mut s, Command::Back);
    assert!(s.modal.is_none());
    cmd(&mut s, Command::Open);
    assert_eq!(cmd(&mut s, Command::Accept), review_fx(0, Review::Accept { run: 1, below_gate_ok: false }));
    assert!(s.modal.is_none(), "deciding from the detail view closes it");
}

#[test]
fn filter_by_text_and_status() {
    let mut s = reviewing();
    cmd(&mut s, Command::Filter);
    for c in "code".chars() {
        update(&mut s, Action::Char(c));
    }
    assert_eq!(s.visible(), vec![2]);
    assert_eq!(s.selected, 2, "the selection moves into the filter");
    cmd(&mut s, Command::Open);
    assert!(s.modal.is_none());
    assert_eq!(s.filter, "code");
    cmd(&mut s, Command::Filter);
    for _ in 0..4 {
        update(&mut s, Action::Backspace);
    }
    for c in "review".chars() {
        update(&mut s, Action::Char(c));
    }
    assert_eq!(s.visible(), vec![0]);
    cmd(&mut s, Command::Back);
    assert!(s.filter.is_empty() && s.modal.is_none());
}

#[test]
fn help_opens_and_closes() {
    let mut s = state(CurationMode::Review);
    cmd(&mut s, Command::Help);
    assert_eq!(s.modal, Some(Modal::Help));
    cmd(&mut s, Command::Down);
    assert_eq!(s.modal, Some(Modal::Help));
    cmd(&mut s, Command::Help);
    assert!(s.modal.is_none());
}

#[test]
fn quit_confirms_only_while_generating() {
    let mut s = state(CurationMode::Review);
    assert_eq!(cmd(&mut s, Command::Quit), vec![Effect::Quit]);
    let mut s = state(CurationMode::Review);
    ev(&mut s, EngineEvent::ProbeStarted { probe: 0, runs: (0..1).collect() });
    assert!(cmd(&mut s, Command::Quit).is_empty());
    assert_eq!(s.modal, Some(Modal::ConfirmQuit));
    assert!(cmd(&mut s, Command::Back).is_empty());
    cmd(&mut s, Command::Quit);
    assert_eq!(cmd(&mut s, Command::Confirm), vec![Effect::Quit]);
    assert!(s.quitting);
}

#[test]
fn engine_news_updates_counts_notes_and_memory() {
    let mut s = state(CurationMode::Auto);
    ev(&mut s, EngineEvent::Prefilled { probe: 0, prompt_tokens: 100, elapsed: Duration::from_millis(50) });
    assert_eq!(s.throughput.prefill_tok_s, Some(2000.0));
    ev(
        &mut s,
        EngineEvent::ProbeDecided {
            probe: 1,
            decision: Decision::Skipped { best: 12.0, by: Decider::Gate },
            best: None,
        },
    );
    assert_eq!(s.probes[1].status, Status::Skipped);
    let failed = Candidate { outcome: Outcome::Failed("boom".into()), ..cand(0, 0.0, "") };
    s.probes[2].candidates.push(failed);
    ev(
        &mut s,
        EngineEvent::ProbeDecided {
            probe: 2,
            decision: Decision::Skipped { best: 0.0, by: Decider::Gate },
            best: None,
        },
    );
    assert_eq!(s.probes[2].status, Status::Failed);
    ev(&mut s, EngineEvent::Resumed { done: vec![(0, Decision::Rejected)], undecided: vec![] });
    assert_eq!(s.probes[0].status, Status::Rejected);
    ev(&mut s, EngineEvent::Refused { reason: "nothing to undo".into() });
    assert_eq!(s.note.as_ref().map(|n| n.level), Some(Level::Warn));
    ev(&mut s, EngineEvent::Paused { reason: "over the limit".into() });
    ev(&mut s, EngineEvent::Unpaused);
    assert_eq!(s.note.as_ref().map(|n| n.text.as_str()), Some("resumed"));
    let snap = MemorySnapshot { rss: 5, ..MemorySnapshot::default() };
    update(&mut s, Action::Memory { snapshot: snap.clone(), at: Duration::from_secs(3) });
    assert_eq!((s.memory.as_ref(), s.now), (Some(&snap), Duration::from_secs(3)));
    ev(&mut s, EngineEvent::Finished(Summary { kept: 0, skipped: 3, ..Summary::default() }));
    assert!(s.finished.is_some());
    assert_eq!(s.counts().done, 3);
    update(&mut s, Action::EngineExited { error: Some("disk full".into()) });
    assert!(s.engine_gone);
    assert_eq!(s.note.as_ref().map(|n| n.level), Some(Level::Error));
    assert!(cmd(&mut s, Command::Undo).is_empty(), "nothing is sent to a finished engine");
}

#[test]
fn eta_from_the_pace_so_far() {
    let mut s = state(CurationMode::Auto);
    update(
        &mut s,
        Action::Engine { event: EngineEvent::ProbeStarted { probe: 0, runs: (0..1).collect() }, at: Duration::ZERO },
    );
    let kept =
        EngineEvent::ProbeDecided { probe: 0, decision: Decision::Kept { run: 0, by: Decider::Gate }, best: None };
    update(&mut s, Action::Engine { event: kept, at: Duration::from_secs(10) });
    assert_eq!(s.eta(), Some(Duration::from_secs(20)));
    assert_eq!(s.counts().pass_rate(), Some(100.0));
}

#[test]
fn typing_outside_text_fields_does_nothing() {
    let mut s = state(CurationMode::Review);
    let before = s.clone();
    update(&mut s, Action::Char('z'));
    update(&mut s, Action::Backspace);
    assert_eq!(s, before);
}

#[test]
fn run_numbers_come_from_the_engine_and_a_resume_shows_the_stored_candidates() {
    let mut s = state(CurationMode::Review);
    // Stored runs 1 and 3 (run 2 was lost to a kill): shown as they were, gap included.
    let stored = vec![cand(0, 45.0, "one"), cand(2, 50.0, "three")];
    ev(&mut s, EngineEvent::Resumed { done: vec![(1, Decision::Rejected)], undecided: vec![(0, stored.clone())] });
    assert_eq!(s.probes[0].candidates, stored);
    assert_eq!(s.probes[0].status, Status::Queued);
    assert_eq!(s.probes[1].status, Status::Rejected);
    // The engine fills the gap, then goes past the highest: the views take its numbers.
    ev(&mut s, EngineEvent::ProbeStarted { probe: 0, runs: vec![1, 3] });
    assert_eq!(s.rows(0).iter().map(|r| r.run()).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(s.selected_row().map(|r| r.run()), Some(1), "the first new run is followed");
    ev(&mut s, EngineEvent::Token { probe: 0, run: 3, text: "x".into() });
    assert_eq!(s.live.iter().map(|l| (l.run, l.tokens)).collect::<Vec<_>>(), [(1, 0), (3, 1)]);
}

#[test]
fn more_candidates_replace_the_awaits_review_note() {
    let mut s = reviewing();
    assert!(s.note.as_ref().is_some_and(|n| n.text.contains("awaits review")));
    assert_eq!(cmd(&mut s, Command::More), review_fx(0, Review::More { n: 2 }));
    ev(&mut s, EngineEvent::ProbeStarted { probe: 0, runs: vec![2, 3] });
    let note = s.note.as_ref().map(|n| n.text.clone()).unwrap_or_default();
    assert!(!note.contains("awaits review"), "{note}");
    assert!(note.contains("generating 2 more"), "{note}");
    assert_eq!(s.reviewing, None);
}

#[test]
fn a_control_that_cannot_be_sent_is_reported_and_a_decision_can_be_made_again() {
    let mut s = reviewing();
    let fx = cmd(&mut s, Command::Skip);
    assert_eq!(fx, review_fx(0, Review::Skip));
    assert!(s.decision_sent);
    let Some(Effect::Control(control)) = fx.into_iter().next() else { unreachable!() };
    update(&mut s, Action::ControlNotSent { control, why: "the engine is busy; try again".into() });
    assert!(!s.decision_sent, "the engine never saw it");
    let note = s.note.clone().expect("a note");
    assert_eq!(note.level, Level::Error);
    assert!(note.text.contains("not sent to the engine (the engine is busy; try again)"), "{}", note.text);
    assert_eq!(cmd(&mut s, Command::Skip), review_fx(0, Review::Skip), "deciding again is possible");
}

#[test]
fn refused_limits_show_in_the_limits_editor_until_limits_apply() {
    let mut s = state(CurationMode::Auto);
    let asked = Limits::from_gb(1, 2);
    ev(&mut s, EngineEvent::LimitsRefused { limits: asked, reason: "the allocator says no".into() });
    assert_eq!(s.settings.limits, Limits::from_gb(8, 16), "the old limits still hold");
    let refused = s.limits_refused.clone().expect("kept for the editor");
    assert!(refused.contains("the allocator says no"), "{refused}");
    assert_eq!(s.note.as_ref().map(|n| n.level), Some(Level::Error));
    let mut settings = s.settings;
    settings.limits = Limits::from_gb(4, 8);
    ev(&mut s, EngineEvent::Settings(settings));
    assert_eq!(s.limits_refused, None, "applied limits clear it");
}
