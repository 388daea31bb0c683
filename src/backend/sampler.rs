//! The sampler go-mlx uses, on a logits row in host memory: the reference for the MLX
//! engine's device sampler (`backend::mlx::sample`, which runs the same chain as MLX ops and
//! draws from the same [`Rng`]); llama.cpp has its own chain.
//!
//! Order as the newest go-mlx (`internal/metal/sample.go`): repeat penalty over the unique
//! *generated* tokens, then temperature → top-p → top-k → min-p → categorical. Temperature 0 is greedy
//! argmax and ignores everything else. Each candidate owns a sampler seeded `seed + candidate`,
//! so a request's candidates are reproducible one by one, batched or not.

use super::Sampling;

/// SplitMix64: tiny, seedable and good enough for drawing one token per step. The device
/// sampler (MLX) draws from the same generator on the host, so a candidate's uniform draws are
/// the same wherever its token is picked.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Candidate `candidate` of a request seeded `seed`.
    pub fn for_candidate(seed: u64, candidate: u32) -> Self {
        Self(seed.wrapping_add(u64::from(candidate)))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        // 53 random bits: the exact resolution of an f64 in [0, 1).
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Debug)]
pub struct Sampler {
    temperature: f32,
    top_p: f32,
    top_k: i32,
    min_p: f32,
    repeat_penalty: f32,
    rng: Rng,
    /// Generated token ids, each once (the penalty applies per unique token).
    seen: Vec<u32>,
    /// Scratch: (logit, id) pairs, reused every step.
    order: Vec<(f32, u32)>,
}

impl Sampler {
    pub fn new(s: &Sampling, candidate: u32) -> Self {
        Self {
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            min_p: s.min_p,
            repeat_penalty: s.repeat_penalty,
            rng: Rng::for_candidate(s.seed, candidate),
            seen: Vec::new(),
            order: Vec::new(),
        }
    }

    /// True when the choice is the argmax of the (penalised) logits: the engine may then take
    /// it on the device and skip copying the row out.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Whether [`Sampler::penalise`] would change anything yet.
    pub fn penalises(&self) -> bool {
        self.repeat_penalty > 1.0 && !self.seen.is_empty()
    }

    /// Records a generated token for the repeat penalty.
    pub fn accept(&mut self, token: u32) {
        if let Err(at) = self.seen.binary_search(&token) {
            self.seen.insert(at, token);
        }
    }

    /// go-mlx's repeat penalty: positive logits of generated tokens are divided by the penalty,
    /// negative ones multiplied.
    pub fn penalise(&self, logits: &mut [f32]) {
        if !self.penalises() {
            return;
        }
        for &t in &self.seen {
            if let Some(l) = logits.get_mut(t as usize) {
                *l = if *l > 0.0 { *l / self.repeat_penalty } else { *l * self.repeat_penalty };
            }
        }
    }

    /// Picks the next token from one row of logits (modified in place).
    pub fn sample(&mut self, logits: &mut [f32]) -> u32 {
        if self.is_greedy() {
            self.penalise(logits);
            return argmax(logits);
        }
        let u = self.rng.next_f64();
        self.pick(logits, u)
    }

    /// The chain with a given uniform draw `u` in [0, 1): what [`Sampler::sample`] does after
    /// drawing, and the reference the device sampler is tested against.
    pub fn pick(&mut self, logits: &mut [f32], u: f64) -> u32 {
        self.penalise(logits);
        if self.is_greedy() {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.temperature;
        self.order.clear();
        self.order.extend(logits.iter().enumerate().filter(|(_, l)| !l.is_nan()).map(|(i, &l)| (l * inv_t, i as u32)));
        if self.order.is_empty() {
            return 0;
        }
        // Top-p is taken on the whole distribution and top-k after it (go-mlx's order); the
        // two cuts only keep a prefix of the sorted tokens, so sorting the top k is enough as
        // long as the mass is that of all tokens.
        let max = self.order.iter().map(|&(l, _)| f64::from(l)).fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = self.order.iter().map(|&(l, _)| (f64::from(l) - max).exp()).sum();
        let by_logit_desc = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if self.top_k > 0 && (self.top_k as usize) < self.order.len() {
            let k = self.top_k as usize;
            self.order.select_nth_unstable_by(k - 1, by_logit_desc);
            self.order.truncate(k);
        }
        self.order.sort_unstable_by(by_logit_desc);
        let mut probs: Vec<f64> = self.order.iter().map(|&(l, _)| (f64::from(l) - max).exp()).collect();
        if self.top_p > 0.0 && self.top_p < 1.0 {
            // Keep a token while the mass before it is within p: the most likely always stays.
            let p = f64::from(self.top_p) * total;
            let mut before = 0.0;
            let mut keep = 0;
            for q in &probs {
                if before > p {
                    break;
                }
                before += q;
                keep += 1;
            }
            probs.truncate(keep.max(1));
        }
        if self.min_p > 0.0 && self.min_p < 1.0 {
            // probs[0] is the most likely (sorted); keep what reaches min_p of it.
            let floor = f64::from(self.min_p) * probs[0];
            let keep = probs.iter().take_while(|&&q| q >= floor).count();
            probs.truncate(keep.max(1));
        }
        let mass: f64 = probs.iter().sum();
        let mut x = u * mass;
        for (i, q) in probs.iter().enumerate() {
            if x < *q {
                return self.order[i].1;
            }
            x -= q;
        }
        self.order[probs.len() - 1].1
    }
}

/// Index of the largest value; the first one on ties (as `mx.argmax`); NaN never wins.
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in row.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_p_counts_the_whole_distribution_even_with_top_k() {
        // p = (0.4, 0.35, 0.25), top_p 0.5, top_k 2: the mass before token 1 is 0.4 of all
        // tokens (kept), not 0.4 / 0.75 of the top two (which would drop it).
        let row = [0.4f32.ln(), 0.35f32.ln(), 0.25f32.ln()];
        let mut s = Sampler::new(&sampling(1.0, 0.5, 2, 1.0, 11), 0);
        let picks: Vec<u32> = (0..2000).map(|_| s.sample(&mut row.clone())).collect();
        assert!(picks.contains(&1) && !picks.contains(&2));
    }

