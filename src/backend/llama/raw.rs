//! The llama.cpp calls `llama-cpp-2` (=0.1.160) does not wrap, behind a safe interface: a
//! context whose sequences can carry backend sampler chains (llama.cpp's experimental backend
//! sampling: the chain runs inside the decode graph, on the GPU in a CUDA build, and only the
//! chosen token and the few surviving candidates come back), the batch it decodes, its KV cells,
//! and the logits rows of the CPU path.
//!
//! Everything here owns what it frees: a [`Context`] frees its `llama_context` before the
//! chains attached to it, a [`Chain`] frees its `llama_sampler`, a [`Batch`] its arrays.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::marker::PhantomData;
use std::ptr::NonNull;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_sys_2 as sys;

use super::chain::Step;

/// The `llama_model` behind a [`LlamaModel`].
fn model_ptr(model: &LlamaModel) -> *mut sys::llama_model {
    const _: () = assert!(size_of::<LlamaModel>() == size_of::<NonNull<sys::llama_model>>());
    // SAFETY: llama-cpp-2 0.1.160 (pinned with `=` in Cargo.toml) declares `LlamaModel` as
    // `#[repr(transparent)]` over `Ptr<llama_model>`, itself `#[repr(transparent)]` over
    // `NonNull<llama_model>`: a `&LlamaModel` points at that `NonNull`, which is only read here.
    let ptr = unsafe { *std::ptr::from_ref(model).cast::<NonNull<sys::llama_model>>() };
    ptr.as_ptr()
}

/// How to size a [`Context`].
#[derive(Clone, Copy, Debug)]
pub(super) struct ContextParams {
    pub n_ctx: u32,
    pub n_seq: u32,
    pub n_batch: u32,
    /// One KV stream all sequences share, or one per sequence ([`super::KvLayout`]).
    pub unified: bool,
    /// CPU threads; 0 = llama.cpp's default.
    pub threads: i32,
}

/// A sampler chain built by llama.cpp from [`Step`]s, owned until dropped.
pub(super) struct Chain(NonNull<sys::llama_sampler>);

// SAFETY: a sampler is plain heap state; it is used by one thread at a time (`&mut` or through
// the context that owns the thread's decode), as llama-cpp-2 does for its `LlamaSampler`.
unsafe impl Send for Chain {}

impl Chain {
    /// The chain of `steps`, in order. `None` if llama.cpp returned no sampler.
    pub(super) fn new(steps: &[Step]) -> Option<Self> {
        // SAFETY: plain constructors; each sampler added to the chain is owned by it from then on.
        unsafe {
            let mut params = sys::llama_sampler_chain_default_params();
            params.no_perf = true;
            let chain = NonNull::new(sys::llama_sampler_chain_init(params))?;
            let chain = Self(chain);
            for step in steps {
                let s = match step {
                    Step::LogitBias { n_vocab, biases } => {
                        let biases: Vec<sys::llama_logit_bias> =
                            biases.iter().map(|&(token, bias)| sys::llama_logit_bias { token, bias }).collect();
                        sys::llama_sampler_init_logit_bias(*n_vocab, i32::try_from(biases.len()).ok()?, biases.as_ptr())
                    }
                    Step::Penalties { n_vocab, last_n, repeat } => {
                        sys::llama_sampler_init_penalties(*n_vocab, *last_n, *repeat, 0.0, 0.0)
                    }
                    Step::TopK(k) => sys::llama_sampler_init_top_k(*k),
                    Step::TopP(p) => sys::llama_sampler_init_top_p(*p, 1),
                    Step::MinP(p) => sys::llama_sampler_init_min_p(*p, 1),
                    Step::Temp(t) => sys::llama_sampler_init_temp(*t),
                    Step::Dist(seed) => sys::llama_sampler_init_dist(*seed),
                    Step::Greedy => sys::llama_sampler_init_greedy(),
                };
                if s.is_null() {
                    return None;
                }
                sys::llama_sampler_chain_add(chain.0.as_ptr(), s);
            }
            Some(chain)
        }
    }

