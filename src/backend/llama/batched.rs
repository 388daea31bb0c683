//! One request as one batch: the prompt but its last token is prefilled once on sequence 0, its
//! KV cells are shared with sequences 1..n (`seq_cp` on a unified cache), and every decode then
//! carries one token of each live sequence, the first being the prompt's last token, so that
//! every sequence's first token is sampled like all the others. Each sequence has its own
//! sampler chain and seed; finished sequences leave the batch.
//!
//! Sampling is either on the host ([`SamplerMode::Cpu`]: each output's logits row, n_vocab
//! floats, is copied out and run through the CPU chain, on several threads) or in the decode
//! graph ([`SamplerMode::Backend`]: llama.cpp's backend samplers, one chain per sequence, and
//! only the chosen ids and the top-k survivors come back).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::chain::{self, HostPenalty, SamplerMode};
use super::raw::{Batch, Chain, Context, ContextParams};
use super::{EngineConfig, KeptContext, MaybeContext, estimate_bytes};
use crate::backend::candidate::{self, Candidate, RequestClock};
use crate::backend::memory::MIB;
use crate::backend::utf8::Utf8Stream;
use crate::backend::worker::WorkerShared;
use crate::backend::{FinishReason, GenRequest, JobEvent, Metrics};

/// Prefill chunk and batch size.
const N_BATCH: usize = 512;

/// Threads that sample a batched step's sequences on the CPU: `LEM_TUI_SAMPLE_THREADS` (1 = one
/// after another on the decode thread), else one per live sequence up to the core count.
/// Sampling a 262k-token vocabulary (Gemma 3) costs milliseconds per sequence on the CPU, which
/// a GPU step would otherwise wait for N times over.
pub(super) fn sample_threads(live: usize) -> usize {
    static SET: OnceLock<Option<usize>> = OnceLock::new();
    let set = *SET.get_or_init(|| std::env::var("LEM_TUI_SAMPLE_THREADS").ok().and_then(|v| v.parse().ok()));
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    set.unwrap_or(cores).clamp(1, live.max(1))
}

/// What `llama_sampler_sample` does (candidates from the logits, the chain, accept), on logits
/// already copied out of the context, so that sequences can be sampled on several threads.
fn sample_logits(
    sampler: &mut LlamaSampler,
    penalty: Option<&mut HostPenalty>,
    logits: &[f32],
    buf: &mut Vec<LlamaTokenData>,
) -> LlamaToken {
    let mut cands = std::mem::take(buf);
    cands.clear();
    cands.extend((0_i32..).zip(logits).map(|(id, &logit)| LlamaTokenData::new(LlamaToken::new(id), logit, 0.0)));
    // The penalty is the chain's step after the end-of-generation bias; the bias only ever adds
    // -inf, which the penalty keeps, so applying it first gives the same logits.
    if let Some(p) = &penalty {
        p.apply(&mut cands);
    }
    let mut array = LlamaTokenDataArray::new(cands, false);
    array.apply_sampler(sampler);
    let token = array.selected_token().unwrap_or_else(|| {
        // Every chain ends in a selecting sampler (dist or greedy); fall back to the best logit.
        let best = (0_i32..).zip(logits).max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(id, _)| id);
        LlamaToken::new(best)
    });
    *buf = array.data;
    sampler.accept(token);
    if let Some(p) = penalty {
        p.accept(token);
    }
    token
}

struct Seq {
    cand: Candidate,
    /// The CPU chain ([`SamplerMode::Cpu`]); on the backend the context holds the chain.
    sampler: Option<LlamaSampler>,
    /// The CPU chain's repeat penalty, applied to the logits row first.
    penalty: Option<HostPenalty>,
    utf8: Utf8Stream,
    /// Where in the last batch this sequence's output is.
    out_at: i32,
    /// The token sampled for this step.
    next: LlamaToken,
    /// The candidate buffer the CPU sampler works in (n_vocab entries), reused every step.
    cands: Vec<LlamaTokenData>,
    live: bool,
}

/// Where the decode loop's time goes, logged per request.
#[derive(Default)]
struct StepTimes {
    /// The `llama_decode` calls (on a GPU: queueing the graph).
    decode: Duration,
    /// Waiting for the graph and the copies of its outputs (logits rows or sampled ids).
    wait: Duration,
    /// Sampling after the wait: the CPU chains, or reading back the graph's choices.
    sample: Duration,
    steps: u32,
    /// Tokens sampled, and how many of them the graph chose by itself (backend sampling).
    tokens: u32,
    in_graph: u32,
}

