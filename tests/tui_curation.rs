//! The workbench on ingested data (`lem-tui review`): every probe's stored candidates shown from
//! the start, and the probe list and candidate table sorted by any column. States are built as
//! the review command builds them (preload from the resume plan) and driven through `update`;
//! screens are insta snapshots at 80x24 and 160x48.

mod common;

use common::screen::screen;

use lem_tui::app::diff::Mark;
use lem_tui::app::sort::SortKey;
use lem_tui::app::state::Modal;
use lem_tui::app::{Action, Command, RunInfo, State, update};
use lem_tui::backend::{Limits, Metrics};
use lem_tui::distill::{Candidate, CurationMode, Outcome, ProbeStart};
use lem_tui::probes::Probe;
use lem_tui::scorer::{DeltaScore, GrammarScore};
use lem_tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn cand(run: u32, composite: f64, uplift: f64, echo: f64, text: &str) -> Candidate {
    Candidate {
        run,
        text: text.into(),
        outcome: Outcome::Scored {
            grammar: GrammarScore { composite, verb_diversity: 7, noun_diversity: 11, ..GrammarScore::default() },
            delta: DeltaScore { uplift, echo, enrichment: uplift / 2.0, ..DeltaScore::default() },
        },
        metrics: Metrics::default(),
        seed: 0,
        temperature: 0.0,
        derived_from: None,
    }
}

/// Four ingested prompts; the third has a chosen and a rejected answer (a DPO line).
fn state(width: u16, height: u16) -> State {
    let probes: Vec<Probe> = ["lesson.jsonl:1", "lesson.jsonl:2", "dpo.jsonl:1", "lesson.jsonl:4"]
        .iter()
        .map(|id| Probe { id: (*id).into(), domain: None, prompt: format!("prompt {id}"), source: "x".into() })
        .collect();
    let starts = vec![
        ProbeStart::Review(vec![cand(0, 31.5, 4.0, 0.30, "A mid answer.")]),
        ProbeStart::Review(vec![cand(0, 58.2, 12.5, 0.10, "The strongest answer of the file, long and varied.")]),
        ProbeStart::Review(vec![
            cand(0, 44.0, 9.0, 0.20, "The chosen answer rotates keys often, so a stolen key opens little."),
            cand(1, 12.0, -3.0, 0.70, "The rejected answer rotates nothing."),
        ]),
        ProbeStart::Review(vec![cand(0, 20.1, 1.0, 0.55, "Weak.")]),
    ];
    let info =
        RunInfo { backend: "none".into(), model: "dataset".into(), output: "lesson.reviewed.jsonl".into(), gate: 30.0 };
    let mut s = State::new(info, &probes, State::initial_settings(CurationMode::Review, 1, 0.0, Limits::default()));
    lem_tui::app::preload::preload(&mut s, &starts);
    update(&mut s, Action::Resize { width, height });
    s
}

fn cmd(s: &mut State, c: Command) {
    update(s, Action::Command(c));
}

fn ids(s: &State) -> Vec<&str> {
    s.visible().into_iter().map(|i| s.probes[i].id.as_str()).collect()
}

#[test]
fn ingested_probes_show_their_best_score_before_review() {
    let s = state(80, 24);
    let text = screen(&s, 80, 24);
    assert!(text.contains("58.2") && text.contains("44.0"), "{text}");
}

#[test]
fn the_probe_list_sorts_by_each_column_and_back() {
    let mut s = state(80, 24);
    cmd(&mut s, Command::Sort);
    assert_eq!(s.sorts.probes.key, SortKey::Composite);
    assert_eq!(ids(&s), ["lesson.jsonl:2", "dpo.jsonl:1", "lesson.jsonl:1", "lesson.jsonl:4"]);
    cmd(&mut s, Command::SortReverse);
    assert_eq!(ids(&s), ["lesson.jsonl:4", "lesson.jsonl:1", "dpo.jsonl:1", "lesson.jsonl:2"]);
    cmd(&mut s, Command::SortReverse);
    cmd(&mut s, Command::Sort); // uplift
    cmd(&mut s, Command::Sort); // echo, highest first
    assert_eq!(s.sorts.probes.key, SortKey::Echo);
    assert_eq!(ids(&s), ["lesson.jsonl:4", "lesson.jsonl:1", "dpo.jsonl:1", "lesson.jsonl:2"]);
    // Moving down walks the sorted order.
    cmd(&mut s, Command::Top);
    cmd(&mut s, Command::Down);
    assert_eq!(s.probes[s.selected].id, "lesson.jsonl:1");
    for _ in 0..6 {
        cmd(&mut s, Command::Sort);
    }
    assert_eq!(s.sorts.probes.key, SortKey::Order);
    assert_eq!(ids(&s), ["lesson.jsonl:1", "lesson.jsonl:2", "dpo.jsonl:1", "lesson.jsonl:4"]);
}

