//! Key to frame with 100,000 probes loaded (an ingested dataset): the pure `update` for a key
//! press plus a full `render` into ratatui's TestBackend at 160x48, for the keys an operator
//! leans on. Terminal output is left out (tests/tui_tmux.rs drives a real terminal).
//!
//! `cargo bench --bench workbench`. Target: < 50 ms per key; the peer in the same run is the
//! same keys on a 100-probe list, so the ratio shows what the data's size costs.

use std::time::{Duration, Instant};

use lem_tui::app::{Action, Command, RunInfo, State, update};
use lem_tui::backend::{Limits, Metrics};
use lem_tui::distill::{Candidate, CurationMode, Outcome, ProbeStart};
use lem_tui::probes::Probe;
use lem_tui::scorer::{DeltaScore, GrammarScore};
use lem_tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn state(n: usize) -> State {
    let probes: Vec<Probe> = (0..n)
        .map(|i| Probe {
            id: format!("lesson-100k.jsonl:{}", i + 1),
            domain: Some(["Identity", "Network", "Storage"][i % 3].into()),
            prompt: format!("prompt {i}"),
            source: "lesson-100k.jsonl".into(),
        })
        .collect();
    let starts: Vec<ProbeStart> = (0..n)
        .map(|i| {
            #[allow(clippy::cast_precision_loss)]
            let composite = (i % 97) as f64 / 2.0;
            ProbeStart::Review(vec![Candidate {
                run: 0,
                text: "An answer of a few sentences that the operator reads before deciding. ".repeat(20),
                outcome: Outcome::Scored {
                    grammar: GrammarScore { composite, ..GrammarScore::default() },
                    delta: DeltaScore { uplift: composite - 20.0, echo: 0.2, enrichment: 3.0, ..DeltaScore::default() },
                },
                metrics: Metrics::default(),
                seed: 0,
                temperature: 0.0,
                derived_from: None,
            }])
        })
        .collect();
    let info = RunInfo { backend: "none".into(), model: "dataset".into(), output: "reviewed.jsonl".into(), gate: 0.0 };
    let mut s = State::new(info, &probes, State::initial_settings(CurationMode::Review, 1, 0.0, Limits::default()));
    lem_tui::app::preload::preload(&mut s, &starts);
    update(&mut s, Action::Resize { width: 160, height: 48 });
    s
}

/// Mean and worst time of `update` + `render` over `keys`.
fn measure(s: &mut State, keys: &[Command]) -> (Duration, Duration) {
    let theme = Theme::default_dark();
    let mut term = Terminal::new(TestBackend::new(160, 48)).expect("terminal");
    let (mut total, mut worst) = (Duration::ZERO, Duration::ZERO);
    for &k in keys {
        let t = Instant::now();
        update(s, Action::Command(k));
        term.draw(|f| lem_tui::ui::render(s, &theme, f)).expect("draw");
        let d = t.elapsed();
        total += d;
        worst = worst.max(d);
    }
    (total / u32::try_from(keys.len()).unwrap_or(1), worst)
}

fn main() {
    let mut keys = Vec::new();
    for _ in 0..50 {
        keys.extend([Command::Down, Command::Down, Command::PageDown, Command::Up, Command::Bottom, Command::Top]);
    }
    let mut big = state(100_000);
    let mut small = state(100);
    let (mean, worst) = measure(&mut big, &keys);
    let (peer, peer_worst) = measure(&mut small, &keys);
    println!("key to frame, 100000 probes: mean {mean:.2?}, worst {worst:.2?} over {} keys", keys.len());
    println!(
        "peer, 100 probes: mean {peer:.2?}, worst {peer_worst:.2?}; ratio {:.1}",
        mean.as_secs_f64() / peer.as_secs_f64()
    );
    // Sorted by composite: the order of all 100,000 probes is worked out once (on the first key
    // after the sort), then read from the state's cache until the data, filter or sort change.
    update(&mut big, Action::Command(Command::Sort));
    let (sorted, sorted_worst) = measure(&mut big, &keys);
    println!("sorted by composite, 100000 probes: mean {sorted:.2?}, worst {sorted_worst:.2?}");
    let worst = worst.max(sorted_worst);
    println!("target < 50 ms: {}", if worst < Duration::from_millis(50) { "met" } else { "NOT met" });
}
