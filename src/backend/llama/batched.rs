//! Requests as one batch: each prompt but its last token is prefilled once on its first
//! sequence, its KV cells are given to its other sequences (shared in a unified cache, copied
//! to each one's stream in a split one: [`KvLayout`]), and every decode then carries one token
//! of each live sequence, the first being the prompt's last token, so that every sequence's
//! first token is sampled like all the others. Each sequence has its own sampler chain and
//! seed; finished sequences leave the batch. A batch may be dealt out to several lanes
//! (contexts decoded on their own threads, [`lane`]).
//!
//! Sampling is either on the host ([`SamplerMode::Cpu`]: each output's logits row, n_vocab
//! floats, is shortlisted and run through the CPU chain, on several threads) or in the decode
//! graph ([`SamplerMode::Backend`]: llama.cpp's backend samplers, one chain per sequence, and
//! only the chosen ids and the top-k survivors come back).

use std::sync::Once;
use std::time::{Duration, Instant};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;

use super::chain::{HostPenalty, SamplerMode};
use super::raw::Context;
use super::shortlist::Shortlist;
use super::{EngineConfig, Kept, KeptContext, KvLayout};
use crate::backend::candidate::{self, Candidate};
use crate::backend::utf8::Utf8Stream;
use crate::backend::worker::{Job, WorkerShared};

mod context;
mod host;
mod lane;

use context::Part;
use host::sample_threads;

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
    /// Sequences moved to a lower id when one below them finished ([`compact`]).
    moved: u32,
}

/// Moves the live sequences with the highest ids into the ids of finished ones below them, so
/// that the live ones stay consecutive from the lowest: with a stream per sequence (split KV),
/// llama.cpp decodes each run of consecutive ids as its own graph, and a batch with holes
/// would cost one graph per run. A move copies the sequence's stream (at the next decode) and
/// forgets the old one; its sampler is on the host and goes with it. Returns the moves.
fn compact(ctx: &mut Context<'_>, seqs: &mut [Seq]) -> u32 {
    // Most steps nothing finished: the live ids are still 0..live, nothing to move.
    let (live, top) = seqs.iter().filter(|s| s.live).fold((0, -1), |(n, top), s| (n + 1, top.max(s.seq_id)));
    if top < live {
        return 0;
    }
    let mut held = vec![false; seqs.len()];
    for s in seqs.iter().filter(|s| s.live) {
        if let Some(h) = usize::try_from(s.seq_id).ok().and_then(|i| held.get_mut(i)) {
            *h = true;
        }
    }
    let mut free = (0..held.len()).filter(|&i| !held[i]).filter_map(|i| i32::try_from(i).ok());
    let mut live: Vec<&mut Seq> = seqs.iter_mut().filter(|s| s.live).collect();
    live.sort_unstable_by_key(|s| std::cmp::Reverse(s.seq_id));
    let mut moved = 0;
    for seq in live {
        let Some(hole) = free.next() else { break };
        if hole > seq.seq_id {
            break;
        }
        ctx.copy_kv(seq.seq_id, hole);
        ctx.remove_kv(seq.seq_id);
        seq.seq_id = hole;
        moved += 1;
    }
    moved
}

