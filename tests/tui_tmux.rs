//! The workbench in a real terminal: tmux runs the real binary on the default model (SmolLM2)
//! in review mode; the test types with `send-keys` and reads the screen with `capture-pane`.
//! It watches tokens stream, accepts a candidate, changes the memory limit, rejects the next
//! probe, quits, and then checks the lesson file and the session store agree with what was
//! done on screen.
#![cfg(feature = "llama")]

mod common;

use common::OutputWithin;
use common::tmux::{Tmux, quote};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PROBES: &str = r#"[
  {"id": "T01_CAPITAL", "domain": "Geography", "prompt": "What is the capital of France, and why did it become the capital?"},
  {"id": "T02_KINDNESS", "domain": "Ethics", "prompt": "Why is kindness important? Answer in a few sentences."}
]"#;

/// "… · candidate 1 · 17 tok" in a live stream title, or "▶ generating… 17 tok" in the table.
fn live_tokens(screen: &str) -> Option<u32> {
    let at = screen.find("generating… ")?;
    screen[at + "generating… ".len()..].split_whitespace().next()?.parse().ok()
}

#[test]
fn review_session_in_a_real_terminal() {
    let _deadline = common::deadline(Duration::from_secs(600));
    common::model_path("smollm2/135m");
    let root = common::scratch_root(PROBES);
    let dir = root.path();
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    let script = dir.join("run.sh");
    std::fs::write(
        &script,
        format!(
            "cd {root}\nexport LEM_TUI_CONFIG_DIR={config} LEM_TUI_LOG={log} TERM=xterm-256color\nunset NO_COLOR\n\
             {bin} distill --probes probes.json --runs 2 --max-tokens 96 --seed 7 --threads 2 --min-score 1 \
             --output lesson.jsonl --store {store}\necho LEMTUI-EXIT=$?\nsleep 120\n",
            root = quote(dir),
            config = quote(&config),
            log = quote(&dir.join("lem-tui.log")),
            bin = quote(Path::new(env!("CARGO_BIN_EXE_lem-tui"))),
            store = quote(&dir.join("store.db")),
        ),
    )
    .expect("script");
    let tmux = Tmux { socket: format!("lem-tui-test-{}", std::process::id()) };
    let stop = ["tmux", "-L", &tmux.socket, "kill-server"].map(String::from).to_vec();
    let _watched = common::watch("tmux (lem-tui in review mode)", stop, Some(dir.join("lem-tui.log")));
    let script_arg = format!("sh {}", quote(&script));
    let out = tmux.cmd(&["new-session", "-d", "-s", "lem", "-x", "100", "-y", "30", &script_arg]);
    assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));

    // Tokens stream: a live candidate's count is seen to grow.
    let first = tmux.wait("tokens to stream", 120, |s| live_tokens(s).is_some_and(|n| n > 0));
    let n0 = live_tokens(&first).unwrap_or(0);
    assert!(first.contains("T01_CAPITAL") && first.contains("REVIEW"), "{first}");
    assert!(tmux.alternate_screen(), "the workbench draws on the alternate screen");
    let grew = tmux.wait("more tokens or the end of the candidate", 60, |s| {
        live_tokens(s).is_none_or(|n| n > n0) || s.contains("awaits review")
    });
    let _ = grew;

    // Probe 1 stops for review with the best pre-selected; accept it.
    let review = tmux.wait("T01 to await review", 120, |s| s.contains("T01_CAPITAL awaits review"));
    assert!(review.contains('★'), "the best is marked:\n{review}");
    tmux.keys(&["a"]);
    let s = tmux.wait("the decision", 30, |s| s.contains("Keep below the gate?") || s.contains("T01_CAPITAL: kept"));
    if s.contains("Keep below the gate?") {
        tmux.keys(&["y"]);
    }
    tmux.wait("T01 kept", 30, |s| s.contains("T01_CAPITAL: kept candidate"));

    // Probe 2: change the memory limit in the form while it waits, then reject all.
    tmux.wait("T02 to await review", 180, |s| s.contains("T02_KINDNESS awaits review"));
    tmux.keys(&["l"]);
    tmux.wait("the limits form", 10, |s| s.contains("Limits and sampling"));
    tmux.keys(&["BSpace", "BSpace", "BSpace", "BSpace", "1", "2", "Enter"]);
    let s =
        tmux.wait("the gauge to show the new limit", 10, |s| s.contains("/12G") && !s.contains("Limits and sampling"));
    assert!(s.contains("RSS"), "{s}");
    tmux.keys(&["x"]);
    // The engine waits after the last decision (it could still be undone) and says so.
    let s = tmux.wait("every probe decided", 30, |s| s.contains("all 2 probes decided"));
    assert!(s.contains("2/2 probes · kept 1 · skipped 1"), "{s}");
    assert!(s.contains('⊘'), "T02 shows as rejected: {s}");

    tmux.keys(&["q"]);
    let s = tmux.wait("the process to exit", 60, |s| s.contains("LEMTUI-EXIT="));
    assert!(s.contains("LEMTUI-EXIT=0"), "{s}");
    assert!(!tmux.alternate_screen(), "the terminal is restored");
    assert!(s.contains("2/2 probes decided · kept 1 · skipped 1"), "{s}");
    assert!(!s.contains("panicked") && !s.contains("error:"), "{s}");

    // The lesson file holds exactly the accepted candidate.
    let lesson = std::fs::read_to_string(dir.join("lesson.jsonl")).expect("lesson file");
    assert_eq!(lesson.lines().count(), 1, "{lesson}");
    let v: serde_json::Value = serde_json::from_str(lesson.trim_end()).expect("json line");
    let kept_text = v["messages"][1]["content"].as_str().expect("assistant turn").to_owned();
    assert!(v["messages"][0]["content"].as_str().is_some_and(|u| u.contains("capital of France")));

    // The session record agrees: kept by the operator (the same text), then rejected.
    let db = rusqlite::Connection::open(dir.join("store.db")).expect("store opens");
    let mut q = db
        .prepare(
            "SELECT p.probe_id, d.kind, d.decider, c.text FROM decisions d \
             JOIN probes p ON p.id = d.probe_row LEFT JOIN candidates c ON c.id = d.candidate_id ORDER BY d.id",
        )
        .expect("query");
    let rows: Vec<(String, String, String, Option<String>)> = q
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("decoded");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((rows[0].0.as_str(), rows[0].1.as_str(), rows[0].2.as_str()), ("T01_CAPITAL", "kept", "operator"));
    assert_eq!(rows[0].3.as_deref(), Some(kept_text.as_str()));
    assert_eq!((rows[1].0.as_str(), rows[1].1.as_str(), rows[1].2.as_str()), ("T02_KINDNESS", "rejected", "operator"));
    let candidates: i64 = db.query_row("SELECT COUNT(*) FROM candidates", [], |r| r.get(0)).expect("count");
    assert_eq!(candidates, 4, "two candidates per probe are recorded");
    let mode: String = db.query_row("SELECT mode FROM runs", [], |r| r.get(0)).expect("run row");
    assert!(mode.contains("review"), "{mode}");
}

