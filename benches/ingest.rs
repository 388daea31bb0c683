//! Ingesting a generated 100,000-line lesson file into a fresh session store, scores included,
//! against its peer in the same run: scoring the same (bare prompt, answer) pairs on one thread
//! with nothing else (no parsing, dedup, hashing or SQLite).
//!
//! `cargo bench --bench ingest` (`INGEST_LINES=N` for another size). Target: < 30 s for 100,000
//! lines on the 2-core CI machine.

use std::time::Instant;

use lem_tui::dataset::{self, Options};
use lem_tui::lesson::{TrainingExample, training_line};
use lem_tui::scorer::{Mode, Scorer, Thresholds};

const INPUTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/grammar-v3/grammar-v3-inputs.jsonl");

/// Realistic answers: 1.2-3.2 KB windows, on word boundaries, of the public long records.
fn corpus() -> Vec<(String, String)> {
    let path = std::env::var("INGEST_INPUTS").unwrap_or_else(|_| INPUTS.to_owned());
    let text = std::fs::read_to_string(path).expect("reading grammar-v3 inputs");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["category"] == "long")
        .map(|v| {
            (v["prompt"].as_str().unwrap_or_default().to_owned(), v["response"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

fn window(s: &str, start: usize, len: usize) -> &str {
    let mut a = start.min(s.len());
    while !s.is_char_boundary(a) {
        a += 1;
    }
    let a = s[a..].find(' ').map_or(a, |i| a + i + 1);
    let mut b = (a + len).min(s.len());
    while !s.is_char_boundary(b) {
        b -= 1;
    }
    &s[a..b]
}

/// This process's user + system CPU seconds so far (Linux), to tell work from waiting on a
/// machine shared with other jobs.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
    ticks / 100.0
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().next().unwrap_or("?").to_owned()
}

fn main() {
    let lines: usize = std::env::var("INGEST_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let corpus = corpus();
    let kernel = "You are guided by the axioms of life.\n".repeat(24);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lesson-100k.jsonl");
    let mut out = String::new();
    let mut pairs = Vec::with_capacity(lines);
    for i in 0..lines {
        let (p, r) = &corpus[i % corpus.len()];
        let prompt = format!("{p} (case {i})");
        let answer = window(r, (i * 7919) % r.len().saturating_sub(4000).max(1), 1200 + (i * 31) % 2000).to_owned();
        out.push_str(&training_line(&TrainingExample::user_assistant(
            lem_tui::config::sandwich(Some(kernel.trim()), None, &prompt),
            answer.clone(),
        )));
        pairs.push((prompt, answer));
    }
    std::fs::write(&file, &out).expect("write");
    let mb = out.len() as f64 / 1e6;

    let store = lem_tui::store::Store::open(&dir.path().join("bench.sqlite3")).expect("store");
    let opts = Options {
        root: dir.path().to_owned(),
        output: dir.path().join("reviewed.jsonl"),
        sandwich: None,
        thresholds: Thresholds::default(),
        threads: std::env::var("INGEST_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0),
    };
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    let report = dataset::ingest(&store, std::slice::from_ref(&file), &opts).expect("ingest");
    let ingest = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let ph = report.files[0].seconds;
    assert_eq!(report.candidates(), lines, "{report}");

    let scorer = Scorer::new(Mode::Cold);
    let t = Instant::now();
    for (p, a) in &pairs {
        std::hint::black_box(scorer.score_with_delta(p, a, Thresholds::default()));
    }
    let peer = t.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!(
        "ingest {lines} lines ({mb:.1} MB, {cores} cores): {ingest:.2} s ({:.0} lines/s, {:.1} MB/s)",
        lines as f64 / ingest,
        mb / ingest
    );
    println!("  CPU time (user + sys, all threads): {cpu:.2} s; load average when done: {}", load());
    println!("  parse {:.2} s, dedup + score {:.2} s, store {:.2} s", ph.parse, ph.score, ph.store);
    println!("peer: scoring alone, one thread: {peer:.2} s; ingest/peer = {:.2}", ingest / peer);
    println!("target < 30 s: {}", if ingest < 30.0 { "met" } else { "NOT met" });
}
