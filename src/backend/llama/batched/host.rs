//! Sampling a batched step on the host: each live sequence's logits row through its CPU chain
//! (over the row's shortlist where the chain has one), spread over threads.

use std::sync::OnceLock;

use rayon::prelude::*;

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;

use super::super::chain::HostPenalty;
use super::super::raw::Context;
use super::super::shortlist::Shortlist;
use super::{Seq, StepTimes};

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
/// already copied out of the context, so that sequences can be sampled on several threads;
/// over the row's shortlist when the chain has one. Also says whether it was shortlisted.
fn sample_logits(
    sampler: &mut LlamaSampler,
    penalty: Option<&mut HostPenalty>,
    shortlist: Option<&Shortlist>,
    logits: &[f32],
    buf: &mut Vec<LlamaTokenData>,
) -> (LlamaToken, bool) {
    let mut cands = std::mem::take(buf);
    let touched = penalty.as_ref().map_or(&[][..], |p| p.seen());
    // The penalty is the chain's step after the end-of-generation bias; the bias only ever adds
    // -inf, which the penalty keeps, so applying it first gives the same logits.
    let shortlisted = shortlist.is_some_and(|s| s.fill(logits, touched, &mut cands));
    if shortlisted {
        if let Some(p) = &penalty {
            p.apply_sparse(&mut cands);
        }
    } else {
        cands.clear();
        cands.extend((0_i32..).zip(logits).map(|(id, &logit)| LlamaTokenData::new(LlamaToken::new(id), logit, 0.0)));
        if let Some(p) = &penalty {
            p.apply(&mut cands);
        }
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
    (token, shortlisted)
}

/// Samples the next token of every live sequence from its logits row on the host: on this thread
/// when one thread is asked for, else spread over rayon's pool (each sequence has its own
/// sampler, so the tokens are the same either way).
pub(super) fn sample_step_cpu(ctx: &mut Context<'_>, seqs: &mut [Seq], times: &mut StepTimes) -> Result<(), String> {
    let mut live: Vec<&mut Seq> = seqs.iter_mut().filter(|s| s.live).collect();
    let idxs: Vec<i32> = live.iter().map(|s| s.out_at).collect();
    let logits = ctx.logits_rows(&idxs)?;
    let threads = sample_threads(live.len());
    let per = live.len().div_ceil(threads);
    // Returns how many of the chunk's tokens came from a shortlist.
    let sample_chunk = |chunk: &mut [&mut Seq], rows: &[&[f32]]| -> u32 {
        let mut shortlisted = 0;
        for (seq, row) in chunk.iter_mut().zip(rows) {
            if let Some(sampler) = seq.sampler.as_mut() {
                let (next, short) =
                    sample_logits(sampler, seq.penalty.as_mut(), seq.shortlist.as_ref(), row, &mut seq.cands);
                seq.next = next;
                shortlisted += u32::from(short);
            }
        }
        shortlisted
    };
    times.shortlisted += if threads <= 1 {
        sample_chunk(&mut live, &logits)
    } else {
        // rayon's pool keeps its threads between steps: spawning a thread per chunk every step
        // cost about as much as the sampling itself (tens of µs each, every few ms).
        live.par_chunks_mut(per).zip(logits.par_chunks(per)).map(|(chunk, rows)| sample_chunk(chunk, rows)).sum()
    };
    Ok(())
}