/// Without a terminal the workbench refuses to draw and points at `--headless`, before any
/// model is loaded; headless review mode is refused too (nobody could answer it).
#[test]
fn no_terminal_means_a_hint_not_a_garbled_file() {
    let _deadline = common::deadline(Duration::from_secs(600));
    let root = common::scratch_root(PROBES);
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
            .current_dir(root.path())
            .env("LEM_TUI_LOG", root.path().join("lem-tui.log"))
            .args(["distill", "--probes", "probes.json"])
            .args(args)
            .output_within(Duration::from_secs(120));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stdout, stderr) = run(&[]);
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("not a terminal") && stderr.contains("--headless"), "{stderr}");
    assert!(!stderr.contains("loading model"), "fails before the model loads: {stderr}");
    let (ok, _, stderr) = run(&["--headless", "--mode", "review"]);
    assert!(!ok && stderr.contains("--mode review needs an operator"), "{stderr}");
    let (ok, _, stderr) = run(&["--theme", "no-such-theme"]);
    assert!(!ok && stderr.contains("no theme `no-such-theme`") && stderr.contains("high-contrast"), "{stderr}");
}

const RESUME_PROBES: &str = r#"[
  {"id": "T01_CAPITAL", "domain": "Geography", "prompt": "What is the capital of France, and why did it become the capital?"},
  {"id": "T02_KINDNESS", "domain": "Ethics", "prompt": "Why is kindness important? Explain in detail."},
  {"id": "T03_RIVERS", "domain": "Science", "prompt": "Why do rivers bend and form meanders? Explain in detail."}
]"#;

