//! Throughput of the grammar v3 scorer on the public `long` records (single thread).
//!
//! `cargo bench --bench scorer`; MB = 10^6 bytes of response text. The Go reference
//! measured 8.0 MB/s (`ScoreResponse`) and 3.9 MB/s (`+ ComputeDelta`) on the CI machine.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lem_tui::scorer::{Mode, Scorer, Thresholds};

const INPUTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors/grammar-v3/grammar-v3-inputs.jsonl");

fn long_records() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(INPUTS).expect("reading grammar-v3 inputs");
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["category"] == "long")
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (s("prompt"), s("response"))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let records = long_records();
    assert_eq!(records.len(), 8, "expected the 8 public long records");
    let bytes: usize = records.iter().map(|(_, r)| r.len()).sum();
    let t = Thresholds::default();

    for mode in [Mode::Cold, Mode::Preloaded] {
        let scorer = Scorer::new(mode);
        let mut g = c.benchmark_group(format!("grammar_v3_{mode:?}").to_lowercase());
        g.throughput(Throughput::BytesDecimal(bytes as u64));
        g.bench_function("score", |b| {
            b.iter(|| {
                for (_, response) in &records {
                    black_box(scorer.score(black_box(response)));
                }
            })
        });
        g.bench_function("score_with_delta", |b| {
            b.iter(|| {
                for (prompt, response) in &records {
                    black_box(scorer.score_with_delta(black_box(prompt), black_box(response), t));
                }
            })
        });
        g.bench_function("tokenise", |b| {
            b.iter(|| {
                for (_, response) in &records {
                    black_box(scorer.tokenise(black_box(response)));
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