impl EngineConfig {
    /// A context for `n_ctx` cells shared by `n` sequences, refused when it would not fit
    /// under the memory limit next to what the process already holds.
    fn new_context<'m>(
        &self,
        model: &'m LlamaModel,
        n_ctx: u64,
        n: u32,
        shared: &WorkerShared,
    ) -> Result<Context<'m>, String> {
        let limits = shared.limits();
        let estimate = estimate_bytes(0, n_ctx, self.kv_per_token);
        shared.set_kv_bytes(n_ctx * self.kv_per_token);
        // In use: the RSS, or the GPU's memory when the model is offloaded (the KV goes there).
        let used = shared.used();
        if limits.memory_bytes > 0 && used + estimate > limits.memory_bytes {
            return Err(format!(
                "this request needs about {} MiB of KV cache on top of {} MiB in use; the memory limit is {} MiB",
                estimate / MIB,
                used / MIB,
                limits.memory_bytes / MIB
            ));
        }
        let params = ContextParams {
            n_ctx: u32::try_from(n_ctx).unwrap_or(u32::MAX),
            n_seq: n,
            n_batch: u32::try_from(N_BATCH.max(n as usize)).unwrap_or(u32::MAX),
            threads: i32::try_from(self.opts.threads).unwrap_or(0),
        };
        Context::new(model, params).map_err(|e| format!("context ({n_ctx} tokens × {n} sequences): {e}"))
    }

    pub(super) fn generate<'m>(
        &self,
        model: &'m LlamaModel,
        kept: &mut MaybeContext<'m>,
        req: GenRequest,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
        shared: &WorkerShared,
    ) {
        let started = Instant::now();
        let n = req.n.max(1);
        let all: Vec<u32> = (0..n).collect();
        let fail_all = |error: String| candidate::failed(events, &all, &error);
        let prompt = match self.render(model, &req) {
            Ok(p) => p,
            Err(e) => return fail_all(e),
        };
        let vocab = model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        let Some((&last_token, head)) = tokens.split_last() else {
            return fail_all("the prompt has no tokens".into());
        };
        let prompt_len = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        let need = u64::from(prompt_len) + u64::from(n) * u64::from(req.sampling.max_tokens) + 8;
        let train = u64::from(model.n_ctx_train());
        if u64::from(prompt_len) + 8 > train {
            return fail_all(format!("prompt is {prompt_len} tokens; the model's context is {train}"));
        }
        let n_ctx = need.min(train.saturating_mul(u64::from(n))).next_multiple_of(256);
        let fits = kept.as_ref().is_some_and(|k| k.n_ctx >= n_ctx && k.n_seq >= n);
        let ctx = if let (true, Some(k)) = (fits, kept.as_mut()) {
            // Forget every sequence's cells; the buffers stay allocated.
            k.ctx.clear_kv();
            &mut k.ctx
        } else {
            // Grow to cover both this request and the largest before it, so alternating
            // request shapes do not rebuild the context every time.
            let (n_ctx, n) = kept.as_ref().map_or((n_ctx, n), |k| (k.n_ctx.max(n_ctx), k.n_seq.max(n)));
            *kept = None;
            match self.new_context(model, n_ctx, n, shared) {
                Ok(ctx) => &mut kept.insert(KeptContext { ctx, n_ctx, n_seq: n }).ctx,
                Err(e) => return fail_all(e),
            }
        };

        // Prefill all but the last prompt token on sequence 0, in chunks, asking for no output.
        let mut batch = Batch::new(N_BATCH.max(n as usize));
        for (chunk_i, chunk) in head.chunks(N_BATCH).enumerate() {
            batch.clear();
            for (j, tok) in chunk.iter().enumerate() {
                let pos = i32::try_from(chunk_i * N_BATCH + j).unwrap_or(i32::MAX);
                if let Err(e) = batch.add(*tok, pos, 0, false) {
                    return fail_all(format!("batch: {e}"));
                }
            }
            if let Err(status) = ctx.decode(&batch) {
                return fail_all(format!("prefill: llama_decode returned {status}"));
            }
            if cancel.is_cancelled() {
                return candidate::cancelled(events, &all, prompt_len, started);
            }
        }
        for s in 1..n {
            ctx.copy_kv(0, i32::try_from(s).unwrap_or(0));
        }

        let mode = self.opts.sampler;
        let n_vocab = model.n_vocab();
        let mut seqs = Vec::with_capacity(n as usize);
        let mut chains = Vec::with_capacity(n as usize);
        for candidate in 0..n {
            let mut steps = chain::steps(&req.sampling, candidate, n_vocab, &self.eog, mode);
            let penalty = if mode == SamplerMode::Cpu { HostPenalty::take(&mut steps) } else { None };
            let sampler = match mode {
                SamplerMode::Cpu => Some(chain::cpu_sampler(&steps)),
                SamplerMode::Backend => match Chain::new(&steps) {
                    Some(c) => {
                        chains.push(Some(c));
                        None
                    }
                    None => return fail_all("llama.cpp could not build the sampler chain".into()),
                },
            };
            seqs.push(Seq {
                cand: Candidate::new(candidate),
                sampler,
                penalty,
                utf8: Utf8Stream::default(),
                out_at: 0,
                next: LlamaToken::new(0),
                cands: Vec::new(),
                live: true,
            });
        }
        // Sequences beyond this request's n lose the chains of the last one too, so that the
        // graph carries no sampler for them.
        let placed = ctx.attach(chains);
        if let Some(first) = placed.first() {
            tracing::debug!(chain = %first, n, "backend sampler chains attached");
        }

        // The first decode: the prompt's last token on every sequence, each with an output.
        let last_pos = i32::try_from(head.len()).unwrap_or(i32::MAX);
        batch.clear();
        for seq in &mut seqs {
            seq.out_at = i32::try_from(batch.len()).unwrap_or(0);
            let seq_id = i32::try_from(seq.cand.candidate).unwrap_or(0);
            if let Err(e) = batch.add(last_token, last_pos, seq_id, true) {
                return fail_all(format!("batch: {e}"));
            }
        }
        let mut pos = last_pos;
        let mut piece = Vec::with_capacity(32);
        let mut times = StepTimes::default();
        let mut clock: Option<(RequestClock, Duration)> = None;
        loop {
            let t = Instant::now();
            let decoded = ctx.decode(&batch);
            times.decode += t.elapsed();
            if let Err(status) = decoded {
                for seq in seqs.iter_mut().filter(|s| s.live) {
                    seq.live = false;
                    let _ = events.blocking_send(JobEvent::Failed {
                        candidate: seq.cand.candidate,
                        error: format!("decode: llama_decode returned {status}"),
                    });
                }
                return;
            }
            let t = Instant::now();
            ctx.synchronize();
            times.wait += t.elapsed();
            let (clock, prefill) = *clock.get_or_insert_with(|| {
                // The prompt is in and every sequence's first token is ready to sample.
                let prefill = started.elapsed();
                let _ = events.blocking_send(JobEvent::Prefilled { prompt_tokens: prompt_len, elapsed: prefill });
                let rate = Metrics::rate(prompt_len, prefill);
                (RequestClock { started, prompt_tokens: prompt_len, prefill_tok_s: rate }, prefill)
            });
            if cancel.is_cancelled() {
                for seq in seqs.iter_mut().filter(|s| s.live) {
                    seq.live = false;
                    let tail = seq.utf8.finish();
                    seq.cand.done(&tail, FinishReason::Cancelled, &clock, events);
                }
                return;
            }
            let t = Instant::now();
            let sampled = match mode {
                SamplerMode::Cpu => sample_step_cpu(ctx, &mut seqs),
                SamplerMode::Backend => sample_step_backend(ctx, &mut seqs, &mut times),
            };
            times.sample += t.elapsed();
            times.steps += 1;
            times.tokens += u32::try_from(seqs.iter().filter(|s| s.live).count()).unwrap_or(0);
            if let Err(e) = sampled {
                return candidate::failed(events, &live_ids(&seqs), &format!("sampling: {e}"));
            }
            pos += 1;
            batch.clear();
            for seq in seqs.iter_mut().filter(|s| s.live) {
                let token = seq.next;
                let eog = vocab.is_eog(token) && !req.sampling.ignore_eos;
                if !eog {
                    piece.clear();
                    vocab.token_to_piece_into(token, &mut piece, false, None);
                    let text = seq.utf8.push(&piece);
                    seq.cand.token(text, events, cancel);
                }
                if let Some(finish) = seq.cand.finish_reason(eog, req.sampling.max_tokens) {
                    seq.live = false;
                    let tail = seq.utf8.finish();
                    seq.cand.done(&tail, finish, &clock, events);
                    continue;
                }
                let seq_id = i32::try_from(seq.cand.candidate).unwrap_or(0);
                seq.out_at = i32::try_from(batch.len()).unwrap_or(0);
                if let Err(e) = batch.add(token, pos, seq_id, true) {
                    seq.live = false;
                    let _ = events.blocking_send(JobEvent::Failed { candidate: seq.cand.candidate, error: e });
                }
            }
            if batch.len() == 0 {
                log_request(n, prompt_len, mode, &times, started, prefill, placed.first());
                return;
            }
        }
    }
}