    /// The names of the chain's samplers; once attached to a context, llama.cpp marks each
    /// `+name` (runs in the graph) or `-name` (the backend lacks an op: runs on the CPU).
    pub(super) fn describe(&self) -> String {
        // SAFETY: the chain is alive; indices are within `llama_sampler_chain_n`; names are
        // NUL-terminated strings owned by the samplers, copied before returning.
        unsafe {
            let n = sys::llama_sampler_chain_n(self.0.as_ptr());
            (0..n)
                .map(|i| {
                    let s = sys::llama_sampler_chain_get(self.0.as_ptr(), i);
                    let name = if s.is_null() { std::ptr::null() } else { sys::llama_sampler_name(s) };
                    if name.is_null() { "?".to_owned() } else { CStr::from_ptr(name).to_string_lossy().into_owned() }
                })
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // SAFETY: owned; a context it was attached to has let go of it first (see `Context`).
        unsafe { sys::llama_sampler_free(self.0.as_ptr()) }
    }
}

/// A `llama_context` on a model it borrows, with the backend chains attached to its sequences.
pub(super) struct Context<'m> {
    ctx: NonNull<sys::llama_context>,
    n_vocab: usize,
    /// The chain attached to each sequence (index = sequence id).
    chains: Vec<Option<Chain>>,
    _model: PhantomData<&'m LlamaModel>,
}

// SAFETY: a llama_context may move between threads as long as one thread uses it at a time,
// which `&mut self` on every call that touches it ensures (as llama-cpp-2's `LlamaContext`).
unsafe impl Send for Context<'_> {}

impl<'m> Context<'m> {
    pub(super) fn new(model: &'m LlamaModel, p: ContextParams) -> Result<Self, String> {
        // SAFETY: the model outlives the context ('m); the params are llama.cpp's defaults with
        // plain fields changed.
        unsafe {
            let mut params = sys::llama_context_default_params();
            params.n_ctx = p.n_ctx;
            params.n_batch = p.n_batch;
            params.n_ubatch = p.n_batch;
            params.n_seq_max = p.n_seq;
            params.kv_unified = p.unified;
            // Every decode asks one output per sequence: with more, llama.cpp's penalties
            // sampler declines the graph and the seeded draw becomes transactional.
            params.n_outputs_max_per_seq = 1;
            if p.threads > 0 {
                params.n_threads = p.threads;
                params.n_threads_batch = p.threads;
            }
            let model = model_ptr(model);
            let ctx = NonNull::new(sys::llama_init_from_model(model, params))
                .ok_or_else(|| "llama.cpp could not create the context".to_owned())?;
            let n_vocab = sys::llama_vocab_n_tokens(sys::llama_model_get_vocab(model));
            let chains = (0..p.n_seq).map(|_| None).collect();
            Ok(Self { ctx, n_vocab: usize::try_from(n_vocab).unwrap_or(0), chains, _model: PhantomData })
        }
    }

    /// Sets every sequence's chain (`None`: that sequence is sampled from its logits on the
    /// CPU) and returns how llama.cpp placed each attached chain ([`Chain::describe`]).
    pub(super) fn attach(&mut self, chains: Vec<Option<Chain>>) -> Vec<String> {
        let mut old = Vec::with_capacity(self.chains.len());
        let mut placed = Vec::new();
        let mut chains = chains.into_iter();
        for seq in 0..self.chains.len() {
            let new = chains.next().flatten();
            let ptr = new.as_ref().map_or(std::ptr::null_mut(), |c| c.0.as_ptr());
            let seq_id = i32::try_from(seq).unwrap_or(i32::MAX);
            // SAFETY: the context and the chain are alive; the chain is kept in `self.chains`
            // for as long as the context refers to it.
            unsafe { sys::llama_set_sampler(self.ctx.as_ptr(), seq_id, ptr) };
            if let Some(c) = &new {
                placed.push(c.describe());
            }
            old.push(std::mem::replace(&mut self.chains[seq], new));
        }
        // The replaced chains are freed only now, after every new one was allocated: the graph
        // llama.cpp kept from the last decode is matched to its chains by address, and a new
        // chain at a freed one's address could make it reuse that graph.
        drop(old);
        placed
    }

    /// Forgets every sequence's cells (the buffers stay allocated).
    pub(super) fn clear_kv(&mut self) {
        // SAFETY: the context is alive; its memory object lives as long as it.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ctx.as_ptr()), true) }
    }

    /// Shares sequence `src`'s cells with `dst`: in one stream by reference; across streams
    /// (split layout) by copying `src`'s whole stream over `dst`'s at the next decode.
    pub(super) fn copy_kv(&mut self, src: i32, dst: i32) {
        // SAFETY: as above; llama.cpp bounds-checks the sequence ids.
        unsafe { sys::llama_memory_seq_cp(sys::llama_get_memory(self.ctx.as_ptr()), src, dst, -1, -1) }
    }

    /// Forgets sequence `seq`'s cells.
    pub(super) fn remove_kv(&mut self, seq: i32) {
        // SAFETY: as above. A whole-sequence removal always succeeds, so the result says nothing.
        unsafe { sys::llama_memory_seq_rm(sys::llama_get_memory(self.ctx.as_ptr()), seq, -1, -1) };
    }

