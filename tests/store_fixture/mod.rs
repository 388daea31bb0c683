//! A session store with every kind of decision, for the export tests: two sessions of one
//! command line (the second started with --fresh), a kernel, kept, rejected, gate-skipped,
//! operator-skipped and undone probes, and a kept response repeated across sessions.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use lem_tui::backend::{Metrics, Sampling};
use lem_tui::distill::{Candidate, Decider, Decision, Journal, Outcome};
use lem_tui::probes::Probe;
use lem_tui::scorer::{DeltaScore, GrammarScore};
use lem_tui::store::{ModelIdentity, Opened, SessionSpec};

pub const KERNEL: &str = "KERNEL";

fn cand(run: u32, text: &str, composite: f64) -> Candidate {
    Candidate {
        run,
        text: text.into(),
        outcome: Outcome::Scored {
            grammar: GrammarScore { composite, ..GrammarScore::default() },
            delta: DeltaScore::default(),
        },
        metrics: Metrics::default(),
        seed: u64::from(run),
        temperature: 0.7,
        derived_from: None,
    }
}

fn probe(id: &str, prompt: &str) -> Probe {
    Probe { id: id.into(), domain: None, prompt: prompt.into(), source: "probes.json".into() }
}

struct Step {
    probe: Probe,
    candidates: Vec<Candidate>,
    decision: Decision,
    undo_then: Option<Decision>,
}

fn step(id: &str, prompt: &str, cs: &[(&str, f64)], decision: Decision) -> Step {
    let candidates = cs.iter().enumerate().map(|(i, (t, g))| cand(i as u32, t, *g)).collect();
    Step { probe: probe(id, prompt), candidates, decision, undo_then: None }
}

fn session(db: &Path, dir: &Path, fresh: bool, steps: &[Step]) {
    let spec = SessionSpec {
        root: dir.to_owned(),
        model: "smollm2/135m".into(),
        probes: "probes.json".into(),
        output: dir.join("lesson.jsonl"),
        fresh,
        kernel: Some(KERNEL.into()),
        signature: None,
        mode: "review".into(),
        sampling: Sampling::default(),
        config: serde_json::json!({ "kernel": KERNEL }),
    };
    let probes: Vec<Probe> = steps.iter().map(|s| s.probe.clone()).collect();
    let model =
        ModelIdentity { name: "m".into(), path: "m.gguf".into(), backend: "llama.cpp".into(), ..Default::default() };
    let (mut j, _, _) = Opened::open(db, &spec.output).expect("opens").begin(&spec, &probes, &model).expect("begins");
    for (i, s) in steps.iter().enumerate() {
        for c in &s.candidates {
            j.candidate(i, &s.probe, c).expect("candidate");
        }
        let id = j.decision(i, &s.probe, &s.decision, &s.candidates).expect("decision");
        if let Some(then) = &s.undo_then {
            let undo = j.undo(id, None).expect("undo");
            j.undo_finished(undo, true).expect("undo finished");
            j.decision(i, &s.probe, then, &s.candidates).expect("decision");
        }
    }
}

const KEEP0: Decision = Decision::Kept { run: 0, by: Decider::Operator };

/// Builds the store under `dir` and returns its path.
pub fn build(dir: &Path) -> PathBuf {
    let db = dir.join("store.sqlite3");
    let mut undone = step("P6", "Count to three.", &[("One, two, three.", 55.0), ("1 2 3", 40.0)], KEEP0);
    undone.undo_then = Some(Decision::Skipped { best: 55.0, by: Decider::Operator });
    session(
        &db,
        dir,
        false,
        &[
            step(
                "P1",
                "Explain tides.",
                &[("Tides come from the moon's pull.", 60.0), ("Tides.", 10.0), ("The sea rises with the moon.", 45.0)],
                Decision::Kept { run: 0, by: Decider::Gate },
            ),
            step("P2", "Name a prime.", &[("Seven is prime.", 35.0), ("Four.", 20.0)], Decision::Rejected),
            step(
                "P3",
                "Describe rain.",
                &[("Rain is water.", 15.0)],
                Decision::Skipped { best: 15.0, by: Decider::Gate },
            ),
            step("P4", "Say hi.", &[("Hello there, friend!", 50.0)], KEEP0),
            undone,
        ],
    );
    session(
        &db,
        dir,
        true,
        &[
            step("P1", "Explain tides.", &[("Tides come from the moon's pull.", 60.0), ("Moon.", 12.0)], KEEP0),
            step("P2", "Name a prime.", &[("Two is the only even prime.", 70.0), ("Nine.", 5.0)], KEEP0),
        ],
    );
    db
}
