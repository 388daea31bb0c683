//! Curating an ingested lesson file in a real terminal (tmux): a duplicate and a malformed line
//! in it, sort by composite, filter below a score, bulk-reject through the filter after the
//! count confirmation, tag one probe and accept it, quit, then export SFT and DPO and check the
//! files line by line, the store's rows, and that `datasets` / TRL load them with their `meta`.

mod common;

use std::time::Duration;

use common::review::{
    A0, A0_WEAK, A1, A2, A3, P0, check_consumers, export, jsonl, sandwich_line as line, seven_line_lesson, start,
};

#[test]
fn sort_filter_bulk_reject_tag_and_export_in_a_real_terminal() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    seven_line_lesson(d);

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

    let store = d.join("store.db");
    let tmux = start("curate", d, &store, None);

    let s = tmux.wait("the first prompt to await review", 60, |s| s.contains("lesson.jsonl:1 awaits review"));
    assert!(s.contains("Probes 4"), "four prompts (the duplicate and the bad line left out):\n{s}");
    tmux.keys(&[">"]);
    tmux.wait("the sorted list", 10, |s| s.contains("composite ↓"));
    // Filter below the cut: the two weakest.
    tmux.keys(&["/", &format!("g<{cut:.4}"), "Enter"]);
    let s = tmux.wait("the filter", 10, |s| s.contains("Probes 2/4"));
    for id in weak {
        assert!(s.contains(id), "{id} in the filter:\n{s}");
    }
    // Bulk reject: the chooser, then the count; nothing happens before `y`.
    tmux.keys(&["B"]);
    tmux.wait("the bulk chooser", 10, |s| s.contains("2 probes: the filter"));
    tmux.keys(&["x"]);
    let s = tmux.wait("the count confirmation", 10, |s| s.contains("Reject every candidate of 2 of the 2 probes"));
    assert!(s.contains("Bulk over 2 probes?"), "{s}");
    assert_eq!(std::fs::read_to_string(d.join("lesson.reviewed.jsonl")).unwrap_or_default(), "");
    tmux.keys(&["y"]);
    tmux.wait("the bulk to finish", 30, |s| s.contains("bulk done: 2 of 2 probes changed"));
    // Clear the filter, go to the top (the probe under review, best by composite), tag it and
    // accept it.
    tmux.keys(&["Escape", "g", "t"]);
    tmux.wait("the tag editor", 10, |s| s.contains("Tags · lesson.jsonl:1"));
    tmux.keys(&["gold", "Enter"]);
    tmux.wait("the tag shown", 10, |s| s.contains("lesson.jsonl:1#"));
    tmux.keys(&["a"]);
    let s = tmux.wait("P0 kept", 20, |s| s.contains("kept 1 ·"));
    assert!(s.contains("✓ lesson.jsonl:1"), "{s}");
    let next = format!("{} awaits review", best[1].0);
    tmux.wait("the last open prompt to await review", 20, |s| s.contains(&next));
    tmux.keys(&["q"]);
    let s = tmux.wait("the process to exit", 60, |s| s.contains("LEMTUI-EXIT="));
    assert!(s.contains("LEMTUI-EXIT=0"), "{s}");
    assert!(s.contains("lesson.jsonl:5: not JSON"), "{s}");
    assert!(s.contains("lesson.jsonl:4: duplicate of lesson.jsonl:1"), "{s}");

    assert_eq!(std::fs::read_to_string(d.join("lesson.reviewed.jsonl")).expect("lesson"), line(P0, A0));
    let db = lem_tui::store::Store::open_existing(&store).expect("store");
    let rows: Vec<(String, String)> = db
        .conn()
        .prepare("SELECT p.probe_id, d.kind FROM decisions d JOIN probes p ON p.id = d.probe_row ORDER BY d.id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut rejected: Vec<&str> = rows.iter().filter(|r| r.1 == "rejected").map(|r| r.0.as_str()).collect();
    rejected.sort_unstable();
    let mut expected = weak.to_vec();
    expected.sort_unstable();
    assert_eq!(rejected, expected, "{rows:?}");
    assert_eq!(rows.last(), Some(&("lesson.jsonl:1".to_owned(), "kept".to_owned())), "{rows:?}");
    drop(db);

    let (sft, dpo) = (d.join("sft.jsonl"), d.join("dpo.jsonl"));
    export(&store, "sft", &sft);
    export(&store, "dpo", &dpo);
    let meta = serde_json::json!({"tags": ["gold"], "note": ""});
    assert_eq!(
        jsonl(&sft),
        [serde_json::json!({"messages": [{"role": "user", "content": P0}, {"role": "assistant", "content": A0}],
            "meta": meta})]
    );
    assert_eq!(jsonl(&dpo), [serde_json::json!({"prompt": P0, "chosen": A0, "rejected": A0_WEAK, "meta": meta})]);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("sft.jsonl.manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    assert_eq!(manifest["tags"], serde_json::json!({"gold": 1}));

    check_consumers(&sft, &dpo, &["messages", "meta"], 1, &["prompt", "chosen", "rejected", "meta"], 1);
}
