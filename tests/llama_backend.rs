//! The llama.cpp backend on real models (SmolLM2-135M-Instruct and Gemma 3 270M from PyPI).
#![cfg(feature = "llama")]

mod common;

use common::ask::ask;

use std::time::Duration;

use lem_tui::backend::llama::{KvLayout, LlamaOptions, SamplerMode, spawn};
use lem_tui::backend::{Backend, BackendError, FinishReason, GenRequest, Limits, Message, Sampling};

fn opts(spec: &str, template: Option<&str>) -> LlamaOptions {
    LlamaOptions {
        path: common::model_path(spec),
        threads: 2,
        fallback_template: template.map(str::to_owned),
        force_template: false,
        gpu_layers: 0,
        sampler: SamplerMode::Cpu,
        kv: KvLayout::Split,
        lanes: 1,
        limits: Limits::default(),
    }
}

fn greedy(max_tokens: u32) -> Sampling {
    Sampling { max_tokens, seed: 1, ..Sampling::default() }
}

#[test]
fn smollm2_streams_tokens_and_reports_metrics() {
    let backend = spawn(opts("smollm2/135m", None)).expect("SmolLM2 loads");
    let info = backend.info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.layers, 30);
    assert_eq!(info.template, "embedded");
    let req = GenRequest {
        messages: vec![Message::user("What is the capital of France? Answer in one sentence.")],
        sampling: greedy(40),
        n: 1,
    };
    let a = ask(&backend, req, None);
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    assert!(a.prefilled.is_some_and(|p| p > 5), "prompt tokens: {:?}", a.prefilled);
    assert_eq!(a.texts[0], a.streamed[0], "Done text is the concatenated stream");
    assert!(a.texts[0].contains("Paris"), "an instruction-tuned model knows this: {:?}", a.texts[0]);
    let m = a.metrics[0];
    assert!(m.generated_tokens > 0 && m.generated_tokens <= 40);
    assert!(m.prompt_tokens > 5);
    assert!(m.decode_tok_s > 0.0 && m.prefill_tok_s > 0.0, "{m:?}");
    assert!(m.ttft > Duration::ZERO && m.wall >= m.ttft);
    let mem = backend.memory();
    assert!(mem.rss > 50 * 1024 * 1024, "RSS includes the model: {mem:?}");
    assert_eq!(mem.model_bytes, 98_362_432);
    assert!(mem.system_total > 0 && mem.kv_bytes > 0);
}

/// Batching must never change what the model is asked: with greedy sampling, every candidate of
/// a batched run starts with the first 16 tokens of a single-sequence run of the same prompt.
fn batched_greedy_matches_single(spec: &str, template: Option<&str>, prompt: &str) {
    let backend = spawn(opts(spec, template)).expect("model loads");
    let msg = vec![Message::user(prompt)];
    let single = ask(&backend, GenRequest { messages: msg.clone(), sampling: greedy(16), n: 1 }, None);
    assert!(single.failures.is_empty(), "{:?}", single.failures);
    assert_eq!(single.metrics[0].generated_tokens, 16, "16 tokens without an early stop: {:?}", single.texts[0]);
    for n in [3, 8] {
        let batched = ask(&backend, GenRequest { messages: msg.clone(), sampling: greedy(24), n }, None);
        assert!(batched.failures.is_empty(), "{:?}", batched.failures);
        for t in &batched.texts {
            assert!(t.starts_with(&single.texts[0]), "{spec} n={n}: {t:?} does not start with {:?}", single.texts[0]);
        }
    }
    // The context is kept between requests (sized by the n=8 one now): the cells of the earlier
    // requests must be forgotten, or this answer would attend to them.
    let again = ask(&backend, GenRequest { messages: msg, sampling: greedy(16), n: 1 }, None);
    assert_eq!(again.texts, single.texts, "{spec}: a reused context answers as a fresh one");
}

#[test]
fn batched_greedy_candidates_match_a_single_stream_smollm2() {
    batched_greedy_matches_single("smollm2/135m", None, "Write a long essay about the history of bridges.");
}

#[test]
fn batched_greedy_candidates_match_a_single_stream_gemma3() {
    batched_greedy_matches_single("gemma3/270m", Some("gemma"), "Write a long essay about the history of bridges.");
}

#[test]
fn sampled_candidates_differ_by_seed_and_repeat_with_it() {
    let backend = spawn(opts("smollm2/135m", None)).expect("SmolLM2 loads");
    let sampling = Sampling {
        max_tokens: 24,
        temperature: 1.0,
        top_p: 0.95,
        top_k: 40,
        repeat_penalty: 1.1,
        seed: 7,
        ..Sampling::default()
    };
    let msg = vec![Message::user("Write a short poem about rivers.")];
    let a = ask(&backend, GenRequest { messages: msg.clone(), sampling, n: 3 }, None);
    let b = ask(&backend, GenRequest { messages: msg, sampling, n: 3 }, None);
    assert_eq!(a.texts, b.texts, "same seeds, same candidates");
    assert!(a.texts[0] != a.texts[1] || a.texts[1] != a.texts[2], "different seeds per candidate: {:?}", a.texts);
}

#[test]
fn cancel_stops_between_tokens() {
    let backend = spawn(opts("smollm2/135m", None)).expect("SmolLM2 loads");
    let req = GenRequest {
        messages: vec![Message::user("Tell me a very long story about a dragon.")],
        sampling: greedy(400),
        n: 2,
    };
    let a = ask(&backend, req, Some(5));
    for (f, m) in a.finish.iter().zip(&a.metrics) {
        assert_eq!(*f, Some(FinishReason::Cancelled));
        assert!(m.generated_tokens < 50, "stopped promptly: {m:?}");
    }
}

#[test]
fn gemma_without_a_template_uses_the_family_template() {
    let err = spawn(opts("gemma3/270m", None)).err().expect("no template and no fallback is an error");
    assert!(err.to_string().contains("no chat template"), "{err}");
    let backend = spawn(opts("gemma3/270m", Some("gemma"))).expect("Gemma loads with the gemma template");
    let info = backend.info();
    assert_eq!((info.architecture.as_str(), info.layers, info.template.as_str()), ("gemma3", 18, "gemma"));
    let a = ask(
        &backend,
        GenRequest { messages: vec![Message::user("Hello! Who are you?")], sampling: greedy(16), n: 1 },
        None,
    );
    assert!(a.failures.is_empty(), "{:?}", a.failures);
    assert!(a.metrics[0].generated_tokens > 0);
    // BOS + <start_of_turn>user\n … <end_of_turn>\n<start_of_turn>model\n
    assert!(a.metrics[0].prompt_tokens >= 10, "{:?}", a.metrics[0]);
}

#[test]
fn a_model_over_the_memory_limit_is_refused() {
    let mut o = opts("smollm2/135m", None);
    o.limits = Limits { cache_bytes: 0, memory_bytes: 64 * 1024 * 1024 };
    match spawn(o) {
        Err(BackendError::OverLimit { need_mib, limit_mib, .. }) => {
            assert_eq!(limit_mib, 64);
            assert!(need_mib > 64);
        }
        Err(e) => panic!("expected OverLimit, got {e}"),
        Ok(_) => panic!("a 94 MiB model loaded under a 64 MiB limit"),
    }
}

#[test]
fn a_missing_model_file_is_a_clear_error() {
    let mut o = opts("smollm2/135m", None);
    o.path = "/nonexistent/model.gguf".into();
    let err = spawn(o).err().expect("missing file");
    assert!(matches!(err, BackendError::ModelMissing { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/model.gguf"));
}