/// The candidate table's rows for probe `id` as drawn: (run number as shown, still generating).
/// `None` when the table shows another probe.
fn candidate_rows(screen: &str, id: &str) -> Option<Vec<(u32, bool)>> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let title = format!("┌ Candidates · {id} ");
    let (at, col) = lines.iter().enumerate().find_map(|(i, l)| {
        let s: String = l.iter().collect();
        let byte = s.find(&title)?;
        Some((i, s[..byte].chars().count()))
    })?;
    let mut rows = Vec::new();
    for l in &lines[at + 1..] {
        if l.get(col) == Some(&'└') {
            break;
        }
        let cell: String = l.iter().skip(col + 1).collect();
        let head: String = cell.chars().take(4).collect();
        if let Ok(run) = head.trim_start_matches('★').trim().parse::<u32>() {
            rows.push((run, cell.contains("generating…")));
        }
    }
    Some(rows)
}

fn session_script(dir: &Path, config: &Path, max_tokens: u32) -> String {
    format!(
        "cd {root}\nexport LEM_TUI_CONFIG_DIR={config} LEM_TUI_LOG={log} TERM=xterm-256color\nunset NO_COLOR\n\
         {bin} distill --probes probes.json --runs 2 --max-tokens {max_tokens} --seed 11 --threads 2 \
         --min-score 1 --output lesson.jsonl --store {store}\necho LEMTUI-EXIT=$?\nsleep 120\n",
        root = quote(dir),
        config = quote(config),
        log = quote(&dir.join("lem-tui.log")),
        bin = quote(Path::new(env!("CARGO_BIN_EXE_lem-tui"))),
        store = quote(&dir.join("store.db")),
    )
}

fn accept(tmux: &Tmux, id: &str) {
    tmux.wait(&format!("{id} to await review"), 300, |s| s.contains(&format!("{id} awaits review")));
    tmux.keys(&["a"]);
    let s = tmux.wait("the decision", 30, |s| s.contains("Keep below the gate?") || s.contains(&format!("{id}: kept")));
    if s.contains("Keep below the gate?") {
        tmux.keys(&["y"]);
    }
    tmux.wait(&format!("{id} kept"), 30, |s| s.contains(&format!("{id}: kept candidate")));
}

