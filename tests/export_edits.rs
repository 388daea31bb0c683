//! Exports of an accepted edit: the lesson line and SFT carry the edited text; DPO pairs the
//! edit (chosen) with the original it was made from (rejected) by default, where a kept
//! candidate that is not an edit still pairs with the lowest-scored other one. The DPO file
//! loads in `datasets` with TRL's columns.

mod common;

use common::OutputWithin;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lem_tui::backend::{Metrics, Sampling};
use lem_tui::distill::{Candidate, Decider, Decision, Journal, Outcome};
use lem_tui::probes::Probe;
use lem_tui::scorer::{DeltaScore, GrammarScore};
use lem_tui::store::{ModelIdentity, Opened, SessionSpec};
use serde_json::{Value, json};

fn cand(run: u32, text: &str, composite: f64, derived_from: Option<u32>) -> Candidate {
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
        derived_from,
    }
}

const ORIGINAL: &str = "Tides come from the moon's pull on the sea.";
const WEAK: &str = "Water moves.";
const EDITED: &str = "Tides come from the moon's pull on the near and far sides of the sea.";

fn build(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("store.sqlite3");
    let spec = SessionSpec {
        root: dir.to_owned(),
        model: "m".into(),
        probes: "probes.json".into(),
        output: dir.join("lesson.jsonl"),
        fresh: false,
        kernel: None,
        signature: None,
        mode: "review".into(),
        sampling: Sampling::default(),
        config: json!({}),
    };
    let probes = vec![
        Probe { id: "P".into(), domain: None, prompt: "Explain tides.".into(), source: "p".into() },
        Probe { id: "Q".into(), domain: None, prompt: "Say hi.".into(), source: "p".into() },
    ];
    let model = ModelIdentity { name: "m".into(), backend: "none".into(), ..Default::default() };
    let (mut j, _, _) = Opened::open(&db, &spec.output).expect("opens").begin(&spec, &probes, &model).expect("begins");
    let p = [cand(0, ORIGINAL, 40.0, None), cand(1, WEAK, 10.0, None), cand(2, EDITED, 45.0, Some(0))];
    for c in &p {
        j.candidate(0, &probes[0], c).expect("candidate");
    }
    j.decision(0, &probes[0], &Decision::Kept { run: 2, by: Decider::Operator }, &p).expect("decision");
    let q = [cand(0, "Hello there, friend!", 30.0, None), cand(1, "hi", 5.0, None)];
    for c in &q {
        j.candidate(1, &probes[1], c).expect("candidate");
    }
    j.decision(1, &probes[1], &Decision::Kept { run: 0, by: Decider::Operator }, &q).expect("decision");
    db
}

fn export(store: &Path, format: &str, out: &Path) -> Vec<Value> {
    export_with(store, format, out, &[])
}

fn export_with(store: &Path, format: &str, out: &Path, extra: &[&str]) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .args(["export", format])
        .args(extra)
        .arg("--store")
        .arg(store)
        .arg("--out")
        .arg(out)
        .env("LEM_TUI_LOG", store.with_extension("log"))
        .output_within(Duration::from_secs(120));
    assert!(o.status.success(), "export {format}: {}", String::from_utf8_lossy(&o.stderr));
    std::fs::read_to_string(out).expect("written").lines().map(|l| serde_json::from_str(l).expect("JSON")).collect()
}

#[test]
fn an_accepted_edit_is_exported_and_paired_with_its_original() {
    let _deadline = common::deadline(Duration::from_secs(300));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = build(dir.path());
    let msg =
        |u: &str, a: &str| json!({"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]});
    let sft = dir.path().join("sft.jsonl");
    assert_eq!(export(&db, "sft", &sft), [msg("Explain tides.", EDITED), msg("Say hi.", "Hello there, friend!")]);
    let lesson = dir.path().join("out.jsonl");
    assert_eq!(export(&db, "lesson", &lesson), [msg("Explain tides.", EDITED), msg("Say hi.", "Hello there, friend!")]);
    let dpo = dir.path().join("dpo.jsonl");
    assert_eq!(
        export(&db, "dpo", &dpo),
        [
            // The original, not the lowest-scored candidate (`WEAK`).
            json!({"prompt": "Explain tides.", "chosen": EDITED, "rejected": ORIGINAL}),
            json!({"prompt": "Say hi.", "chosen": "Hello there, friend!", "rejected": "hi"}),
        ]
    );
    // Without edit pairs the edit is paired as any kept candidate is: the lowest-scored other.
    let plain = dir.path().join("dpo-plain.jsonl");
    assert_eq!(
        export_with(&db, "dpo", &plain, &["--no-edit-pairs"]),
        [
            json!({"prompt": "Explain tides.", "chosen": EDITED, "rejected": WEAK}),
            json!({"prompt": "Say hi.", "chosen": "Hello there, friend!", "rejected": "hi"}),
        ]
    );
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("dpo-plain.jsonl.manifest.json")).expect("manifest"),
    )
    .expect("JSON");
    assert_eq!(manifest["edit_pairs"], false, "{manifest}");
    let check = r#"
import sys
from datasets import load_dataset
from trl.data_utils import is_conversational, maybe_extract_prompt
dpo = load_dataset("json", data_files=sys.argv[1], split="train")
assert dpo.column_names == ["prompt", "chosen", "rejected"] and len(dpo) == 2, dpo.column_names
row = dpo[0]
assert not is_conversational(row) and maybe_extract_prompt(row)["prompt"] == row["prompt"]
assert row["chosen"] != row["rejected"]
print("consumers ok")
"#;
    let o = Command::new("python3").args(["-c", check]).arg(&dpo).output_within(Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("consumers ok"), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
}
