//! LEM's sampler chain for llama.cpp, as a list of steps that either side builds: the CPU chain
//! (`llama-cpp-2` samplers over a logits row copied to the host, the reference) and the backend
//! chain (the same llama.cpp samplers attached to the context, run inside the decode graph).
//!
//! Per candidate: end-of-generation bias (`ignore_eos`) → repeat penalty over the generated
//! tokens → top-k → top-p → min-p → temperature → a draw seeded `seed + candidate`; greedy when
//! the temperature is 0. llama.cpp has a graph implementation of every one of these, so on the
//! backend the whole chain runs in the graph: only the chosen token id and the top-k survivors
//! (logits, probabilities, ids) are copied back, not the vocabulary-wide logits row.

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;

use crate::backend::Sampling;

/// Where a request's candidates are sampled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SamplerMode {
    /// On the host, from each sequence's logits row: llama.cpp's samplers over the row's
    /// shortlist where the chain starts with a cut ([`super::shortlist`]), else over the row.
    #[default]
    Cpu,
    /// On the host, llama.cpp's samplers over every entry of the row, as its own
    /// `llama_sampler_sample` does: the reference the shortlist is checked against.
    CpuFull,
    /// In the decode graph (llama.cpp backend sampling): on the GPU when the model is there.
    Backend,
}

impl SamplerMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::CpuFull => "cpu-full",
            Self::Backend => "backend",
        }
    }

    /// Whether the chain runs on the host, over logits rows copied out of the context.
    pub fn on_host(self) -> bool {
        matches!(self, Self::Cpu | Self::CpuFull)
    }
}

/// One llama.cpp sampler of the chain.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Step {
    LogitBias { n_vocab: i32, biases: Vec<(i32, f32)> },
    Penalties { n_vocab: i32, last_n: i32, repeat: f32 },
    TopK(i32),
    TopP(f32),
    MinP(f32),
    Temp(f32),
    Dist(u32),
    Greedy,
}

/// Candidate `candidate`'s seed: llama.cpp seeds with 32 bits.
pub(super) fn seed_of(s: &Sampling, candidate: u32) -> u32 {
    u32::try_from(s.seed.wrapping_add(u64::from(candidate)) & u64::from(u32::MAX)).unwrap_or(0)
}

/// The chain for one candidate. On the backend a greedy choice is top-1 then the draw, because
/// llama.cpp's graph greedy would leave the whole vocabulary's logits to copy back.
pub(super) fn steps(s: &Sampling, candidate: u32, n_vocab: i32, eog: &[LlamaToken], mode: SamplerMode) -> Vec<Step> {
    let mut chain = Vec::new();
    if s.ignore_eos && !eog.is_empty() {
        chain.push(Step::LogitBias { n_vocab, biases: eog.iter().map(|t| (t.0, f32::NEG_INFINITY)).collect() });
    }
    if s.repeat_penalty > 1.0 {
        // Only generated tokens are ever accepted into this sampler, so a window of max_tokens
        // covers the whole response, as go-mlx's penalty does. (llama.cpp reads a window of
        // -1 as 0, which turns the penalty off.)
        let last_n = i32::try_from(s.max_tokens.max(1)).unwrap_or(i32::MAX).min(n_vocab.max(1));
        chain.push(Step::Penalties { n_vocab, last_n, repeat: s.repeat_penalty });
    }
    if s.temperature <= 0.0 {
        match mode {
            SamplerMode::Cpu | SamplerMode::CpuFull => chain.push(Step::Greedy),
            SamplerMode::Backend => chain.extend([Step::TopK(1), Step::Dist(seed_of(s, candidate))]),
        }
        return chain;
    }
    if s.top_k > 0 {
        chain.push(Step::TopK(s.top_k));
    }
    if s.top_p > 0.0 && s.top_p < 1.0 {
        chain.push(Step::TopP(s.top_p));
    }
    if s.min_p > 0.0 {
        chain.push(Step::MinP(s.min_p));
    }
    chain.push(Step::Temp(s.temperature));
    chain.push(Step::Dist(seed_of(s, candidate)));
    chain
}

