//! What a batch needs before its first decode: each request's prompt and place among the
//! batch's sequences ([`Part`]), and a context sized for them under the memory limit, in the
//! KV layout asked for ([`KvLayout`]).

use std::time::Duration;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::super::raw::{Context, ContextParams};
use super::super::{EngineConfig, KvLayout, estimate_bytes};
use super::N_BATCH;
use crate::backend::GenRequest;
use crate::backend::candidate::RequestClock;
use crate::backend::memory::MIB;
use crate::backend::worker::{Job, WorkerShared};

impl EngineConfig {
    /// The context a batch of `parts` (`n` sequences) needs: its layout, and the cells per
    /// sequence (all of the context's when unified, one stream's when split).
    pub(super) fn batch_shape(&self, parts: &[Part<'_>], n: u32, train: u64) -> (KvLayout, u64) {
        // The graph's samplers are attached per sequence id, which compaction would move
        // ([`super::compact`]): with them the cache stays unified.
        let kv = if self.opts.sampler.on_host() { self.opts.kv } else { KvLayout::Unified };
        let cells = match kv {
            KvLayout::Unified => parts.iter().map(Part::need).sum::<u64>().min(train.saturating_mul(u64::from(n))),
            KvLayout::Split => parts.iter().map(Part::need_one).max().unwrap_or(0).min(train),
        };
        (kv, cells.next_multiple_of(256))
    }

    /// A context of `per_seq` cells per sequence ([`Self::batch_shape`]) for `n` sequences,
    /// refused when it would not fit under the memory limit next to what the process holds.
    pub(super) fn new_context<'m>(
        &self,
        model: &'m LlamaModel,
        (kv, per_seq): (KvLayout, u64),
        n: u32,
        shared: &WorkerShared,
    ) -> Result<Context<'m>, String> {
        let limits = shared.limits();
        let n_ctx = kv.cells(per_seq, n);
        let estimate = estimate_bytes(0, n_ctx, self.kv_per_token);
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
            unified: kv == KvLayout::Unified,
            threads: i32::try_from(self.opts.threads).unwrap_or(0),
        };
        Context::new(model, params)
            .map_err(|e| format!("context ({n_ctx} tokens × {n} sequences, {} KV): {e}", kv.name()))
    }

    /// A request's prompt as tokens, refused when it is empty or longer than the model's context.
    pub(super) fn prompt_tokens(
        &self,
        model: &LlamaModel,
        req: &GenRequest,
        train: u64,
    ) -> Result<Vec<LlamaToken>, String> {
        let prompt = self.render(model, req)?;
        let tokens = model.vocab().tokenize(prompt.as_bytes(), true, true);
        if tokens.is_empty() {
            return Err("the prompt has no tokens".into());
        }
        let prompt_len = tokens.len() as u64;
        if prompt_len + 8 > train {
            return Err(format!("prompt is {prompt_len} tokens; the model's context is {train}"));
        }
        Ok(tokens)
    }
}

/// One request of a batch: its prompt and its place among the batch's sequences.
pub(super) struct Part<'j> {
    pub job: &'j Job,
    /// The request's index among the batch's jobs.
    pub at: usize,
    pub tokens: Vec<LlamaToken>,
    /// The sequence id of its first candidate here; they are `base..base + n` (in its lane).
    pub base: u32,
    /// Which of the request's candidates are here: `first..first + n` (a lane may hold a range).
    pub first: u32,
    pub n: u32,
    /// Set at the first step: when its candidates' clock started, and its prefill time.
    pub clock: Option<(RequestClock, Duration)>,
    pub cancelled: bool,
}

impl Part<'_> {
    /// The sequence id of the `k`-th of its candidates here (candidate `first + k`).
    pub(super) fn seq_id(&self, k: u32) -> i32 {
        i32::try_from(self.base + k).unwrap_or(i32::MAX)
    }

    /// Its candidates here.
    pub(super) fn all(&self) -> Vec<u32> {
        (self.first..self.first + self.n).collect()
    }

    pub(super) fn prompt_len(&self) -> u32 {
        u32::try_from(self.tokens.len()).unwrap_or(u32::MAX)
    }

    /// KV cells in a unified cache: the prompt once, each candidate's answer, and a margin.
    pub(super) fn need(&self) -> u64 {
        u64::from(self.prompt_len()) + u64::from(self.n) * u64::from(self.job.req.sampling.max_tokens) + 8
    }

    /// KV cells in one sequence's stream: the prompt, one answer, and a margin.
    pub(super) fn need_one(&self) -> u64 {
        u64::from(self.prompt_len()) + u64::from(self.job.req.sampling.max_tokens) + 8
    }
}
