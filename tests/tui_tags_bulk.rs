//! Tags, the reject's reason and bulk actions in the workbench: the tag editor and the bulk
//! confirmation as insta snapshots at 80x24 and 160x48, and what `update` sends the engine
//! (nothing before a submit or a confirmation). The filter's `tag:` and `g<` terms and the
//! sort by tag are checked on the same ingested-looking state.

mod common;

use common::screen::screen;

use std::time::Duration;

use lem_tui::app::sort::SortKey;
use lem_tui::app::state::{Modal, Status};
use lem_tui::app::{Action, Command, Effect, RunInfo, State, update};
use lem_tui::backend::{Limits, Metrics};
use lem_tui::distill::{
    BulkAction, Candidate, Control, CurationMode, Decider, Decision, EngineEvent, Outcome, ProbeStart, Review, Tagging,
};
use lem_tui::probes::Probe;
use lem_tui::scorer::{DeltaScore, GrammarScore};

fn cand(run: u32, composite: f64, text: &str) -> Candidate {
    Candidate {
        run,
        text: text.into(),
        outcome: Outcome::Scored {
            grammar: GrammarScore { composite, ..GrammarScore::default() },
            delta: DeltaScore { uplift: composite / 4.0, echo: 0.2, enrichment: 1.0, ..DeltaScore::default() },
        },
        metrics: Metrics::default(),
        seed: 0,
        temperature: 0.0,
        derived_from: None,
    }
}

const IDS: [&str; 5] = ["lesson.jsonl:1", "lesson.jsonl:2", "lesson.jsonl:3", "lesson.jsonl:4", "lesson.jsonl:6"];
const SCORES: [f64; 5] = [31.5, 58.2, 44.0, 20.1, 12.7];

/// Five ingested prompts, the first awaiting review; two carry tags already.
fn state(width: u16, height: u16) -> State {
    let probes: Vec<Probe> = IDS
        .iter()
        .map(|id| Probe { id: (*id).into(), domain: None, prompt: format!("prompt {id}"), source: "x".into() })
        .collect();
    let starts: Vec<ProbeStart> = SCORES
        .iter()
        .map(|g| ProbeStart::Review(vec![cand(0, *g, "An answer."), cand(1, g / 2.0, "A weaker answer.")]))
        .collect();
    let info =
        RunInfo { backend: "none".into(), model: "dataset".into(), output: "lesson.reviewed.jsonl".into(), gate: 30.0 };
    let mut s = State::new(info, &probes, State::initial_settings(CurationMode::Review, 1, 0.0, Limits::default()));
    lem_tui::app::preload::preload(&mut s, &starts);
    update(&mut s, Action::Resize { width, height });
    engine(
        &mut s,
        EngineEvent::Tagged {
            tags: vec![(1, Tagging::new(["tone", "facts"], None)), (3, Tagging::new(["tone"], Some("too preachy")))],
        },
    );
    let candidates = s.probes[0].candidates.clone();
    engine(&mut s, EngineEvent::AwaitingReview { probe: 0, candidates, best: Some(0), gate: 30.0 });
    s
}

fn engine(s: &mut State, event: EngineEvent) -> Vec<Effect> {
    update(s, Action::Engine { event, at: Duration::from_secs(1) })
}

fn cmd(s: &mut State, c: Command) -> Vec<Effect> {
    update(s, Action::Command(c))
}

fn typed(s: &mut State, text: &str) {
    for c in text.chars() {
        assert!(update(s, Action::Char(c)).is_empty(), "typing sends nothing");
    }
}

fn ids(s: &State) -> Vec<&str> {
    s.visible().into_iter().map(|i| s.probes[i].id.as_str()).collect()
}

#[test]
fn the_tag_editor_picks_recent_tags_and_sends_one_control() {
    for (w, h) in [(80, 24), (160, 48)] {
        let mut s = state(w, h);
        assert!(cmd(&mut s, Command::Tag).is_empty());
        assert!(matches!(s.modal, Some(Modal::Tag(_))));
        typed(&mut s, "long");
        cmd(&mut s, Command::Down); // note
        typed(&mut s, "cites no source");
        cmd(&mut s, Command::Down);
        cmd(&mut s, Command::Down); // the picker's second recent tag
        assert!(cmd(&mut s, Command::Open).is_empty(), "Enter on the picker toggles, sends nothing");
        insta::assert_snapshot!(format!("tag_editor_{w}x{h}"), screen(&s, w, h));
        cmd(&mut s, Command::Up);
        cmd(&mut s, Command::Up); // back on the note: Enter saves
        let fx = cmd(&mut s, Command::Open);
        // The picker's order: the latest Tagged event's tags, newest first.
        let Some(Effect::Control(Control::Tag { probe: 0, tagging })) = fx.first() else { panic!("{fx:?}") };
        assert_eq!(tagging.tags.len(), 2, "{tagging:?}");
        assert_eq!(tagging.tags[0], "long");
        assert_eq!(tagging.note.as_deref(), Some("cites no source"));
        assert_eq!(s.modal, None);
    }
}