/// The repeat penalty, applied on the host to a logits row before the rest of the CPU chain:
/// llama.cpp's own penalties sampler looks every one of the vocabulary's entries up in a hash
/// map (262,144 for Gemma 3) per token, where only the generated tokens change. Same arithmetic
/// as llama.cpp's (`logit <= 0` multiplied, else divided), on the same tokens: its window is
/// max_tokens, so it always holds every generated token.
#[derive(Debug)]
pub(super) struct HostPenalty {
    repeat: f32,
    /// Generated token ids, each once, sorted.
    seen: Vec<i32>,
}

impl HostPenalty {
    /// Takes the penalty out of `steps` (the CPU chain), if there is one.
    pub(super) fn take(steps: &mut Vec<Step>) -> Option<Self> {
        let at = steps.iter().position(|s| matches!(s, Step::Penalties { .. }))?;
        match steps.remove(at) {
            Step::Penalties { repeat, .. } => Some(Self { repeat, seen: Vec::new() }),
            _ => None,
        }
    }

    /// Penalises the generated tokens' logits in `cands`, which is indexed by token id.
    pub(super) fn apply(&self, cands: &mut [LlamaTokenData]) {
        for &t in &self.seen {
            if let Some(c) = usize::try_from(t).ok().and_then(|i| cands.get_mut(i)) {
                self.lower(c);
            }
        }
    }

    /// Penalises the generated tokens among `cands`, in any order (a shortlist).
    pub(super) fn apply_sparse(&self, cands: &mut [LlamaTokenData]) {
        for c in cands.iter_mut().filter(|c| self.seen.binary_search(&c.id().0).is_ok()) {
            self.lower(c);
        }
    }

    fn lower(&self, c: &mut LlamaTokenData) {
        let l = c.logit();
        c.set_logit(if l <= 0.0 { l * self.repeat } else { l / self.repeat });
    }

    /// The tokens the penalty lowers, each once, sorted: a shortlist keeps all of them.
    pub(super) fn seen(&self) -> &[i32] {
        &self.seen
    }

    pub(super) fn accept(&mut self, token: LlamaToken) {
        if let Err(at) = self.seen.binary_search(&token.0) {
            self.seen.insert(at, token.0);
        }
    }
}