fn live_ids(seqs: &[Seq]) -> Vec<u32> {
    seqs.iter().filter(|s| s.live).map(|s| s.cand.candidate).collect()
}

fn log_request(
    n: u32,
    prompt_tokens: u32,
    mode: SamplerMode,
    t: &StepTimes,
    started: Instant,
    prefill: Duration,
    chain: Option<&String>,
) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let per_step = |d: Duration| ms(d) / f64::from(t.steps.max(1));
    tracing::info!(
        n,
        prompt_tokens,
        steps = t.steps,
        tokens = t.tokens,
        in_graph = t.in_graph,
        sampler = mode.name(),
        chain = chain.map_or("cpu", String::as_str),
        sample_threads = if mode == SamplerMode::Cpu { sample_threads(n as usize) } else { 0 },
        prefill_ms = ms(prefill),
        decode_ms = ms(t.decode),
        wait_ms = ms(t.wait),
        sample_ms = ms(t.sample),
        step_decode_ms = per_step(t.decode),
        step_wait_ms = per_step(t.wait),
        step_sample_ms = per_step(t.sample),
        wall_ms = ms(started.elapsed()),
        "batched generation"
    );
}

/// Samples the next token of every live sequence from its logits row on the host: on this thread
/// when one thread is asked for, else spread over scoped threads (each sequence has its own
/// sampler, so the tokens are the same either way).
fn sample_step_cpu(ctx: &mut Context<'_>, seqs: &mut [Seq]) -> Result<(), String> {
    let mut live: Vec<&mut Seq> = seqs.iter_mut().filter(|s| s.live).collect();
    let idxs: Vec<i32> = live.iter().map(|s| s.out_at).collect();
    let logits = ctx.logits_rows(&idxs)?;
    let threads = sample_threads(live.len());
    let per = live.len().div_ceil(threads);
    let sample_chunk = |chunk: &mut [&mut Seq], rows: &[&[f32]]| {
        for (seq, row) in chunk.iter_mut().zip(rows) {
            if let Some(sampler) = seq.sampler.as_mut() {
                seq.next = sample_logits(sampler, seq.penalty.as_mut(), row, &mut seq.cands);
            }
        }
    };
    if threads <= 1 {
        sample_chunk(&mut live, &logits);
        return Ok(());
    }
    std::thread::scope(|scope| {
        for (chunk, rows) in live.chunks_mut(per).zip(logits.chunks(per)) {
            scope.spawn(move || sample_chunk(chunk, rows));
        }
    });
    Ok(())
}

/// Reads every live sequence's token from the graph's sampler (the chain accepts it: its
/// penalty counts and its draw advance).
fn sample_step_backend(ctx: &mut Context<'_>, seqs: &mut [Seq], times: &mut StepTimes) -> Result<(), String> {
    for seq in seqs.iter_mut().filter(|s| s.live) {
        let id = seq.cand.candidate as usize;
        times.in_graph += u32::from(ctx.graph_token(seq.out_at).is_some());
        seq.next = ctx.sample(id, seq.out_at).ok_or_else(|| format!("sequence {id} has no sampler chain"))?;
        if seq.next.0 < 0 {
            return Err(format!("no token sampled for sequence {id}"));
        }
    }
    Ok(())
}
