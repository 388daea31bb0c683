//! Sampling inside the decode graph (llama.cpp backend sampling, `--sampler backend`) against
//! the CPU chain (`--sampler cpu`), and the CPU chain over each row's shortlist (`cpu`) against
//! the same chain over the whole row (`--sampler cpu-full`, llama.cpp's own way and the
//! reference), on the CPU ggml backend, which runs graph samplers too, with the PyPI Gemma 3
//! 270M and SmolLM2 GGUFs.
//!
//! The shortlist is exact by construction (`src/backend/llama/shortlist.rs` says why): the same
//! tokens, every time, up to ties at the top-k's cut.
//!
//! What is the same by construction: both sides run llama.cpp's samplers in the same order on
//! the same logits (one context code path, the same decode schedule), and the seeded draw takes
//! the same uniform numbers (`mt19937(seed + candidate)`, one per token). What differs is the
//! arithmetic: the graph's softmax and cumulative sum are f32 and its top-k returns the k best
//! in no particular order, where the CPU chain sums in f64 over a sorted list. So:
//! - greedy (top-1) is identical;
//! - with top-p in the chain the graph sorts its candidates, and a draw picks a different
//!   token only when it lands within float rounding (~1e-7) of a cumulative-probability
//!   boundary: LEM's chain gives the same tokens;
//! - without top-p the graph's candidates are in another order, so the same draw can pick
//!   another token of the same distribution: only seeded reproducibility is asserted there.
#![cfg(feature = "llama")]

mod common;

use common::ask::ask;
use common::log::{field, generation_lines, log};
use lem_tui::backend::llama::{KvLayout, LlamaOptions, SamplerMode, spawn};
use lem_tui::backend::{GenRequest, Limits, Message, Sampling};

/// The `batched generation` lines logged so far with `sampler=backend`, as (tokens, in_graph, chain).
fn backend_lines() -> Vec<(u32, u32, String)> {
    generation_lines("backend")
        .iter()
        .map(|l| {
            (field(l, "tokens").parse().unwrap_or(0), field(l, "in_graph").parse().unwrap_or(0), field(l, "chain"))
        })
        .collect()
}

fn engine(spec: &str, sampler: SamplerMode) -> lem_tui::backend::worker::WorkerBackend {
    log();
    spawn(LlamaOptions {
        path: common::model_path(spec),
        threads: 2,
        fallback_template: spec.starts_with("gemma").then(|| "gemma".to_owned()),
        force_template: false,
        gpu_layers: 0,
        sampler,
        kv: KvLayout::Split,
        lanes: 1,
        limits: Limits::default(),
    })
    .expect("model loads")
}

fn texts(backend: &lem_tui::backend::worker::WorkerBackend, prompt: &str, sampling: Sampling, n: u32) -> Vec<String> {
    let a = ask(backend, GenRequest { messages: vec![Message::user(prompt)], sampling, n }, None);
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    a.texts
}

/// LEM's chain (the H100 bench's settings), every candidate running to max_tokens.
fn lem(seed: u64) -> Sampling {
    Sampling {
        max_tokens: 24,
        temperature: 0.75,
        top_k: 40,
        top_p: 0.95,
        repeat_penalty: 1.1,
        seed,
        ignore_eos: true,
        ..Sampling::default()
    }
}

const PROMPT: &str = "Tell me a short story about a lighthouse keeper.";

#[test]
fn the_graph_runs_lems_whole_chain_and_picks_the_cpu_chains_tokens() {
    let cpu = engine("gemma3/270m", SamplerMode::Cpu);
    let graph = engine("gemma3/270m", SamplerMode::Backend);
    for seed in [42, 7] {
        let want = texts(&cpu, PROMPT, lem(seed), 4);
        let got = texts(&graph, PROMPT, lem(seed), 4);
        assert_eq!(got, want, "seed {seed}: the graph's draws differ from the CPU chain's");
        assert!(want.iter().all(|t| !t.is_empty()));
        assert_ne!(want[0], want[1], "candidates draw with their own seeds");
    }
    // Other tests of this binary log their own requests; LEM's chain is the one with top-p.
    let lines: Vec<_> = backend_lines().into_iter().filter(|l| l.2.contains("top-p")).collect();
    assert_eq!(lines.len(), 2, "one log line per request: {lines:?}");
    for (tokens, in_graph, chain) in lines {
        assert_eq!(tokens, 4 * 24);
        assert_eq!(in_graph, tokens, "every token chosen in the graph, none finished on the host");
        assert_eq!(chain, "+logit-bias +penalties +top-k +top-p +temp +dist", "every step placed in the graph");
    }
}