    #[test]
    fn min_p_drops_tokens_under_its_share_of_the_top_probability() {
        // p = (0.5, 0.3, 0.2): min_p 0.5 keeps tokens with p >= 0.25, so token 2 never comes.
        let row = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let mut s = Sampler::new(&Sampling { temperature: 1.0, min_p: 0.5, seed: 5, ..Sampling::default() }, 0);
        let picks: Vec<u32> = (0..3000).map(|_| s.sample(&mut row.clone())).collect();
        assert!(picks.contains(&0) && picks.contains(&1) && !picks.contains(&2));
    }

    fn sampling(temperature: f32, top_p: f32, top_k: i32, repeat_penalty: f32, seed: u64) -> Sampling {
        Sampling { temperature, top_p, top_k, repeat_penalty, seed, ..Sampling::default() }
    }

    #[test]
    fn greedy_is_the_first_maximum() {
        let mut s = Sampler::new(&sampling(0.0, 0.9, 5, 1.0, 1), 0);
        assert_eq!(s.sample(&mut [0.1, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -5.0, -4.0]), 2);
    }

    #[test]
    fn repeat_penalty_divides_positive_and_multiplies_negative_logits_of_generated_tokens() {
        let mut s = Sampler::new(&sampling(0.0, 0.0, 0, 2.0, 1), 0);
        let mut row = [4.0, -1.0, 3.0];
        s.penalise(&mut row);
        assert_eq!(row, [4.0, -1.0, 3.0], "nothing generated yet");
        s.accept(0);
        s.accept(1);
        s.accept(0);
        s.penalise(&mut row);
        assert_eq!(row, [2.0, -2.0, 3.0]);
        // …so greedy now moves off the repeated token.
        assert_eq!(s.sample(&mut [4.0, -1.0, 3.0]), 2);
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        for seed in 0..50 {
            let mut k1 = Sampler::new(&sampling(1.5, 0.0, 1, 1.0, seed), 0);
            assert_eq!(k1.sample(&mut [0.0, 0.5, 2.0, 1.9]), 2);
            let mut p = Sampler::new(&sampling(1.5, 0.01, 0, 1.0, seed), 0);
            assert_eq!(p.sample(&mut [0.0, 0.5, 2.0, 1.9]), 2);
        }
    }

    #[test]
    fn draws_follow_the_tempered_distribution_and_repeat_with_the_seed() {
        // Two tokens with logits 0 and ln 3: probabilities 1/4 and 3/4 at T = 1.
        let row = [0.0, 3f32.ln()];
        let draw = |seed| {
            let mut s = Sampler::new(&sampling(1.0, 0.0, 0, 1.0, seed), 0);
            (0..4000).map(|_| s.sample(&mut row.clone())).filter(|&t| t == 1).count()
        };
        let ones = draw(9);
        assert!((2850..3150).contains(&ones), "{ones} of 4000 ≈ 3000");
        assert_eq!(draw(9), ones, "same seed, same draws");
        assert_ne!(draw(10), ones, "another seed, other draws");
        // Candidate i samples with seed + i.
        let mut a = Sampler::new(&sampling(1.0, 0.0, 0, 1.0, 9), 1);
        let mut b = Sampler::new(&sampling(1.0, 0.0, 0, 1.0, 10), 0);
        let rows: Vec<u32> = (0..64).map(|_| a.sample(&mut row.clone())).collect();
        assert_eq!(rows, (0..64).map(|_| b.sample(&mut row.clone())).collect::<Vec<_>>());
    }

    #[test]
    fn top_p_cuts_the_tail() {
        // p = (0.6, 0.3, 0.1): with top_p 0.5 the mass before token 1 is 0.6 > 0.5, so only
        // token 0 survives; with 0.7 tokens 0 and 1 do.
        let row = [0.6f32.ln(), 0.3f32.ln(), 0.1f32.ln()];
        let mut s = Sampler::new(&sampling(1.0, 0.5, 0, 1.0, 3), 0);
        assert!((0..500).all(|_| s.sample(&mut row.clone()) == 0));
        let mut s = Sampler::new(&sampling(1.0, 0.7, 0, 1.0, 3), 0);
        let picks: Vec<u32> = (0..2000).map(|_| s.sample(&mut row.clone())).collect();
        assert!(picks.contains(&1) && !picks.contains(&2), "token 2 is beyond top-p");
    }
}
