//! The whole curation flow of issue 16 in one real terminal (tmux), on one ingested lesson file
//! with a duplicate and a malformed line: sort by composite, bulk-reject everything below a
//! score through the filter (after the count confirmation), edit one answer in `$EDITOR` and
//! accept the edit, accept another, reopen an older decision from the history and change it,
//! quit; then export SFT and DPO and check the lesson file and both exports line by line, and
//! that `datasets` and TRL's DPO columns load them.

mod common;

use std::time::Duration;

use common::review::{
    A0, A0_EDIT, A0_WEAK, A1, A2, A3, P0, P1, P2, P3, check_consumers, export, jsonl, sandwich_line as line,
    seven_line_lesson, start,
};
use common::tmux::quote;

#[test]
fn ingest_sort_bulk_edit_reopen_and_export_in_a_real_terminal() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    seven_line_lesson(d);
    let answer = |id: &str| match id {
        "lesson.jsonl:1" => (P0, A0),
        "lesson.jsonl:3" => (P1, A1),
        "lesson.jsonl:6" => (P2, A2),
        _ => (P3, A3),
    };

    // The two weakest prompts (by their best answer) are the ones the filter keeps.
    let scorer = lem_tui::scorer::Scorer::new(lem_tui::scorer::Mode::Cold);
    let g = |a: &str| scorer.score(a).composite;
    let mut best = [
        ("lesson.jsonl:1", g(A0).max(g(A0_WEAK))),
        ("lesson.jsonl:3", g(A1)),
        ("lesson.jsonl:6", g(A2)),
        ("lesson.jsonl:7", g(A3)),
    ];
    best.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(best[0].0, "lesson.jsonl:1", "the rotated-keys answer is the strongest: {best:?}");
    assert!(best[1].1 > best[2].1, "distinct scores: {best:?}");
    let cut = f64::midpoint(best[1].1, best[2].1);
    let weak = [best[2].0, best[3].0];

    // The operator's editor: replaces the answer with the corrected one.
    std::fs::write(d.join("edited.txt"), format!("{A0_EDIT}\n")).expect("edited text");
    std::fs::write(
        d.join("editor.sh"),
        format!(
            "#!/bin/sh\n[ \"$(cat \"$1\")\" = '{A0}' ] || exit 3\ncp {edited} \"$1\"\n",
            edited = quote(&d.join("edited.txt"))
        ),
    )
    .expect("editor script");
    let store = d.join("store.db");
    let tmux = start("flow", d, &store, Some(&d.join("editor.sh")));

    let s = tmux.wait("the first prompt to await review", 60, |s| s.contains("lesson.jsonl:1 awaits review"));
    assert!(s.contains("Probes 4"), "four prompts (the duplicate and the bad line left out):\n{s}");

    // Sort by composite; filter below the cut; bulk-reject the filter after its count.
    tmux.keys(&[">"]);
    tmux.wait("the sorted list", 10, |s| s.contains("composite ↓"));
    tmux.keys(&["/", &format!("g<{cut:.4}"), "Enter"]);
    let s = tmux.wait("the filter", 10, |s| s.contains("Probes 2/4"));
    for id in weak {
        assert!(s.contains(id), "{id} in the filter:\n{s}");
    }
    tmux.keys(&["B"]);
    tmux.wait("the bulk chooser", 10, |s| s.contains("2 probes: the filter"));
    tmux.keys(&["x"]);
    tmux.wait("the count confirmation", 10, |s| s.contains("Reject every candidate of 2 of the 2 probes"));
    assert_eq!(std::fs::read_to_string(d.join("lesson.reviewed.jsonl")).unwrap_or_default(), "");
    tmux.keys(&["y"]);
    tmux.wait("the bulk to finish", 30, |s| s.contains("bulk done: 2 of 2 probes changed"));

    // Edit the best answer of the probe under review and accept the edit.
    tmux.keys(&["Escape", "g", "e"]);
    let s = tmux.wait("the edit stored", 30, |s| s.contains("stored as candidate 3"));
    assert!(s.contains(" 3✎"), "the edit is marked in the table:\n{s}");
    tmux.keys(&["a"]);
    let next = format!("{} awaits review", best[1].0);
    tmux.wait("the last open prompt to await review", 20, |s| s.contains(&next));
    assert_eq!(std::fs::read_to_string(d.join("lesson.reviewed.jsonl")).expect("lesson"), line(P0, A0_EDIT));
    tmux.keys(&["a"]);
    tmux.wait("every prompt decided", 20, |s| s.contains("all 4 probes decided"));

    // History, newest first: the two accepts, then the bulk's rejections. Reopen the older of
    // those and accept its answer instead.
    tmux.keys(&["H"]);
    let s = tmux.wait("the history view", 10, |s| s.contains("Decisions · last 4"));
    let rows: Vec<&str> = s
        .lines()
        .filter_map(|l| {
            l.rfind("lesson.jsonl:")
                .map(|at| l[at..].split(|c: char| c.is_whitespace() || c == '│').next().unwrap_or(""))
        })
        .collect();
    let history: Vec<&str> = rows.iter().copied().filter(|r| !r.is_empty()).collect();
    let at = history.iter().rposition(|r| weak.contains(r)).unwrap_or_else(|| panic!("a rejection in:\n{s}"));
    let reopened = history[at];
    for _ in 0..at {
        tmux.keys(&["Down"]);
    }
    tmux.keys(&["Enter"]);
    tmux.wait("the rejection reopened", 20, |s| s.contains(&format!("{reopened} awaits review")));
    tmux.keys(&["a"]);
    tmux.wait("every prompt decided again", 20, |s| s.contains("all 4 probes decided"));
    tmux.keys(&["q"]);
    let s = tmux.wait("the process to exit", 60, |s| s.contains("LEMTUI-EXIT="));
    assert!(s.contains("LEMTUI-EXIT=0"), "{s}");
    assert!(s.contains("lesson.jsonl:5: not JSON"), "{s}");
    assert!(s.contains("lesson.jsonl:4: duplicate of lesson.jsonl:1"), "{s}");

    // The lesson file: the edit, the second accept, then the reopened probe's answer.
    let (p1, a1) = answer(best[1].0);
    let (pr, ar) = answer(reopened);
    assert_eq!(
        std::fs::read_to_string(d.join("lesson.reviewed.jsonl")).expect("lesson"),
        [line(P0, A0_EDIT), line(p1, a1), line(pr, ar)].concat()
    );

    let (sft, dpo) = (d.join("sft.jsonl"), d.join("dpo.jsonl"));
    export(&store, "sft", &sft);
    export(&store, "dpo", &dpo);
    let msg = |p: &str, a: &str| serde_json::json!({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]});
    let mut got = jsonl(&sft);
    let key = |v: &serde_json::Value| v["messages"][0]["content"].as_str().unwrap_or("").to_owned();
    got.sort_by_key(key);
    let mut want = vec![msg(P0, A0_EDIT), msg(p1, a1), msg(pr, ar)];
    want.sort_by_key(key);
    assert_eq!(got, want);
    // The edit against its original; the other prompts have one answer each, nothing to pair.
    assert_eq!(jsonl(&dpo), [serde_json::json!({"prompt": P0, "chosen": A0_EDIT, "rejected": A0})]);

    check_consumers(&sft, &dpo, &["messages"], 3, &["prompt", "chosen", "rejected"], 1);
}
