//! What a batch needs before its first decode: each request's prompt and place among the
//! batch's sequences ([`Part`]), and a context sized for them under the memory limit.

use std::time::Duration;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::super::raw::{Context, ContextParams};
use super::super::{EngineConfig, estimate_bytes};
use super::N_BATCH;
use crate::backend::GenRequest;
use crate::backend::candidate::RequestClock;
use crate::backend::memory::MIB;
use crate::backend::worker::{Job, WorkerShared};

impl EngineConfig {
    /// A context for `n_ctx` cells shared by `n` sequences, refused when it would not fit
    /// under the memory limit next to what the process already holds.
    pub(super) fn new_context<'m>(
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
    pub tokens: Vec<LlamaToken>,
    /// The sequence id of its candidate 0; its candidates are `base..base + n`.
    pub base: u32,
    pub n: u32,
    /// Set at the first step: when its candidates' clock started, and its prefill time.
    pub clock: Option<(RequestClock, Duration)>,
    pub cancelled: bool,
}

impl Part<'_> {
    pub(super) fn seq_id(&self, candidate: u32) -> i32 {
        i32::try_from(self.base + candidate).unwrap_or(i32::MAX)
    }

    pub(super) fn all(&self) -> Vec<u32> {
        (0..self.n).collect()
    }

    pub(super) fn prompt_len(&self) -> u32 {
        u32::try_from(self.tokens.len()).unwrap_or(u32::MAX)
    }

    /// KV cells: the prompt once, each candidate's answer, and a margin.
    pub(super) fn need(&self) -> u64 {
        u64::from(self.prompt_len()) + u64::from(self.n) * u64::from(self.job.req.sampling.max_tokens) + 8
    }
}
