//! Edit and history in `lem-tui review`, in a real terminal: tmux runs the binary on a lesson
//! file; one answer is edited in `$EDITOR` (a script that checks the workbench handed the
//! terminal over, then rewrites the file), the edit is accepted, the history view reopens an
//! older decision and changes it to a rejection, and the lesson file, the SFT and the DPO
//! exports are checked line by line (the DPO pair is the edit against its original) and in
//! `datasets` / TRL's DPO columns.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::review::{
    A0, A0_EDIT, A0_WEAK, A1, P0, P1, check_consumers, export, jsonl as json_lines, plain_line as line, start,
};
use common::tmux::quote;

const P2: &str = "What is forgiveness?";
const A2: &str = "Letting go of a debt that is owed, and of the wish to collect it later.";

fn wait_file(p: &Path, secs: u64) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !p.exists() {
        assert!(Instant::now() < until, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn edit_accept_reopen_and_export_in_a_real_terminal() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let data = [line(P0, A0), line(P0, A0_WEAK), line(P1, A1), line(P2, A2)].concat();
    std::fs::write(d.join("lesson.jsonl"), data).expect("write data");
    // What the operator types in the editor; editors end a file with a newline.
    std::fs::write(d.join("edited.txt"), format!("{A0_EDIT}\n")).expect("edited text");
    let editor = d.join("editor.sh");
    std::fs::write(
        &editor,
        format!(
            "#!/bin/sh\nstty -a > {stty}\ntouch {running}\nwhile [ ! -f {go} ]; do sleep 0.05; done\n\
             [ \"$(cat \"$1\")\" = '{A0}' ] || exit 3\ncp {edited} \"$1\"\n",
            stty = quote(&d.join("stty.txt")),
            running = quote(&d.join("editor-running")),
            go = quote(&d.join("editor-go")),
            edited = quote(&d.join("edited.txt")),
        ),
    )
    .expect("editor script");
    let store = d.join("store.db");
    let tmux = start("edit", d, &store, Some(&editor));

    tmux.wait("the first prompt to await review", 60, |s| s.contains("lesson.jsonl:1 awaits review"));
    // The best (candidate 1) is selected: edit it. The editor gets the terminal: no alternate
    // screen, no raw mode, while it runs.
    tmux.keys(&["e"]);
    wait_file(&d.join("editor-running"), 30);
    assert!(!tmux.alternate_screen(), "the workbench left the alternate screen for the editor");
    let stty = std::fs::read_to_string(d.join("stty.txt")).expect("stty");
    assert!(stty.split_whitespace().any(|w| w == "icanon" || w == "echo"), "cooked mode for the editor: {stty}");
    std::fs::write(d.join("editor-go"), "").expect("go");
    let s = tmux.wait("the edit stored", 30, |s| s.contains("stored as candidate 3"));
    assert!(tmux.alternate_screen(), "the workbench took the screen back");
    assert!(s.contains(" 3✎"), "the edit is marked in the table:\n{s}");
    tmux.keys(&["a"]);
    // The note of the decision is soon replaced by the next probe's.
    tmux.wait("P1 to await review", 20, |s| s.contains("lesson.jsonl:3 awaits review"));
    assert_eq!(std::fs::read_to_string(d.join("lesson.reviewed.jsonl")).expect("reviewed"), line(P0, A0_EDIT));
    tmux.keys(&["a"]);
    tmux.wait("P2 to await review", 20, |s| s.contains("lesson.jsonl:4 awaits review"));
    tmux.keys(&["a"]);
    tmux.wait("every prompt decided", 20, |s| s.contains("all 3 probes decided"));
    assert_eq!(
        std::fs::read_to_string(d.join("lesson.reviewed.jsonl")).expect("reviewed"),
        [line(P0, A0_EDIT), line(P1, A1), line(P2, A2)].concat()
    );

    // History: newest first; the second row is P1's, an older decision than the last.
    tmux.keys(&["H"]);
    let s = tmux.wait("the history view", 10, |s| s.contains("Decisions · last 3"));
    // History rows carry a score (`g=`); the probe list may show beside the popup, so the id
    // is the row's last one.
    let ids: Vec<&str> = s
        .lines()
        .filter(|l| l.contains(" g="))
        .filter_map(|l| l.rfind("lesson.jsonl:").map(|at| l[at..].split_whitespace().next().unwrap_or("")))
        .collect();
    assert_eq!(ids, ["lesson.jsonl:4", "lesson.jsonl:3", "lesson.jsonl:1"], "newest first:\n{s}");
    assert!(s.contains("kept 3 (edit of 1)"), "{s}");
    tmux.keys(&["Down", "Enter"]);
    tmux.wait("P1 reopened", 20, |s| s.contains("lesson.jsonl:3 awaits review"));
    assert_eq!(
        std::fs::read_to_string(d.join("lesson.reviewed.jsonl")).expect("reviewed"),
        [line(P0, A0_EDIT), line(P2, A2)].concat(),
        "the middle line is out"
    );
    tmux.keys(&["x"]);
    tmux.wait("every prompt decided again", 20, |s| s.contains("all 3 probes decided"));
    tmux.keys(&["q"]);
    let s = tmux.wait("the process to exit", 60, |s| s.contains("LEMTUI-EXIT="));
    assert!(s.contains("LEMTUI-EXIT=0"), "{s}");
    // The terminal is cooked again after the editor's round trip (raw mode would staircase).
    assert!(s.lines().any(|l| l.starts_with("output: ")), "the terminal was restored:\n{s}");
    assert_eq!(
        std::fs::read_to_string(d.join("lesson.reviewed.jsonl")).expect("reviewed"),
        [line(P0, A0_EDIT), line(P2, A2)].concat()
    );

    let (sft, dpo) = (d.join("sft.jsonl"), d.join("dpo.jsonl"));
    export(&store, "sft", &sft);
    export(&store, "dpo", &dpo);
    let msg = |p: &str, a: &str| serde_json::json!({"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": a}]});
    assert_eq!(json_lines(&sft), [msg(P0, A0_EDIT), msg(P2, A2)]);
    // The edit against its original (not the weaker answer), by default; P2 has nothing to pair.
    assert_eq!(json_lines(&dpo), [serde_json::json!({"prompt": P0, "chosen": A0_EDIT, "rejected": A0})]);

    check_consumers(&sft, &dpo, &["messages"], 2, &["prompt", "chosen", "rejected"], 1);
}