/// The CPU chain of `steps` through `llama-cpp-2`.
pub(super) fn cpu_sampler(steps: &[Step]) -> LlamaSampler {
    let samplers = steps.iter().map(|step| match step {
        Step::LogitBias { n_vocab, biases } => {
            let biases: Vec<_> = biases.iter().map(|&(t, b)| LlamaLogitBias::new(LlamaToken::new(t), b)).collect();
            LlamaSampler::logit_bias(*n_vocab, &biases)
        }
        Step::Penalties { n_vocab, last_n, repeat } => LlamaSampler::penalties(*n_vocab, *last_n, *repeat, 0.0, 0.0),
        Step::TopK(k) => LlamaSampler::top_k(*k),
        Step::TopP(p) => LlamaSampler::top_p(*p, 1),
        Step::MinP(p) => LlamaSampler::min_p(*p, 1),
        Step::Temp(t) => LlamaSampler::temp(*t),
        Step::Dist(seed) => LlamaSampler::dist(*seed),
        Step::Greedy => LlamaSampler::greedy(),
    });
    LlamaSampler::chain_simple(samplers.collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lem() -> Sampling {
        Sampling {
            max_tokens: 256,
            temperature: 0.75,
            top_k: 40,
            top_p: 0.95,
            repeat_penalty: 1.1,
            seed: 42,
            ..Sampling::default()
        }
    }

    #[test]
    fn both_sides_run_the_same_chain_in_lems_order() {
        let eog = [LlamaToken::new(1), LlamaToken::new(106)];
        let s = Sampling { ignore_eos: true, min_p: 0.05, ..lem() };
        let want = vec![
            Step::LogitBias { n_vocab: 1000, biases: vec![(1, f32::NEG_INFINITY), (106, f32::NEG_INFINITY)] },
            Step::Penalties { n_vocab: 1000, last_n: 256, repeat: 1.1 },
            Step::TopK(40),
            Step::TopP(0.95),
            Step::MinP(0.05),
            Step::Temp(0.75),
            Step::Dist(45),
        ];
        assert_eq!(steps(&s, 3, 1000, &eog, SamplerMode::Cpu), want);
        assert_eq!(steps(&s, 3, 1000, &eog, SamplerMode::Backend), want);
    }

    #[test]
    fn the_penalty_window_is_never_zero_and_off_means_absent() {
        let s = Sampling { max_tokens: 0, ..lem() };
        assert!(steps(&s, 0, 50, &[], SamplerMode::Cpu).contains(&Step::Penalties {
            n_vocab: 50,
            last_n: 1,
            repeat: 1.1
        }));
        let s = Sampling { max_tokens: 4096, ..lem() };
        assert!(steps(&s, 0, 50, &[], SamplerMode::Cpu).contains(&Step::Penalties {
            n_vocab: 50,
            last_n: 50,
            repeat: 1.1
        }));
        let s = Sampling { repeat_penalty: 1.0, top_p: 1.0, ..lem() };
        assert_eq!(steps(&s, 0, 50, &[], SamplerMode::Cpu), vec![Step::TopK(40), Step::Temp(0.75), Step::Dist(42)]);
    }

    #[test]
    fn greedy_is_argmax_on_the_cpu_and_top_one_on_the_backend() {
        let s = Sampling { temperature: 0.0, ..lem() };
        let pen = Step::Penalties { n_vocab: 9, last_n: 9, repeat: 1.1 };
        assert_eq!(steps(&s, 0, 9, &[], SamplerMode::Cpu), vec![pen.clone(), Step::Greedy]);
        assert_eq!(steps(&s, 0, 9, &[], SamplerMode::Backend), vec![pen, Step::TopK(1), Step::Dist(42)]);
    }

    #[test]
    fn the_host_penalty_scales_generated_tokens_as_llama_cpp_does() {
        let mut chain = steps(&lem(), 0, 4, &[], SamplerMode::Cpu);
        let mut p = HostPenalty::take(&mut chain).expect("LEM's chain has a penalty");
        assert!(!chain.iter().any(|s| matches!(s, Step::Penalties { .. })), "taken out of the chain");
        let row = [2.2_f32, -1.0, 0.0, 3.0];
        let cands = |row: &[f32]| -> Vec<LlamaTokenData> {
            (0..).zip(row).map(|(i, &l)| LlamaTokenData::new(LlamaToken::new(i), l, 0.0)).collect()
        };
        let mut c = cands(&row);
        p.apply(&mut c);
        assert_eq!(c.iter().map(LlamaTokenData::logit).collect::<Vec<_>>(), row, "nothing generated yet");
        for t in [1, 0, 1, 2] {
            p.accept(LlamaToken::new(t));
        }
        let mut c = cands(&row);
        p.apply(&mut c);
        assert_eq!(c.iter().map(LlamaTokenData::logit).collect::<Vec<_>>(), [2.2 / 1.1, -1.1, 0.0, 3.0]);
        // A shortlist in another order gets the same values.
        let mut short: Vec<LlamaTokenData> = [3, 1, 0].iter().map(|&i| cands(&row)[i]).collect();
        p.apply_sparse(&mut short);
        assert_eq!(short.iter().map(LlamaTokenData::logit).collect::<Vec<_>>(), [3.0, -1.1, 2.2 / 1.1]);
        assert_eq!(p.seen().len(), 3);
        let mut plain = steps(&Sampling { repeat_penalty: 1.0, ..lem() }, 0, 4, &[], SamplerMode::Cpu);
        assert!(HostPenalty::take(&mut plain).is_none());
    }

    #[test]
    fn seeds_wrap_to_32_bits_per_candidate() {
        let s = Sampling { seed: u64::from(u32::MAX), ..lem() };
        assert_eq!(seed_of(&s, 0), u32::MAX);
        assert_eq!(seed_of(&s, 1), 0);
    }
}