#[test]
fn the_candidate_table_sorts_and_keeps_the_selected_candidate() {
    let mut s = state(160, 48);
    cmd(&mut s, Command::Down);
    cmd(&mut s, Command::Down); // dpo.jsonl:1
    cmd(&mut s, Command::NextPane);
    cmd(&mut s, Command::NextPane); // candidates
    let selected = s.selected_row().map(|r| r.run());
    assert_eq!(selected, Some(0), "the best is preselected");
    for _ in 0..3 {
        cmd(&mut s, Command::Sort); // composite, uplift, echo
    }
    assert_eq!(s.sorts.candidates.key, SortKey::Echo);
    let order: Vec<u32> = s.rows(s.selected).iter().map(|r| r.run()).collect();
    assert_eq!(order, [1, 0], "highest echo first");
    assert_eq!(s.selected_row().map(|r| r.run()), Some(0), "the selection follows its candidate");
    assert_eq!(s.sorts.probes.key, SortKey::Order, "the probe list is untouched");
}

#[test]
fn sorted_views_snapshots() {
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let mut s = state(w, h);
        cmd(&mut s, Command::Sort);
        insta::assert_snapshot!(format!("review_sorted_by_composite_{w}x{h}"), screen(&s, w, h));
    }
}

/// The DPO probe selected, its candidate table focused.
fn on_dpo_candidates(w: u16, h: u16) -> State {
    let mut s = state(w, h);
    cmd(&mut s, Command::Down);
    cmd(&mut s, Command::Down);
    cmd(&mut s, Command::NextPane);
    cmd(&mut s, Command::NextPane);
    s
}

#[test]
fn compare_shows_two_candidates_diffed_word_by_word() {
    let mut s = on_dpo_candidates(160, 48);
    cmd(&mut s, Command::Compare);
    let Some(Modal::Compare(c)) = &s.modal else { panic!("no compare view: {:?}", s.note) };
    assert_eq!((c.left, c.right), (0, 1));
    let same: Vec<&str> = c.diff.left.iter().filter(|(_, m)| *m == Mark::Same).map(|(w, _)| w.as_str()).collect();
    assert_eq!(same, ["The", "answer", "rotates"]);
    assert_eq!(c.diff.changed(), (9, 2));
    // Tab looks for another right-hand candidate; there is none, so it stays.
    cmd(&mut s, Command::NextPane);
    assert!(matches!(&s.modal, Some(Modal::Compare(c)) if c.right == 1));
    let text = screen(&s, 160, 48);
    assert!(
        text.contains("candidate 1 vs 2") && text.contains("composite 44.0") && text.contains("composite 12.0"),
        "{text}"
    );
    assert!(text.contains("9 words only here") && text.contains("2 words only here"), "{text}");
    // The words only one side has carry the diff roles.
    let mut term = Terminal::new(TestBackend::new(160, 48)).expect("terminal");
    let theme = Theme::default_dark();
    term.draw(|f| lem_tui::ui::render(&s, &theme, f)).expect("draws");
    let buf = term.backend().buffer();
    let style_of = |word: &str| {
        (0..buf.area.height).find_map(|y| {
            let row: Vec<String> = (0..buf.area.width).map(|x| buf[(x, y)].symbol().to_owned()).collect();
            let joined = row.concat();
            let at = joined.find(word)?;
            let col = joined[..at].chars().count();
            Some(buf[(u16::try_from(col).unwrap_or(0), y)].style())
        })
    };
    let removed = theme.style(lem_tui::theme::Role::DiffRemoved);
    let added = theme.style(lem_tui::theme::Role::DiffAdded);
    assert_eq!(style_of("chosen").map(|st| st.bg), Some(removed.bg));
    assert_eq!(style_of("nothing.").map(|st| st.bg), Some(added.bg));
    assert_ne!(style_of("rotates").map(|st| st.bg), Some(removed.bg));
    cmd(&mut s, Command::Back);
    assert!(s.modal.is_none());

    // A probe with one candidate has nothing to compare.
    let mut one = state(80, 24);
    cmd(&mut one, Command::NextPane);
    cmd(&mut one, Command::NextPane);
    cmd(&mut one, Command::Compare);
    assert!(one.modal.is_none());
    assert!(one.note.as_ref().is_some_and(|n| n.text.contains("only one scored candidate")), "{:?}", one.note);
}

#[test]
fn compare_snapshots() {
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        let mut s = on_dpo_candidates(w, h);
        cmd(&mut s, Command::Compare);
        insta::assert_snapshot!(format!("compare_{w}x{h}"), screen(&s, w, h));
    }
}

#[test]
fn every_bundled_theme_styles_the_diff() {
    for name in ["dark", "light", "high-contrast"] {
        let t = Theme::bundled(name).expect("bundled theme");
        assert_ne!(t.style(lem_tui::theme::Role::DiffAdded), t.style(lem_tui::theme::Role::DiffRemoved), "{name}");
    }
}