/// Accept two probes, undo one, quit while candidates stream, start again: the workbench
/// shows the decided probe, the stored candidates of the undecided ones with the run numbers
/// they had, and no row for a candidate that is not there.
#[test]
fn resume_after_undo_and_a_quit_mid_generation() {
    common::model_path("smollm2/135m");
    let root = common::scratch_root(RESUME_PROBES);
    let dir = root.path();
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    let script = dir.join("run.sh");
    std::fs::write(&script, session_script(dir, &config, 96)).expect("script");
    let tmux = Tmux { socket: format!("lem-tui-resume-{}", std::process::id()) };
    let start = || {
        let script_arg = format!("sh {}", quote(&script));
        let out = tmux.cmd(&["new-session", "-d", "-s", "lem", "-x", "110", "-y", "32", &script_arg]);
        assert!(out.status.success(), "tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
    };
    start();
    accept(&tmux, "T01_CAPITAL");
    accept(&tmux, "T02_KINDNESS");
    // T03 generates meanwhile; the undo takes back T02 (the last decision) once it may.
    tmux.keys(&["u"]);
    // ("undone: T02…" is soon replaced on the status line by the review note.)
    let s = tmux.wait("T02 undone and in review again", 300, |s| {
        s.contains("T02_KINDNESS awaits review") && s.contains("1/3 probes · kept 1")
    });
    assert!(s.contains("· T03_RIVERS"), "T03, generated meanwhile, waits its turn: {s}");
    assert_eq!(std::fs::read_to_string(dir.join("lesson.jsonl")).expect("lesson").lines().count(), 1);
    // More candidates for T02 (runs 3 and 4), and quit while they stream.
    tmux.keys(&["r"]);
    let s = tmux.wait("T02's new candidates to stream", 120, |s| {
        candidate_rows(s, "T02_KINDNESS").is_some_and(|r| r.iter().any(|(_, g)| *g)) && live_tokens(s).is_some()
    });
    assert!(!s.contains("T02_KINDNESS awaits review"), "the status line moved on: {s}");
    let live: Vec<u32> =
        candidate_rows(&s, "T02_KINDNESS").unwrap_or_default().iter().filter(|r| r.1).map(|r| r.0).collect();
    assert!(live.iter().all(|r| *r == 3 || *r == 4) && !live.is_empty(), "the new runs are 3 and 4: {s}");
    tmux.keys(&["q"]);
    // Quitting while candidates stream asks first (a fast machine may have finished them).
    let s = tmux.wait("the quit prompt", 10, |s| s.contains("Quit?") || s.contains("LEMTUI-EXIT="));
    if s.contains("Quit?") {
        tmux.keys(&["y"]);
    }
    let s = tmux.wait("the process to exit", 60, |s| s.contains("LEMTUI-EXIT="));
    assert!(s.contains("LEMTUI-EXIT=130"), "a quit mid-run exits 130: {s}");
    let _ = tmux.cmd(&["kill-server"]);

    // What the store holds for the undecided probes (cancelled candidates are not resumed).
    let stored = |probe: &str| -> Vec<u32> {
        let db = rusqlite::Connection::open(dir.join("store.db")).expect("store opens");
        let mut q = db
            .prepare(
                "SELECT c.run_no FROM candidates c JOIN probes p ON p.id = c.probe_row \
                 WHERE p.probe_id = ?1 AND c.outcome != 'cancelled' ORDER BY c.run_no",
            )
            .expect("query");
        q.query_map([probe], |r| r.get::<_, u32>(0)).expect("rows").collect::<Result<_, _>>().expect("runs")
    };
    let t02: Vec<u32> = stored("T02_KINDNESS").iter().map(|r| r + 1).collect();
    let t03: Vec<u32> = stored("T03_RIVERS").iter().map(|r| r + 1).collect();
    assert_eq!(&t02[..2], [1, 2], "T02's first two candidates are stored");
    assert_eq!(t03, [1, 2], "T03 was generated before the quit");

    // Start again: T01 kept, T02 in review with exactly its stored candidates.
    start();
    let s = tmux.wait("T02 in review after the resume", 120, |s| s.contains("T02_KINDNESS awaits review"));
    assert!(s.contains("✓ T01_CAPITAL"), "T01 shows as kept: {s}");
    let rows = candidate_rows(&s, "T02_KINDNESS").expect("T02's table");
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), t02, "stored runs, numbered as before: {s}");
    assert!(rows.iter().all(|r| !r.1), "no phantom generating rows: {s}");
    // T03's candidates reach the workbench only through the resume report.
    tmux.keys(&["Down"]);
    let s = tmux.wait("T03's table", 10, |s| candidate_rows(s, "T03_RIVERS").is_some());
    let rows = candidate_rows(&s, "T03_RIVERS").expect("T03's table");
    assert_eq!(rows, t03.iter().map(|r| (*r, false)).collect::<Vec<_>>(), "T03's stored candidates: {s}");
    tmux.keys(&["q"]);
    let s = tmux.wait("the process to exit", 60, |s| s.contains("LEMTUI-EXIT="));
    assert!(!s.contains("panicked") && !s.contains("error:"), "{s}");
    let lesson = std::fs::read_to_string(dir.join("lesson.jsonl")).expect("lesson");
    assert_eq!(lesson.lines().count(), 1, "only T01's line: {lesson}");
}