impl EngineConfig {
    /// Answers `jobs` together: each request's prompt is prefilled on its own first sequence
    /// and shared with the rest of its candidates, and every decode then carries a token of
    /// every live sequence of every request. One request that cannot start (its prompt, its
    /// context) fails alone; each is cancelled on its own token.
    ///
    /// With several lanes (`--lanes`), the batch's sequences are dealt out to that many
    /// contexts, each decoded on its own thread, so that one lane's host work (queueing its
    /// graph, sampling its rows) overlaps another's turn on the GPU.
    pub(super) fn generate<'m>(&self, model: &'m LlamaModel, kept: &mut Kept<'m>, jobs: &[Job], shared: &WorkerShared) {
        let started = Instant::now();
        let train = u64::from(model.n_ctx_train());
        let mut parts = Vec::with_capacity(jobs.len());
        let mut base = 0;
        for (at, job) in jobs.iter().enumerate() {
            let n = job.req.n.max(1);
            match self.prompt_tokens(model, &job.req, train) {
                Ok(tokens) => {
                    parts.push(Part { job, at, tokens, base, first: 0, n, clock: None, cancelled: false });
                    base += n;
                }
                Err(e) => candidate::failed(&job.events, &(0..n).collect::<Vec<_>>(), &e),
            }
        }
        let n = base;
        if parts.is_empty() {
            return;
        }
        let lanes = deal(&parts, self.opts.lanes.clamp(1, n));
        let shapes: Vec<_> = lanes.iter().map(|l| (self.batch_shape(l, lane_n(l), train), lane_n(l))).collect();
        if let Err(e) = self.ensure_contexts(model, kept, &shapes, shared) {
            // Together they do not fit under the memory limit: one at a time may.
            if parts.len() > 1 {
                tracing::info!(requests = parts.len(), n, "{e}; answering them one at a time");
                for p in &parts {
                    self.generate(model, kept, std::slice::from_ref(p.job), shared);
                }
            } else {
                fail_all(&parts, &e);
            }
            return;
        }
        let prefilled: Vec<Once> = jobs.iter().map(|_| Once::new()).collect();
        let lane_count = lanes.len();
        let run = |(i, (k, parts)): (usize, (&mut KeptContext<'m>, Vec<Part<'_>>))| {
            let lane = Lane { index: i, of: lane_count, kv: k.kv, prefilled: &prefilled, started };
            self.run_lane(model, &mut k.ctx, parts, &lane);
        };
        if lane_count == 1 {
            kept.iter_mut().zip(lanes).enumerate().for_each(run);
        } else {
            std::thread::scope(|scope| {
                for job in kept.iter_mut().zip(lanes).enumerate() {
                    scope.spawn(move || run(job));
                }
            });
        }
    }

    /// Makes `kept` hold a context for each lane's shape, in order: a kept one that is big
    /// enough is cleared and reused, else it is replaced by one that also covers the largest
    /// shape before it (so that alternating request shapes do not rebuild it every time). The
    /// memory gauge's KV is then what the kept contexts hold, whether or not all of them fitted.
    fn ensure_contexts<'m>(
        &self,
        model: &'m LlamaModel,
        kept: &mut Kept<'m>,
        shapes: &[((KvLayout, u64), u32)],
        shared: &WorkerShared,
    ) -> Result<(), String> {
        let mut fitted = Ok(());
        for (i, &((kv, per_seq), n)) in shapes.iter().enumerate() {
            if let Some(k) = kept.get_mut(i).filter(|k| k.kv == kv && k.per_seq >= per_seq && k.n_seq >= n) {
                // Forget every sequence's cells; the buffers stay allocated.
                k.ctx.clear_kv();
                continue;
            }
            let old = kept.get(i).filter(|k| k.kv == kv);
            let (per_seq, n) = old.map_or((per_seq, n), |k| (k.per_seq.max(per_seq), k.n_seq.max(n)));
            // Free the old one first: its memory counts against the limit.
            kept.truncate(i);
            match self.new_context(model, (kv, per_seq), n, shared) {
                Ok(ctx) => kept.push(KeptContext { ctx, per_seq, n_seq: n, kv }),
                Err(e) => {
                    fitted = Err(e);
                    break;
                }
            }
        }
        let cells: u64 = kept.iter().map(|k| k.kv.cells(k.per_seq, k.n_seq)).sum();
        shared.set_kv_bytes(cells * self.kv_per_token);
        fitted
    }
}

/// What a lane shares with the others of its batch.
struct Lane<'a> {
    index: usize,
    of: usize,
    kv: KvLayout,
    /// Per request (by its index among the batch's jobs): its `Prefilled` event, sent once by
    /// the first lane to get there, the others waiting until it is sent.
    prefilled: &'a [Once],
    started: Instant,
}

/// Fails every candidate of `parts` not already answered as cancelled.
fn fail_all(parts: &[Part<'_>], error: &str) {
    for p in parts.iter().filter(|p| !p.cancelled) {
        candidate::failed(&p.job.events, &p.all(), error);
    }
}

fn lane_n(parts: &[Part<'_>]) -> u32 {
    parts.iter().map(|p| p.n).sum()
}

/// Deals the sequences of `parts` (in order: request by request, candidate by candidate) out
/// to `lanes` lanes of nearly equal size, each a list of parts with its own sequence ids from
/// 0; a request may span several lanes, each holding a range of its candidates.
fn deal<'j>(parts: &[Part<'j>], lanes: u32) -> Vec<Vec<Part<'j>>> {
    let total = lane_n(parts);
    let mut out: Vec<Vec<Part<'j>>> = (0..lanes).map(|_| Vec::new()).collect();
    let (mut lane, mut used) = (0, 0);
    let size = |lane: u32| total / lanes + u32::from(lane < total % lanes);
    for p in parts {
        let mut first = 0;
        while first < p.n {
            let take = (p.n - first).min(size(lane) - used);
            let slot = &mut out[lane as usize];
            slot.push(Part { tokens: p.tokens.clone(), base: used, first, n: take, ..*p });
            first += take;
            used += take;
            if used == size(lane) && lane + 1 < lanes {
                (lane, used) = (lane + 1, 0);
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn log_request(
    n: u32,
    requests: usize,
    prompt_tokens: u32,
    mode: SamplerMode,
    lane: &Lane<'_>,
    t: &StepTimes,
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
        kv = lane.kv.name(),
        lane = lane.index,
        lanes = lane.of,
        moved = t.moved,
        chain = chain.map_or("cpu", String::as_str),
        sample_threads = if mode.on_host() { sample_threads(n as usize) } else { 0 },
        prefill_ms = ms(prefill),
        decode_ms = ms(t.decode),
        wait_ms = ms(t.wait),
        sample_ms = ms(t.sample),
        step_decode_ms = per_step(t.decode),
        step_wait_ms = per_step(t.wait),
        step_sample_ms = per_step(t.sample),
        wall_ms = ms(lane.started.elapsed()),
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
