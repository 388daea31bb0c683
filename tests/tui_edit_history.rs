//! The workbench's edit (`e`) and history (`H`) views: states built as `lem-tui review` builds
//! them and driven through `update` with the engine's events; screens are insta snapshots at
//! 80x24 and 160x48.

mod common;

use common::screen::screen;

use lem_tui::app::edit::EditKey;
use lem_tui::app::state::Modal;
use lem_tui::app::{Action, Command, Effect, RunInfo, State, update};
use lem_tui::backend::{Limits, Metrics};
use lem_tui::distill::{Candidate, Control, CurationMode, Decider, Decision, EngineEvent, Outcome, ProbeStart};
use lem_tui::probes::Probe;
use lem_tui::scorer::{DeltaScore, GrammarScore};
use std::time::Duration;

fn cand(run: u32, composite: f64, text: &str) -> Candidate {
    Candidate {
        run,
        text: text.into(),
        outcome: Outcome::Scored {
            grammar: GrammarScore { composite, verb_diversity: 7, noun_diversity: 11, ..GrammarScore::default() },
            delta: DeltaScore { uplift: composite / 4.0, echo: 0.2, enrichment: 2.0, ..DeltaScore::default() },
        },
        metrics: Metrics::default(),
        seed: 0,
        temperature: 0.0,
        derived_from: None,
    }
}

const ANSWER: &str = "Tides rise because the moon pulls the water.\nThe sun helps a little; spring tides come at \
                      new and full moon, when both pull in a line.";

/// Three ingested prompts, the first awaiting review.
fn state(width: u16, height: u16) -> State {
    let probes: Vec<Probe> = ["lesson.jsonl:1", "lesson.jsonl:2", "lesson.jsonl:3"]
        .iter()
        .map(|id| Probe {
            id: (*id).into(),
            domain: Some("science".into()),
            prompt: format!("prompt {id}"),
            source: "x".into(),
        })
        .collect();
    let starts = vec![
        ProbeStart::Review(vec![cand(0, 41.5, ANSWER), cand(1, 22.0, "The moon, mostly.")]),
        ProbeStart::Review(vec![cand(0, 58.2, "Dough rises as yeast makes gas.")]),
        ProbeStart::Review(vec![cand(0, 33.0, "Rivers bend where the bank is soft.")]),
    ];
    let info =
        RunInfo { backend: "none".into(), model: "dataset".into(), output: "lesson.reviewed.jsonl".into(), gate: 30.0 };
    let mut s = State::new(info, &probes, State::initial_settings(CurationMode::Review, 1, 0.0, Limits::default()));
    lem_tui::app::preload::preload(&mut s, &starts);
    update(&mut s, Action::Resize { width, height });
    engine(
        &mut s,
        EngineEvent::AwaitingReview {
            probe: 0,
            candidates: match &starts[0] {
                ProbeStart::Review(c) => c.clone(),
                _ => unreachable!(),
            },
            best: Some(0),
            gate: 30.0,
        },
    );
    s
}

fn engine(s: &mut State, event: EngineEvent) -> Vec<Effect> {
    update(s, Action::Engine { event, at: Duration::from_secs(1) })
}

fn cmd(s: &mut State, c: Command) -> Vec<Effect> {
    update(s, Action::Command(c))
}

fn keys(s: &mut State, ks: &[EditKey]) -> Vec<Effect> {
    ks.iter().flat_map(|k| update(s, Action::Edit(*k))).collect()
}

/// The inline editor on candidate 1 with its second line changed and the cursor inside it.
fn editing(w: u16, h: u16) -> State {
    let mut s = state(w, h);
    assert!(cmd(&mut s, Command::Edit).is_empty(), "no $EDITOR: edited inline");
    keys(&mut s, &[EditKey::Home, EditKey::Up]);
    keys(&mut s, &"Mostly: ".chars().map(EditKey::Char).collect::<Vec<_>>());
    s
}

