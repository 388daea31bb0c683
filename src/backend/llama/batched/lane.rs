//! One lane of a batch: its requests' prompts prefilled on their first sequences and shared
//! with the rest, then the decode loop, every step carrying one token of each live sequence.

use std::time::Instant;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::super::chain::{self, HostPenalty, SamplerMode};
use super::super::raw::{Batch, Chain, Context};
use super::super::shortlist::Shortlist;
use super::super::{EngineConfig, KvLayout};
use super::context::Part;
use super::host::sample_step_cpu;
use super::{Lane, N_BATCH, Seq, StepTimes, compact, fail_all, lane_n, log_request, sample_step_backend};
use crate::backend::candidate::{self, Candidate, RequestClock};
use crate::backend::utf8::Utf8Stream;
use crate::backend::{FinishReason, JobEvent, Metrics};

impl EngineConfig {
    /// Runs `parts` on `ctx` (cleared, sized for them) to the end of their last candidate.
    pub(super) fn run_lane<'m>(
        &self,
        model: &'m LlamaModel,
        ctx: &mut Context<'m>,
        mut parts: Vec<Part<'_>>,
        lane: &Lane<'_>,
    ) {
        let started = lane.started;
        let n = lane_n(&parts);
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
                    candidate::cancelled(&p.job.events, &p.all(), p.prompt_len(), lane.started);
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
            for k in 0..p.n {
                let candidate = p.first + k;
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
                    seq_id: p.seq_id(k),
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
                    lane.prefilled[p.at].call_once(|| {
                        let _ = p.job.events.blocking_send(JobEvent::Prefilled { prompt_tokens, elapsed: prefill });
                    });
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
            }
            if lane.kv == KvLayout::Split {
                times.moved += compact(ctx, &mut seqs);
            }
            batch.clear();
            // Ascending sequence ids: llama.cpp splits a batch over streams into runs of
            // consecutive ids, each its own graph.
            let mut order: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].live).collect();
            order.sort_unstable_by_key(|&i| seqs[i].seq_id);
            for i in order {
                let seq = &mut seqs[i];
                seq.out_at = i32::try_from(batch.len()).unwrap_or(0);
                if let Err(e) = batch.add(seq.next, seq.pos, seq.seq_id, true) {
                    seq.live = false;
                    let events = &parts[seq.part].job.events;
                    let _ = events.blocking_send(JobEvent::Failed { candidate: seq.cand.candidate, error: e });
                }
            }
        }
        let prompt_tokens = parts.iter().map(Part::prompt_len).sum();
        let prefill = parts.iter().find_map(|p| p.clock.map(|c| c.1)).unwrap_or_default();
        log_request(n, parts.len(), prompt_tokens, mode, lane, &times, prefill, placed.first());
    }
}