#[test]
fn a_reject_takes_an_optional_reason() {
    let mut s = state(80, 24);
    cmd(&mut s, Command::RejectWithReason);
    typed(&mut s, "off topic");
    let fx = cmd(&mut s, Command::Open);
    assert_eq!(
        fx,
        [
            Effect::Control(Control::Review { probe: 0, review: Review::RejectAll }),
            Effect::Control(Control::Tag { probe: 0, tagging: Tagging::new(Vec::<String>::new(), Some("off topic")) }),
        ]
    );
    // Without a reason it is a plain reject.
    let mut s = state(80, 24);
    cmd(&mut s, Command::RejectWithReason);
    assert_eq!(cmd(&mut s, Command::Open), [Effect::Control(Control::Review { probe: 0, review: Review::RejectAll })]);
}

#[test]
fn the_filter_takes_tags_and_scores_and_the_lists_sort_by_tag() {
    let mut s = state(160, 48);
    cmd(&mut s, Command::Filter);
    typed(&mut s, "tag:tone");
    assert_eq!(ids(&s), ["lesson.jsonl:2", "lesson.jsonl:4"]);
    for _ in 0.."tag:tone".len() {
        update(&mut s, Action::Backspace);
    }
    typed(&mut s, "g<40");
    assert_eq!(ids(&s), ["lesson.jsonl:1", "lesson.jsonl:4", "lesson.jsonl:6"]);
    typed(&mut s, " note:preachy");
    assert_eq!(ids(&s), ["lesson.jsonl:4"]);
    cmd(&mut s, Command::Back);
    assert_eq!(ids(&s).len(), 5);
    // A tag event reorders what is shown at once (the cached order is dropped).
    cmd(&mut s, Command::Filter);
    typed(&mut s, "tag:facts");
    assert_eq!(ids(&s), ["lesson.jsonl:2"]);
    engine(&mut s, EngineEvent::Tagged { tags: vec![(4, Tagging::new(["facts"], None))] });
    assert_eq!(ids(&s), ["lesson.jsonl:2", "lesson.jsonl:6"]);
    cmd(&mut s, Command::Back);

    while s.sorts.probes.key != SortKey::Tag {
        cmd(&mut s, Command::Sort);
    }
    // Alphabetically by tag set ("facts,tone" < "facts" is false: "facts" < "facts\u{1}tone"),
    // untagged last in load order.
    assert_eq!(ids(&s), ["lesson.jsonl:6", "lesson.jsonl:2", "lesson.jsonl:4", "lesson.jsonl:1", "lesson.jsonl:3"]);
    // The candidate table: the kept candidate (which carries the decision's tags) first.
    engine(
        &mut s,
        EngineEvent::ProbeDecided { probe: 0, decision: Decision::Kept { run: 1, by: Decider::Operator }, best: None },
    );
    cmd(&mut s, Command::Top);
    while s.probes[s.selected].id != "lesson.jsonl:1" {
        cmd(&mut s, Command::Down);
    }
    cmd(&mut s, Command::NextPane);
    cmd(&mut s, Command::NextPane);
    while s.sorts.candidates.key != SortKey::Tag {
        cmd(&mut s, Command::Sort);
    }
    assert_eq!(s.rows(s.selected).iter().map(lem_tui::app::state::Row::run).collect::<Vec<_>>(), [1, 0]);
}

#[test]
fn bulk_reject_through_the_filter_waits_for_the_count_confirmation() {
    for (w, h) in [(80, 24), (160, 48)] {
        let mut s = state(w, h);
        // One probe below the score is decided already: counted, left alone.
        engine(&mut s, EngineEvent::ProbeDecided { probe: 4, decision: Decision::Rejected, best: None });
        cmd(&mut s, Command::Filter);
        typed(&mut s, "g<40");
        cmd(&mut s, Command::Open);
        assert!(cmd(&mut s, Command::Bulk).is_empty());
        assert!(cmd(&mut s, Command::Reject).is_empty(), "choosing is not confirming");
        insta::assert_snapshot!(format!("bulk_confirm_{w}x{h}"), screen(&s, w, h));
        let fx = cmd(&mut s, Command::Confirm);
        assert_eq!(fx, [Effect::Control(Control::Bulk { probes: vec![0, 3, 4], action: BulkAction::Reject })]);
        // Declined: nothing is sent.
        cmd(&mut s, Command::Bulk);
        cmd(&mut s, Command::Accept);
        assert!(cmd(&mut s, Command::Back).is_empty());
        assert_eq!(s.modal, None);
        // Progress reaches the status line.
        engine(&mut s, EngineEvent::BulkProgress { done: 3, total: 3, decided: 2 });
        assert_eq!(s.note.as_ref().map(|n| n.text.as_str()), Some("bulk done: 2 of 3 probes changed"));
        assert_eq!(s.probes[4].status, Status::Rejected);
    }
}

#[test]
fn bulk_tag_asks_for_the_tags_then_the_count() {
    let mut s = state(80, 24);
    cmd(&mut s, Command::Bulk);
    cmd(&mut s, Command::Tag);
    typed(&mut s, "batch-1");
    assert!(cmd(&mut s, Command::Open).is_empty());
    assert!(matches!(s.modal, Some(Modal::ConfirmBulk(_))));
    let fx = cmd(&mut s, Command::Confirm);
    assert_eq!(
        fx,
        [Effect::Control(Control::Bulk {
            probes: vec![0, 1, 2, 3, 4],
            action: BulkAction::Tag(Tagging::new(["batch-1"], None))
        })]
    );
}
