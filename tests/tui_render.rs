//! The workbench's screens, drawn by the pure renderer into ratatui's `TestBackend` and
//! compared with the committed snapshots (tests/snapshots/). States are built the way the app
//! builds them: engine events and commands through `update`.
//!
//! A changed screen fails the test; review the `.snap.new` file and, if it is right, run
//! once with `INSTA_UPDATE=always` (or `cargo insta accept`).

use std::time::Duration;

use lem_tui::app::{Action, Command, RunInfo, State, update};
use lem_tui::backend::memory::{GIB, MIB};
use lem_tui::backend::{Limits, MemorySnapshot, Metrics};
use lem_tui::distill::{Candidate, CurationMode, Decider, Decision, EngineEvent, Outcome};
use lem_tui::probes::Probe;
use lem_tui::scorer::{DeltaScore, GrammarScore};
use lem_tui::theme::{Role, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const ANSWER: &str = "Paris is the capital of France. It became the capital because of its central position \
in the kingdom, the river Seine that carried trade, and the kings who chose to live there.\n\nOver the \
centuries the city grew into the seat of government, learning and culture.";

fn probes() -> Vec<Probe> {
    let p = |id: &str, domain: &str| Probe {
        id: id.into(),
        domain: Some(domain.into()),
        prompt: format!("prompt {id}"),
        source: "demo.json".into(),
    };
    vec![
        p("P01_CAPITAL", "Geography"),
        p("P02_SILENCE", "Edge"),
        p("P03_ESCAPE", "Code"),
        p("P04_ETHICS", "Philosophy"),
        p("P05_POEM", "Creative"),
    ]
}

fn cand(run: u32, composite: f64, text: &str) -> Candidate {
    Candidate {
        run,
        text: text.into(),
        outcome: Outcome::Scored {
            grammar: GrammarScore {
                vocab_richness: 0.61,
                tense_entropy: 1.2,
                question_ratio: 0.0,
                domain_depth: 2,
                verb_diversity: 9,
                noun_diversity: 14,
                composite,
            },
            delta: DeltaScore {
                input_composite: 20.5,
                output_composite: composite,
                uplift: composite - 20.5,
                echo: 0.31,
                enrichment: 6.2,
                sycophantic: run == 2,
            },
        },
        metrics: Metrics {
            prompt_tokens: 34,
            generated_tokens: 58,
            ttft: Duration::from_millis(120),
            prefill_tok_s: 900.0,
            decode_tok_s: 141.0,
            wall: Duration::from_millis(1600),
        },
        seed: 42 + u64::from(run),
        temperature: 0.8,
        derived_from: None,
    }
}

fn memory() -> MemorySnapshot {
    MemorySnapshot {
        source: "llama.cpp".into(),
        rss: 412 * MIB,
        model_bytes: 98 * MIB,
        kv_bytes: 12 * MIB,
        system_used: 9 * GIB,
        system_total: 24 * GIB,
        swap_used: 0,
        swap_total: 0,
        limits: Limits::from_gb(8, 16),
        ..MemorySnapshot::default()
    }
}

struct Run {
    s: State,
    t: Duration,
}

impl Run {
    fn new(mode: CurationMode, width: u16, height: u16) -> Self {
        let info = RunInfo {
            backend: "llama.cpp".into(),
            model: "smollm2-135m-instruct".into(),
            output: "training/lesson-0.jsonl".into(),
            gate: 40.0,
        };
        let settings = State::initial_settings(mode, 3, 0.8, Limits::from_gb(8, 16));
        let mut s = State::new(info, &probes(), settings);
        update(&mut s, Action::Resize { width, height });
        Self { s, t: Duration::ZERO }
    }

    fn ev(&mut self, event: EngineEvent) -> &mut Self {
        self.t += Duration::from_millis(7);
        update(&mut self.s, Action::Engine { event, at: self.t });
        self
    }

    fn cmd(&mut self, c: Command) -> &mut Self {
        update(&mut self.s, Action::Command(c));
        self
    }

    /// Two probes decided, the third generating: candidate 1 done, candidate 2 mid-stream.
    fn mid_run(mode: CurationMode, width: u16, height: u16) -> Self {
        let mut r = Self::new(mode, width, height);
        update(&mut r.s, Action::Memory { snapshot: memory(), at: Duration::ZERO });
        r.ev(EngineEvent::ProbeStarted { probe: 0, runs: (0..3).collect() });
        for (i, c) in [cand(0, 52.1, ANSWER), cand(1, 47.0, "Short."), cand(2, 38.9, "Paris.")].into_iter().enumerate()
        {
            let _ = i;
            r.ev(EngineEvent::CandidateDone { probe: 0, candidate: c });
        }
        r.ev(EngineEvent::ProbeDecided {
            probe: 0,
            decision: Decision::Kept { run: 0, by: Decider::Gate },
            best: None,
        });
        r.ev(EngineEvent::ProbeStarted { probe: 1, runs: (0..3).collect() });
        r.ev(EngineEvent::ProbeDecided {
            probe: 1,
            decision: Decision::Skipped { best: 12.0, by: Decider::Gate },
            best: None,
        });
        r.ev(EngineEvent::ProbeStarted { probe: 2, runs: (0..3).collect() });
        r.ev(EngineEvent::Prefilled { probe: 2, prompt_tokens: 40, elapsed: Duration::from_millis(50) });
        for (i, w) in ANSWER.split_inclusive(' ').enumerate() {
            // ~140 tok/s, spread over a few seconds so the sparkline has a shape.
            r.t += Duration::from_millis(40 + (i as u64 % 5) * 10);
            let run = u32::from(i >= 30);
            update(&mut r.s, Action::Engine { event: EngineEvent::Token { probe: 2, run, text: w.into() }, at: r.t });
            if i == 29 {
                r.ev(EngineEvent::CandidateDone { probe: 2, candidate: cand(0, 44.4, &ANSWER[..150]) });
            }
        }
        update(&mut r.s, Action::Memory { snapshot: memory(), at: r.t + Duration::from_millis(600) });
        r
    }

    fn review(width: u16, height: u16) -> Self {
        let mut r = Self::mid_run(CurationMode::Review, width, height);
        let candidates = vec![cand(0, 44.4, &ANSWER[..150]), cand(1, 55.3, ANSWER), cand(2, 31.0, "Paris, obviously.")];
        r.ev(EngineEvent::CandidateDone { probe: 2, candidate: candidates[1].clone() });
        r.ev(EngineEvent::CandidateDone { probe: 2, candidate: candidates[2].clone() });
        r.ev(EngineEvent::AwaitingReview { probe: 2, candidates, best: Some(1), gate: 40.0 });
        r
    }
}

fn draw(s: &State, theme: &Theme, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    term.draw(|f| lem_tui::ui::render(s, theme, f)).expect("draws");
    term
}

fn snap(name: &str, s: &State, width: u16, height: u16) {
    let term = draw(s, &Theme::default_dark(), width, height);
    insta::assert_snapshot!(format!("{name}_{width}x{height}"), term.backend());
}

const SIZES: [(u16, u16); 2] = [(80, 24), (160, 48)];

#[test]
fn streaming() {
    for (w, h) in SIZES {
        snap("streaming", &Run::mid_run(CurationMode::Auto, w, h).s, w, h);
    }
}

#[test]
fn awaiting_review_with_the_best_highlighted() {
    for (w, h) in SIZES {
        let r = Run::review(w, h);
        snap("review", &r.s, w, h);
        let term = draw(&r.s, &Theme::default_dark(), w, h);
        let buf = term.backend().buffer();
        let theme = Theme::default_dark();
        let star = buf.content().iter().position(|c| c.symbol() == "★").expect("the best is starred");
        assert_eq!(buf.content()[star].fg, theme.style(Role::Selected).fg.unwrap_or_default(), "best is selected");
    }
}

#[test]
fn help_overlay() {
    for (w, h) in SIZES {
        let mut r = Run::review(w, h);
        r.cmd(Command::Help);
        snap("help", &r.s, w, h);
    }
}

#[test]
fn limits_form_with_a_validation_error() {
    for (w, h) in SIZES {
        let mut r = Run::review(w, h);
        r.cmd(Command::Limits);
        update(&mut r.s, Action::Backspace);
        update(&mut r.s, Action::Backspace);
        for c in "4..".chars() {
            update(&mut r.s, Action::Char(c));
        }
        r.cmd(Command::Open);
        snap("limits", &r.s, w, h);
    }
}

#[test]
fn confirmations() {
    let (w, h) = SIZES[0];
    let mut r = Run::mid_run(CurationMode::Review, w, h);
    r.cmd(Command::Quit);
    snap("confirm_quit", &r.s, w, h);
    let mut r = Run::review(w, h);
    r.cmd(Command::NextPane).cmd(Command::NextPane).cmd(Command::Bottom);
    r.cmd(Command::Accept);
    snap("confirm_below_gate", &r.s, w, h);
}

#[test]
fn candidate_detail() {
    for (w, h) in SIZES {
        let mut r = Run::review(w, h);
        r.cmd(Command::NextPane).cmd(Command::NextPane).cmd(Command::Open);
        snap("detail", &r.s, w, h);
    }
}

#[test]
fn filter_and_scrolled_stream() {
    let (w, h) = SIZES[0];
    let mut r = Run::mid_run(CurationMode::Review, w, h);
    for i in 0..20 {
        r.ev(EngineEvent::Token { probe: 2, run: 1, text: format!("\nmore output {i}") });
    }
    r.cmd(Command::NextPane).cmd(Command::Top).cmd(Command::Down);
    r.ev(EngineEvent::Token { probe: 2, run: 1, text: "\nnewer".into() });
    r.cmd(Command::Filter);
    for c in "p0".chars() {
        update(&mut r.s, Action::Char(c));
    }
    snap("filter_scrolled", &r.s, w, h);
}

#[test]
fn tiny_terminals_never_panic() {
    for (w, h) in [(1, 1), (10, 5), (20, 10), (39, 24), (80, 11), (40, 12), (0, 0)] {
        let mut r = Run::review(w, h);
        let _ = draw(&r.s, &Theme::default_dark(), w.max(1), h.max(1));
        for c in [Command::Help, Command::Back, Command::Limits, Command::Back, Command::Open, Command::Quit] {
            r.cmd(c);
            let _ = draw(&r.s, &Theme::default_dark(), w.max(1), h.max(1));
        }
    }
    snap("tiny", &Run::review(20, 10).s, 20, 10);
}

#[test]
fn every_bundled_theme_and_no_colour_render() {
    let r = Run::review(80, 24);
    let dark = draw(&r.s, &Theme::default_dark(), 80, 24);
    for (name, _) in lem_tui::theme::BUNDLED {
        let theme = Theme::bundled(name).expect("bundled theme loads");
        for t in [theme.clone(), theme.without_colour()] {
            let term = draw(&r.s, &t, 80, 24);
            // Same text in every theme: themes change styles, never layout.
            assert_eq!(format!("{}", term.backend()), format!("{}", dark.backend()), "{}", t.name);
        }
    }
    let plain = draw(&r.s, &Theme::default_dark().without_colour(), 80, 24);
    assert!(plain.backend().buffer().content().iter().all(|c| c.fg == ratatui::style::Color::Reset));
}

/// A refusal of the backend shows under the memory limit's field.
#[test]
fn limits_editor_shows_the_backends_refusal() {
    let (w, h) = SIZES[1];
    let mut r = Run::review(w, h);
    r.ev(EngineEvent::LimitsRefused { limits: Limits::from_gb(1, 2), reason: "the allocator says no".into() });
    r.cmd(Command::Limits);
    let term = draw(&r.s, &Theme::default_dark(), w, h);
    let text: String = term.backend().buffer().content().iter().map(|c| c.symbol()).collect();
    assert!(text.contains("the allocator says no"), "{text}");
}

/// llama.cpp offloaded to a GPU: the gauge shows the device's used memory against the limit
/// (which holds against it: `MemorySnapshot::used`), the device's size, and the model's and
/// KV's share on the device.
#[test]
fn gpu_gauge_shows_the_device_and_the_models_share() {
    let (w, h) = SIZES[1];
    let mut r = Run::mid_run(CurationMode::Review, w, h);
    let gpu = lem_tui::backend::memory::GpuMemory { used: 20 * GIB, total: 80 * GIB, model: 98 * MIB, kv: 12 * MIB };
    let snapshot = MemorySnapshot { gpu: Some(gpu), limits: Limits::from_gb(8, 24), ..memory() };
    update(&mut r.s, Action::Memory { snapshot, at: r.t + Duration::from_millis(900) });
    let rows = |r: &Run| -> Vec<String> {
        let term = draw(&r.s, &Theme::default_dark(), w, h);
        let cells = term.backend().buffer().content().to_vec();
        cells.chunks(usize::from(w)).map(|row| row.iter().map(|c| c.symbol().to_owned()).collect()).collect()
    };
    let shown = rows(&r);
    let gpu_bar = shown.iter().find(|r| r.contains("GPU ") && r.contains('█')).expect("a GPU bar");
    assert!(gpu_bar.contains("20G/16G"), "used against the limit: {gpu_bar}");
    let share = shown.iter().find(|r| r.contains("GPU model")).expect("the share line");
    assert!(share.contains("GPU model 98M KV 12M of 80G"), "{share}");
    // Without a device reading, the gauge is as before.
    update(&mut r.s, Action::Memory { snapshot: memory(), at: r.t + Duration::from_millis(1500) });
    assert!(!rows(&r).iter().any(|r| r.contains("GPU")));
}