    /// Queues `batch` (llama.cpp may return before a GPU has finished); the error is
    /// llama_decode's status.
    pub(super) fn decode(&mut self, batch: &Batch) -> Result<(), i32> {
        // SAFETY: the batch's arrays are alive and hold `n_tokens` filled entries.
        match unsafe { sys::llama_decode(self.ctx.as_ptr(), batch.raw) } {
            0 => Ok(()),
            status => Err(status),
        }
    }

    /// Waits for the queued decode (and the copies of its outputs) to finish.
    pub(super) fn synchronize(&mut self) {
        // SAFETY: the context is alive.
        unsafe { sys::llama_synchronize(self.ctx.as_ptr()) }
    }

    /// The token sequence `seq`'s chain chose for output `idx` of the last decode: read back from
    /// the graph when the whole chain ran there, else finished on the CPU over the candidates
    /// the graph left. The chain accepts the token. `None` if `seq` has no chain.
    pub(super) fn sample(&mut self, seq: usize, idx: i32) -> Option<LlamaToken> {
        let chain = self.chains.get(seq)?.as_ref()?;
        // SAFETY: the chain is attached to this live context; `idx` is an output of its last
        // decode (llama.cpp aborts on an invalid one, as llama-cpp-2's `sample` would).
        Some(LlamaToken::new(unsafe { sys::llama_sampler_sample(chain.0.as_ptr(), self.ctx.as_ptr(), idx) }))
    }

    /// The token the graph chose for output `idx` of the last decode, if the whole chain ran
    /// there (else [`Context::sample`] finishes it on the CPU).
    pub(super) fn graph_token(&mut self, idx: i32) -> Option<LlamaToken> {
        // SAFETY: the context is alive; llama.cpp returns LLAMA_TOKEN_NULL (-1) when it has no
        // sampled token for `idx`.
        let t = unsafe { sys::llama_get_sampled_token_ith(self.ctx.as_ptr(), idx) };
        (t >= 0).then(|| LlamaToken::new(t))
    }

    /// The logits rows of outputs `idxs` of the last decode, in that order.
    pub(super) fn logits_rows(&mut self, idxs: &[i32]) -> Result<Vec<&[f32]>, String> {
        let ctx = self.ctx.as_ptr();
        idxs.iter()
            .map(|&i| {
                // SAFETY: llama.cpp returns null for an index without logits, else a row of
                // n_vocab floats that stays valid until the next decode, which needs `&mut self`
                // while these slices borrow it.
                unsafe {
                    let row = sys::llama_get_logits_ith(ctx, i);
                    if row.is_null() {
                        Err(format!("no logits for output {i}"))
                    } else {
                        Ok(std::slice::from_raw_parts(row.cast_const(), self.n_vocab))
                    }
                }
            })
            .collect()
    }
}

impl Drop for Context<'_> {
    fn drop(&mut self) {
        // SAFETY: owned; freed before the chains (fields drop after this body).
        unsafe { sys::llama_free(self.ctx.as_ptr()) }
    }
}

/// A `llama_batch` of single-sequence tokens.
pub(super) struct Batch {
    raw: sys::llama_batch,
    capacity: usize,
}

// SAFETY: the batch owns its arrays; nothing else refers to them.
unsafe impl Send for Batch {}

impl Batch {
    pub(super) fn new(capacity: usize) -> Self {
        let cap = i32::try_from(capacity.max(1)).unwrap_or(i32::MAX);
        // SAFETY: allocates `cap` entries, each with room for one sequence id.
        let raw = unsafe { sys::llama_batch_init(cap, 0, 1) };
        Self { raw, capacity: usize::try_from(cap).unwrap_or(0) }
    }

    pub(super) fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    pub(super) fn len(&self) -> usize {
        usize::try_from(self.raw.n_tokens).unwrap_or(0)
    }

    /// Appends `token` at `pos` of sequence `seq`; `output` asks for its logits (or sample).
    pub(super) fn add(&mut self, token: LlamaToken, pos: i32, seq: i32, output: bool) -> Result<(), String> {
        let i = self.len();
        if i >= self.capacity {
            return Err(format!("batch full ({} tokens)", self.capacity));
        }
        // SAFETY: i < capacity, the size llama_batch_init allocated every array with; each
        // seq_id entry has room for one id.
        unsafe {
            *self.raw.token.add(i) = token.0;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)) = seq;
            *self.raw.logits.add(i) = i8::from(output);
        }
        self.raw.n_tokens += 1;
        Ok(())
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init, freed once.
        unsafe { sys::llama_batch_free(self.raw) }
    }
}
