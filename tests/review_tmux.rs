//! `lem-tui review` in a real terminal: tmux runs the binary on a lesson file with two answers
//! to one prompt, a duplicate line and a malformed line. The test sorts by composite, compares
//! the two answers, accepts the best, rejects and skips the others, quits, then exports SFT and
//! DPO and checks them line by line and in `datasets` / TRL's DPO columns.

mod common;

use std::time::Duration;

use common::review::{A0, A0_WEAK, A1, P0, P1, check_consumers, export, jsonl, sandwich_line as line, start};

const P2: &str = "What is forgiveness?";
const A2: &str = "Letting go of a debt that is owed.";

/// The probe list's ids, top to bottom: rows that start with a border and a status glyph.
fn probe_list(screen: &str) -> Vec<String> {
    screen
        .lines()
        .filter_map(|l| {
            let mut t = l.split_whitespace();
            let (lead, id) = (t.next()?, t.next()?);
            (lead.chars().count() == 2 && id.starts_with("lesson.jsonl:")).then(|| id.to_owned())
        })
        .collect()
}

#[test]
fn review_a_lesson_file_in_a_real_terminal_and_export_it() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let data = d.join("lesson.jsonl");
    let mut text = String::new();
    text.push_str(&line(P0, A0)); // 1
    text.push_str(&line(P0, A0_WEAK)); // 2: a second answer to the same prompt
    text.push_str(&line(P1, A1)); // 3
    text.push_str(&line(P0, A0)); // 4: duplicate of 1
    text.push_str("{\"messages\": [\n"); // 5: malformed
    text.push_str(&line(P2, A2)); // 6
    std::fs::write(&data, text).expect("write data");
    let store = d.join("store.db");
    let tmux = start("review", d, &store, None);

    let s = tmux.wait("the first prompt to await review", 60, |s| s.contains("lesson.jsonl:1 awaits review"));
    assert!(s.contains("Probes 3"), "three prompts (the duplicate and the bad line left out):\n{s}");
    // Sort the probe list by composite: P1's long answer heads it.
    tmux.keys(&[">"]);
    let s = tmux.wait("the sorted list", 10, |s| s.contains("composite ↓"));
    let scorer = lem_tui::scorer::Scorer::new(lem_tui::scorer::Mode::Cold);
    let g = |a: &str| scorer.score(a).composite;
    let mut expected =
        [("lesson.jsonl:1", g(A0).max(g(A0_WEAK))), ("lesson.jsonl:3", g(A1)), ("lesson.jsonl:6", g(A2))];
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(probe_list(&s), expected.map(|e| e.0), "sorted by composite:\n{s}");
    // Compare the two answers to P0 (the probe under review), then accept the best.
    tmux.keys(&["Tab", "Tab", "d"]);
    let s = tmux.wait("the compare view", 10, |s| s.contains("candidate 1 vs 2"));
    assert!(s.contains("words only here"), "{s}");
    tmux.keys(&["Escape", "a"]);
    let s = tmux.wait("P0 kept", 20, |s| s.contains("kept 1 ·"));
    assert!(s.contains("✓ lesson.jsonl:1"), "{s}");
    tmux.wait("P1 to await review", 20, |s| s.contains("lesson.jsonl:3 awaits review"));
    tmux.keys(&["x"]);
    tmux.wait("P2 to await review", 20, |s| s.contains("lesson.jsonl:6 awaits review"));
    tmux.keys(&["s"]);
    tmux.wait("every prompt decided", 20, |s| s.contains("all 3 probes decided"));
    tmux.keys(&["q"]);
    let s = tmux.wait("the process to exit", 60, |s| s.contains("LEMTUI-EXIT="));
    assert!(s.contains("LEMTUI-EXIT=0"), "{s}");
    // The ingest summary stays on the terminal: the bad and the duplicate line, named.
    assert!(s.contains("lesson.jsonl:5: not JSON"), "{s}");
    assert!(s.contains("lesson.jsonl:4: duplicate of lesson.jsonl:1"), "{s}");

    // The accepted answer went to the lesson file exactly as the ingested line was.
    let reviewed = std::fs::read_to_string(d.join("lesson.reviewed.jsonl")).expect("reviewed lesson");
    assert_eq!(reviewed, line(P0, A0));

    let sft = d.join("sft.jsonl");
    let dpo = d.join("dpo.jsonl");
    export(&store, "sft", &sft);
    export(&store, "dpo", &dpo);
    assert_eq!(
        jsonl(&sft),
        [serde_json::json!({"messages": [
        {"role": "user", "content": P0}, {"role": "assistant", "content": A0}]})]
    );
    assert_eq!(jsonl(&dpo), [serde_json::json!({"prompt": P0, "chosen": A0, "rejected": A0_WEAK})]);

    check_consumers(&sft, &dpo, &["messages"], 1, &["prompt", "chosen", "rejected"], 1);
}
