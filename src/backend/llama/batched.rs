//! One request as one batch: the prompt but its last token is prefilled once on sequence 0, its
//! KV cells are shared with sequences 1..n (`seq_cp` on a unified cache), and every decode then
//! carries one token of each live sequence, the first being the prompt's last token, so that
//! every sequence's first token is sampled like all the others. Each sequence has its own
//! sampler chain and seed; finished sequences leave the batch.
//!
//! Sampling is either on the host ([`SamplerMode::Cpu`]: each output's logits row, n_vocab
//! floats, is shortlisted and run through the CPU chain, on several threads) or in the decode
//! graph ([`SamplerMode::Backend`]: llama.cpp's backend samplers, one chain per sequence, and
//! only the chosen ids and the top-k survivors come back).

use std::time::{Duration, Instant};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;

use super::chain::{self, HostPenalty, SamplerMode};
use super::raw::{Batch, Chain, Context};
use super::shortlist::Shortlist;
use super::{EngineConfig, KeptContext, MaybeContext};
use crate::backend::candidate::{self, Candidate, RequestClock};
use crate::backend::utf8::Utf8Stream;
use crate::backend::worker::{Job, WorkerShared};
use crate::backend::{FinishReason, JobEvent, Metrics};

mod context;
mod host;

use context::Part;
use host::{sample_step_cpu, sample_threads};

/// Prefill chunk and batch size.
pub(super) const N_BATCH: usize = 512;

struct Seq {
    cand: Candidate,
    /// Which request of the batch it answers ([`Part`]).
    part: usize,
    seq_id: i32,
    /// The position of the token it decodes next.
    pos: i32,
    /// The CPU chain ([`SamplerMode::Cpu`]); on the backend the context holds the chain.
    sampler: Option<LlamaSampler>,
    /// The CPU chain's repeat penalty, applied to the logits row first.
    penalty: Option<HostPenalty>,
    /// The part of the row the CPU chain needs ([`SamplerMode::Cpu`]).
    shortlist: Option<Shortlist>,
    utf8: Utf8Stream,
    /// Where in the last batch this sequence's output is.
    out_at: i32,
    /// The token sampled for this step.
    next: LlamaToken,
    /// The candidate buffer the CPU sampler works in (up to n_vocab entries), reused every step.
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
    /// Tokens the CPU chain sampled from a shortlist of their row instead of the whole row.
    shortlisted: u32,
}