#[test]
fn the_inline_editor_sends_the_edit_and_the_engine_answer_joins_the_table() {
    let mut s = editing(80, 24);
    let Some(Modal::Edit(e)) = &s.modal else { panic!("the editor is open") };
    assert_eq!(e.text, format!("Mostly: {ANSWER}"));
    let fx = keys(&mut s, &[EditKey::Save]);
    let text = format!("Mostly: {ANSWER}");
    assert_eq!(fx, [Effect::Control(Control::AddEdit { probe: 0, parent: 0, text: text.clone() })]);
    assert!(s.modal.is_none());

    let edit = Candidate { derived_from: Some(0), ..cand(2, 47.25, &text) };
    engine(&mut s, EngineEvent::EditAdded { probe: 0, candidate: edit });
    assert_eq!(s.selected_row().map(|r| r.run()), Some(2), "the edit is selected");
    let screen = screen(&s, 80, 24);
    assert!(screen.contains(" 3✎") && screen.contains("47.2"), "{screen}");
    // Accepting it sends the edit's run.
    let fx = cmd(&mut s, Command::Accept);
    assert!(matches!(&fx[..], [Effect::Control(Control::Review { probe: 0, .. })]), "{fx:?}");

    // Esc discards; an unchanged text is not sent.
    let mut s = editing(80, 24);
    assert!(keys(&mut s, &[EditKey::Cancel]).is_empty());
    assert!(s.modal.is_none());
    let mut s = state(80, 24);
    cmd(&mut s, Command::Edit);
    assert!(keys(&mut s, &[EditKey::Char('x'), EditKey::Backspace, EditKey::Save]).is_empty());
}

#[test]
fn with_an_editor_the_loop_is_asked_to_run_it() {
    let mut s = state(80, 24);
    s.editor = Some("vim".into());
    let fx = cmd(&mut s, Command::Edit);
    assert_eq!(fx, [Effect::Edit { editor: "vim".into(), probe: 0, parent: 0, text: ANSWER.into() }]);
    let fx = update(&mut s, Action::Edited { probe: 0, parent: 0, result: Ok("Short and new.".into()) });
    assert_eq!(fx, [Effect::Control(Control::AddEdit { probe: 0, parent: 0, text: "Short and new.".into() })]);
    let fx = update(&mut s, Action::Edited { probe: 0, parent: 0, result: Err("the editor `vim` exited".into()) });
    assert!(fx.is_empty());
    assert!(s.note.as_ref().is_some_and(|n| n.text.contains("exited")));
}

#[test]
fn edit_view_snapshots() {
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        insta::assert_snapshot!(format!("edit_{w}x{h}"), screen(&editing(w, h), w, h));
    }
}

/// P0 kept, P1 rejected, P2 kept by the gate: newest first in the view.
fn decided(w: u16, h: u16) -> State {
    let mut s = state(w, h);
    let edit = Candidate { derived_from: Some(0), ..cand(2, 47.25, "Mostly the moon.") };
    engine(&mut s, EngineEvent::EditAdded { probe: 0, candidate: edit.clone() });
    for (probe, decision) in [
        (0, Decision::Kept { run: 2, by: Decider::Operator }),
        (1, Decision::Rejected),
        (2, Decision::Kept { run: 0, by: Decider::Gate }),
    ] {
        engine(&mut s, EngineEvent::ProbeDecided { probe, decision, best: None });
    }
    s
}

#[test]
fn history_lists_newest_first_and_reopens_any() {
    let mut s = decided(80, 24);
    cmd(&mut s, Command::History);
    assert_eq!(s.modal, Some(Modal::History { sel: 0 }));
    let order: Vec<usize> = s.recent().map(|d| d.probe).collect();
    assert_eq!(order, [2, 1, 0]);
    cmd(&mut s, Command::Down);
    cmd(&mut s, Command::Down);
    cmd(&mut s, Command::Down); // stays on the oldest
    let fx = cmd(&mut s, Command::Open);
    assert_eq!(fx, [Effect::Control(Control::Reopen { probe: 0 })]);
    assert!(s.modal.is_none());
    assert_eq!(s.selected, 0);
    // The engine takes it back: it leaves the history until decided again, as the newest.
    engine(&mut s, EngineEvent::Undone { probe: 0, decision: Decision::Kept { run: 2, by: Decider::Operator } });
    assert_eq!(s.recent().map(|d| d.probe).collect::<Vec<_>>(), [2, 1]);
    engine(&mut s, EngineEvent::ProbeDecided { probe: 0, decision: Decision::Rejected, best: None });
    assert_eq!(s.recent().map(|d| d.probe).collect::<Vec<_>>(), [0, 2, 1]);
    // Esc closes without a change.
    cmd(&mut s, Command::History);
    assert!(cmd(&mut s, Command::Back).is_empty());
    assert!(s.modal.is_none());
}

#[test]
fn history_view_snapshots() {
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let mut s = decided(w, h);
        cmd(&mut s, Command::History);
        cmd(&mut s, Command::Down);
        insta::assert_snapshot!(format!("history_{w}x{h}"), screen(&s, w, h));
    }
}