#[test]
fn greedy_and_the_repeat_penalty_are_identical_in_the_graph() {
    let cpu = engine("smollm2/135m", SamplerMode::Cpu);
    let graph = engine("smollm2/135m", SamplerMode::Backend);
    let prompt = "Write the word bridge twenty times, separated by commas.";
    let greedy =
        |repeat_penalty| Sampling { max_tokens: 32, repeat_penalty, seed: 1, ignore_eos: true, ..Sampling::default() };
    let plain = texts(&cpu, prompt, greedy(0.0), 2);
    assert_eq!(texts(&graph, prompt, greedy(0.0), 2), plain);
    let penalised = texts(&cpu, prompt, greedy(1.5), 2);
    assert_eq!(texts(&graph, prompt, greedy(1.5), 2), penalised);
    assert_ne!(penalised, plain, "the repeat penalty changes a repetitive answer");
}

#[test]
fn graph_draws_repeat_with_the_seed_without_top_p_too() {
    let graph = engine("gemma3/270m", SamplerMode::Backend);
    let no_top_p = |seed| Sampling { top_p: 0.0, ..lem(seed) };
    let a = texts(&graph, PROMPT, no_top_p(42), 3);
    assert_eq!(texts(&graph, PROMPT, no_top_p(42), 3), a, "same seed, same tokens");
    assert_ne!(texts(&graph, PROMPT, no_top_p(43), 3)[0], a[0], "another seed, another draw");
    // Seeds are per candidate: candidate 1 of seed 42 is candidate 0 of seed 43.
    assert_eq!(texts(&graph, PROMPT, no_top_p(43), 1)[0], a[1]);
}

#[test]
fn the_shortlist_picks_the_tokens_the_whole_row_picks() {
    let full = engine("gemma3/270m", SamplerMode::CpuFull);
    let short = engine("gemma3/270m", SamplerMode::Cpu);
    let mut asked = 0;
    for sampling in [lem(42), lem(7), Sampling { ignore_eos: false, min_p: 0.05, max_tokens: 40, ..lem(3) }] {
        let want = texts(&full, PROMPT, sampling, 4);
        let got = texts(&short, PROMPT, sampling, 4);
        assert_eq!(got, want, "{sampling:?}: the shortlist's draws differ from the whole row's");
        assert_ne!(want[0], want[1], "candidates draw with their own seeds");
        asked += 1;
    }
    // Greedy with the repeat penalty, whose shortlist grows with every generated token.
    let full = engine("smollm2/135m", SamplerMode::CpuFull);
    let short = engine("smollm2/135m", SamplerMode::Cpu);
    let prompt = "Write the word bridge twenty times, separated by commas.";
    let greedy = Sampling { max_tokens: 48, repeat_penalty: 1.5, seed: 1, ignore_eos: true, ..Sampling::default() };
    assert_eq!(texts(&short, prompt, greedy, 2), texts(&full, prompt, greedy, 2));
    asked += 1;

    // Every token of the shortlisting engine came from a shortlist, none of the reference's.
    // (Other tests of this binary log `cpu` requests too, with chains that shortlist as well.)
    let count = |l: &String, key| field(l, key).parse::<u32>().unwrap_or(u32::MAX);
    let cpu = generation_lines("cpu");
    assert!(cpu.len() >= asked, "{cpu:?}");
    for l in &cpu {
        assert_eq!(count(l, "shortlisted"), count(l, "tokens"), "{l}");
    }
    let reference = generation_lines("cpu-full");
    assert_eq!(reference.len(), asked, "{reference:?}");
    assert!(reference.iter().all(|l| count(l, "shortlisted") == 0 && count(l, "tokens") > 0), "{reference:?}");
}