impl EngineConfig {
    /// Answers `jobs` together: each request's prompt is prefilled on its own first sequence
    /// and shared with the rest of its candidates, and every decode then carries a token of
    /// every live sequence of every request. One request that cannot start (its prompt, its
    /// context) fails alone; each is cancelled on its own token.
    pub(super) fn generate<'m>(
        &self,
        model: &'m LlamaModel,
        kept: &mut MaybeContext<'m>,
        jobs: &[Job],
        shared: &WorkerShared,
    ) {
        let started = Instant::now();
        let train = u64::from(model.n_ctx_train());
        let mut parts = Vec::with_capacity(jobs.len());
        let mut base = 0;
        for job in jobs {
            let n = job.req.n.max(1);
            match self.prompt_tokens(model, &job.req, train) {
                Ok(tokens) => {
                    parts.push(Part { job, tokens, base, n, clock: None, cancelled: false });
                    base += n;
                }
                Err(e) => candidate::failed(&job.events, &(0..n).collect::<Vec<_>>(), &e),
            }
        }
        let n = base;
        if parts.is_empty() {
            return;
        }
        let fail_all = |parts: &[Part<'_>], error: &str| {
            for p in parts.iter().filter(|p| !p.cancelled) {
                candidate::failed(&p.job.events, &p.all(), error);
            }
        };
        let need: u64 = parts.iter().map(Part::need).sum();
        let n_ctx = need.min(train.saturating_mul(u64::from(n))).next_multiple_of(256);
        let fits = kept.as_ref().is_some_and(|k| k.n_ctx >= n_ctx && k.n_seq >= n);
        let ctx = if let (true, Some(k)) = (fits, kept.as_mut()) {
            // Forget every sequence's cells; the buffers stay allocated.
            k.ctx.clear_kv();
            &mut k.ctx
        } else {
            // Grow to cover both this batch and the largest before it, so alternating
            // request shapes do not rebuild the context every time.
            let (n_ctx, n) = kept.as_ref().map_or((n_ctx, n), |k| (k.n_ctx.max(n_ctx), k.n_seq.max(n)));
            *kept = None;
            match self.new_context(model, n_ctx, n, shared) {
                Ok(ctx) => &mut kept.insert(KeptContext { ctx, n_ctx, n_seq: n }).ctx,
                // Together they do not fit under the memory limit: one at a time may.
                Err(e) if parts.len() > 1 => {
                    tracing::info!(requests = parts.len(), n, "{e}; answering them one at a time");
                    for p in &parts {
                        self.generate(model, kept, std::slice::from_ref(p.job), shared);
                    }
                    return;
                }
                Err(e) => return fail_all(&parts, &e),
            }
        };

        // Prefill all but the last prompt token of each request on its first sequence, in
        // chunks, asking for no output; then share those cells with its other sequences.
        let mut batch = Batch::new(N_BATCH.max(n as usize));
        for p in &mut parts {
            let head = &p.tokens[..p.tokens.len() - 1];
            for (chunk_i, chunk) in head.chunks(N_BATCH).enumerate() {
                batch.clear();
                for (j, tok) in chunk.iter().enumerate() {
                    let pos = i32::try_from(chunk_i * N_BATCH + j).unwrap_or(i32::MAX);
                    if let Err(e) = batch.add(*tok, pos, p.seq_id(0), false) {
                        return fail_all(&parts, &format!("batch: {e}"));
                    }
                }
                if let Err(status) = ctx.decode(&batch) {
                    return fail_all(&parts, &format!("prefill: llama_decode returned {status}"));
                }
                if p.job.cancel.is_cancelled() {
                    candidate::cancelled(&p.job.events, &p.all(), p.prompt_len(), started);
                    p.cancelled = true;
                    break;
                }
            }
            for s in 1..p.n {
                ctx.copy_kv(p.seq_id(0), p.seq_id(s));
            }
        }

        let mode = self.opts.sampler;
        let n_vocab = model.n_vocab();
        let mut seqs = Vec::with_capacity(n as usize);
        let mut chains = Vec::with_capacity(n as usize);
        for (at, p) in parts.iter().enumerate() {
            for candidate in 0..p.n {
                let mut steps = chain::steps(&p.job.req.sampling, candidate, n_vocab, &self.eog, mode);
                let penalty = if mode.on_host() { HostPenalty::take(&mut steps) } else { None };
                let shortlist = if mode == SamplerMode::Cpu { Shortlist::of(&steps, n_vocab) } else { None };
                let sampler = match mode {
                    SamplerMode::Cpu | SamplerMode::CpuFull => Some(chain::cpu_sampler(&steps)),
                    // A cancelled request's sequences keep their places (ids) but get no chain.
                    SamplerMode::Backend if p.cancelled => {
                        chains.push(None);
                        None
                    }
                    SamplerMode::Backend => match Chain::new(&steps) {
                        Some(c) => {
                            chains.push(Some(c));
                            None
                        }
                        None => return fail_all(&parts, "llama.cpp could not build the sampler chain"),
                    },
                };
                seqs.push(Seq {
                    cand: Candidate::new(candidate),
                    part: at,
                    seq_id: p.seq_id(candidate),
                    pos: i32::try_from(p.tokens.len() - 1).unwrap_or(i32::MAX),
                    sampler,
                    penalty,
                    shortlist,
                    utf8: Utf8Stream::default(),
                    out_at: 0,
                    next: LlamaToken::new(0),
                    cands: Vec::new(),
                    live: !p.cancelled,
                });
            }
        }
        // Sequences beyond this batch's lose the chains of the last one too, so that the
        // graph carries no sampler for them.
        let placed = ctx.attach(chains);
        if let Some(first) = placed.first() {
            tracing::debug!(chain = %first, n, "backend sampler chains attached");
        }

        // The first decode: each prompt's last token on every one of its sequences, each with
        // an output.
        batch.clear();
        for seq in seqs.iter_mut().filter(|s| s.live) {
            seq.out_at = i32::try_from(batch.len()).unwrap_or(0);
            let last = *parts[seq.part].tokens.last().unwrap_or(&LlamaToken::new(0));
            if let Err(e) = batch.add(last, seq.pos, seq.seq_id, true) {
                return fail_all(&parts, &format!("batch: {e}"));
            }
        }
        let mut piece = Vec::with_capacity(32);
        let mut times = StepTimes::default();
        let vocab = model.vocab();
        while batch.len() > 0 {
            let t = Instant::now();
            let decoded = ctx.decode(&batch);
            times.decode += t.elapsed();
            if let Err(status) = decoded {
                for seq in seqs.iter_mut().filter(|s| s.live) {
                    seq.live = false;
                    let error = format!("decode: llama_decode returned {status}");
                    let _ = parts[seq.part]
                        .job
                        .events
                        .blocking_send(JobEvent::Failed { candidate: seq.cand.candidate, error });
                }
                return;
            }
            let t = Instant::now();
            ctx.synchronize();
            times.wait += t.elapsed();
            for p in parts.iter_mut().filter(|p| !p.cancelled) {
                if p.clock.is_none() {
                    // The prompt is in and every sequence's first token is ready to sample.
                    let prefill = started.elapsed();
                    let prompt_tokens = p.prompt_len();
                    let _ = p.job.events.blocking_send(JobEvent::Prefilled { prompt_tokens, elapsed: prefill });
                    let rate = Metrics::rate(prompt_tokens, prefill);
                    p.clock = Some((RequestClock { started, prompt_tokens, prefill_tok_s: rate }, prefill));
                }
                p.cancelled = p.job.cancel.is_cancelled();
            }
            for seq in seqs.iter_mut().filter(|s| s.live && parts[s.part].cancelled) {
                let p = &parts[seq.part];
                let Some((clock, _)) = &p.clock else { continue };
                seq.live = false;
                let tail = seq.utf8.finish();
                seq.cand.done(&tail, FinishReason::Cancelled, clock, &p.job.events);
            }
            if !seqs.iter().any(|s| s.live) {
                break;
            }
            let t = Instant::now();
            let sampled = match mode {
                SamplerMode::Cpu | SamplerMode::CpuFull => sample_step_cpu(ctx, &mut seqs, &mut times),
                SamplerMode::Backend => sample_step_backend(ctx, &mut seqs, &mut times),
            };
            times.sample += t.elapsed();
            times.steps += 1;
            times.tokens += u32::try_from(seqs.iter().filter(|s| s.live).count()).unwrap_or(0);
            if let Err(e) = sampled {
                for (at, p) in parts.iter().enumerate() {
                    let owed: Vec<u32> =
                        seqs.iter().filter(|s| s.live && s.part == at).map(|s| s.cand.candidate).collect();
                    candidate::failed(&p.job.events, &owed, &format!("sampling: {e}"));
                }
                return;
            }
            batch.clear();
            for seq in seqs.iter_mut().filter(|s| s.live) {
                let p = &parts[seq.part];
                let (sampling, events) = (&p.job.req.sampling, &p.job.events);
                let token = seq.next;
                let eog = vocab.is_eog(token) && !sampling.ignore_eos;
                if !eog {
                    piece.clear();
                    vocab.token_to_piece_into(token, &mut piece, false, None);
                    let text = seq.utf8.push(&piece);
                    seq.cand.token(text, events, &p.job.cancel);
                }
                if let Some(finish) = seq.cand.finish_reason(eog, sampling.max_tokens) {
                    seq.live = false;
                    let tail = seq.utf8.finish();
                    if let Some((clock, _)) = &p.clock {
                        seq.cand.done(&tail, finish, clock, events);
                    }
                    continue;
                }
                seq.pos += 1;
                seq.out_at = i32::try_from(batch.len()).unwrap_or(0);
                if let Err(e) = batch.add(token, seq.pos, seq.seq_id, true) {
                    seq.live = false;
                    let _ = events.blocking_send(JobEvent::Failed { candidate: seq.cand.candidate, error: e });
                }
            }
        }
        let prompt_tokens = parts.iter().map(Part::prompt_len).sum();
        let prefill = parts.iter().find_map(|p| p.clock.map(|c| c.1)).unwrap_or_default();
        log_request(n, parts.len(), prompt_tokens, mode, &times, started, prefill, placed.first());
    }
}

#[allow(clippy::too_many_arguments)]
fn log_request(
    n: u32,
    requests: usize,
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
        requests,
        prompt_tokens,
        steps = t.steps,
        tokens = t.tokens,
        in_graph = t.in_graph,
        shortlisted = t.shortlisted,
        sampler = mode.name(),
        chain = chain.map_or("cpu", String::as_str),
        sample_threads = if mode.on_host() { sample_threads(n as usize) } else { 0 },
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

/// Reads every live sequence's token from the graph's sampler (the chain accepts it: its
/// penalty counts and its draw advance).
fn sample_step_backend(ctx: &mut Context<'_>, seqs: &mut [Seq], times: &mut StepTimes) -> Result<(), String> {
    for seq in seqs.iter_mut().filter(|s| s.live) {
        let id = usize::try_from(seq.seq_id).unwrap_or(usize::MAX);
        times.in_graph += u32::from(ctx.graph_token(seq.out_at).is_some());
        seq.next = ctx.sample(id, seq.out_at).ok_or_else(|| format!("sequence {id} has no sampler chain"))?;
        if seq.next.0 < 0 {
            return Err(format!("no token sampled for sequence {id}"));
        }
    }
    Ok(())
}
