//! The CPU chain's shortlist: the few entries of a logits row its first cut can keep, found in
//! one pass, so that llama.cpp's samplers run over a few hundred entries instead of the whole
//! vocabulary (Gemma 3: 262,144 per row, per candidate, per step).
//!
//! Why it picks the same token as the whole row. LEM's CPU chain is end-of-generation bias →
//! repeat penalty → top-k (or greedy) → the rest. Everything after the top-k sees only its `k`
//! survivors, sorted, so the two agree whenever the survivors do. The bias sends the
//! end-of-generation ids to -inf: they are left out. The penalty only ever lowers a logit
//! (divides a positive one, multiplies a negative one by a factor above 1), and only those of
//! the tokens generated so far. So a survivor the penalty did not touch has at most `k - 1`
//! untouched entries above it, before the penalty as after: it is among the raw top `k` of the
//! untouched entries. The shortlist is those `k` and every touched entry, penalised after.
//! (Entries that tie at the cut may come out in another order than a sort of the whole row puts
//! them in; a real model's logits rarely tie there.)
//!
//! An earlier shortlist took the raw top `k + s` for `s` touched tokens, which also holds every
//! survivor; but `s` grows with the answer (256 distinct tokens by its end, for random weights),
//! and the pass over the row slows with how many entries it keeps.

use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;

use super::chain::Step;

/// How much of a row one candidate's CPU chain needs.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Shortlist {
    /// What the chain's first cut keeps: top-k's `k`, or 1 for greedy.
    keep: usize,
    /// Ids the chain's bias sends to -inf (end of generation under `ignore_eos`), sorted.
    skip: Vec<i32>,
    n_vocab: usize,
}

/// Entries scanned between checks of a block's best against the shortlist's floor: a block that
/// cannot enter is passed over with one vectorised comparison.
const BLOCK: usize = 64;

impl Shortlist {
    /// The shortlist of a CPU chain (its penalty already taken out by
    /// [`super::chain::HostPenalty::take`]), or `None` when the chain needs every entry: no
    /// top-k (top-p alone ranks the whole vocabulary) or a bias other than -inf.
    pub(super) fn of(steps: &[Step], n_vocab: i32) -> Option<Self> {
        let mut skip = Vec::new();
        let mut keep = None;
        for step in steps {
            match step {
                Step::LogitBias { biases, .. } => {
                    for &(id, bias) in biases {
                        if bias != f32::NEG_INFINITY {
                            return None;
                        }
                        skip.push(id);
                    }
                }
                Step::TopK(k) => {
                    keep = usize::try_from(*k).ok().filter(|&k| k > 0);
                    break;
                }
                Step::Greedy => {
                    keep = Some(1);
                    break;
                }
                // Anything else before the cut reads the whole row.
                _ => return None,
            }
        }
        skip.sort_unstable();
        skip.dedup();
        Some(Self { keep: keep?, skip, n_vocab: usize::try_from(n_vocab).ok()? })
    }

    /// Fills `out` with the best `keep` entries of `row` outside `touched`, then every entry in
    /// `touched` (the ids the repeat penalty will lower, sorted); the skipped ids left out, in no
    /// order. Returns false, leaving `out` alone, when that is not much less than the whole row.
    pub(super) fn fill(&self, row: &[f32], touched: &[i32], out: &mut Vec<LlamaTokenData>) -> bool {
        let want = self.keep;
        if row.len() != self.n_vocab || (want + touched.len()).saturating_mul(8) > row.len() {
            return false;
        }
        out.clear();
        // Collect above a floor; when the buffer is full, keep its best `want` and raise the
        // floor to the lowest of them.
        let cap = (2 * want).max(BLOCK);
        let mut floor = f32::NEG_INFINITY;
        for (b, block) in row.chunks(BLOCK).enumerate() {
            if !block.iter().fold(false, |any, &x| any | (x > floor)) {
                continue;
            }
            for (j, &x) in block.iter().enumerate() {
                if x <= floor || x.is_nan() {
                    continue;
                }
                let id = i32::try_from(b * BLOCK + j).unwrap_or(i32::MAX);
                if self.skip.binary_search(&id).is_ok() || touched.binary_search(&id).is_ok() {
                    continue;
                }
                out.push(LlamaTokenData::new(LlamaToken::new(id), x, 0.0));
                if out.len() >= cap {
                    floor = trim(out, want);
                }
            }
        }
        if out.len() > want {
            trim(out, want);
        }
        // Fewer than asked for: NaN logits (a broken model or random weights), which only the
        // whole row's chain knows what to do with.
        let untouched = row.len().saturating_sub(self.skip.len() + touched.len());
        if out.len() < want.min(untouched) {
            return false;
        }
        for &id in touched {
            let x = usize::try_from(id).ok().and_then(|i| row.get(i)).copied().unwrap_or(f32::NAN);
            if !x.is_nan() && self.skip.binary_search(&id).is_err() {
                out.push(LlamaTokenData::new(LlamaToken::new(id), x, 0.0));
            }
        }
        true
    }
}

/// Keeps the best `want` entries of `out` (unordered) and returns the lowest logit kept.
fn trim(out: &mut Vec<LlamaTokenData>, want: usize) -> f32 {
    out.select_nth_unstable_by(want - 1, |a, b| b.logit().total_cmp(&a.logit()));
    out.truncate(want);
    out.iter().map(LlamaTokenData::logit).fold(f32::INFINITY, f32::min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(out: &[LlamaTokenData]) -> Vec<i32> {
        let mut v: Vec<i32> = out.iter().map(|d| d.id().0).collect();
        v.sort_unstable();
        v
    }

    /// The best `want` ids of `row` by a full sort, skipping `skip`.
    fn by_sort(row: &[f32], want: usize, skip: &[i32]) -> Vec<i32> {
        let mut all: Vec<(i32, f32)> = (0..).zip(row.iter().copied()).filter(|(i, _)| !skip.contains(i)).collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut v: Vec<i32> = all.into_iter().take(want).map(|(i, _)| i).collect();
        v.sort_unstable();
        v
    }

    /// A deterministic row with no ties: a scrambled permutation of distinct values.
    fn row(n: usize, salt: u64) -> Vec<f32> {
        (0..n as u64)
            .map(|i| {
                let h = (i ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) % 1_000_003;
                h as f32 / 1000.0 - 400.0 + i as f32 * 1e-6
            })
            .collect()
    }

    /// The chain's survivors from the whole row: the penalty on `touched`, then the best `k`.
    fn survivors(row: &[f32], k: usize, skip: &[i32], touched: &[i32], repeat: f32) -> Vec<i32> {
        let lowered: Vec<f32> = (0..)
            .zip(row)
            .map(|(i, &l)| if touched.contains(&i) { if l <= 0.0 { l * repeat } else { l / repeat } } else { l })
            .collect();
        by_sort(&lowered, k, skip)
    }

    #[test]
    fn it_keeps_the_best_untouched_entries_and_every_touched_one() {
        let list = Shortlist { keep: 40, skip: vec![1, 106], n_vocab: 20_000 };
        for salt in 0..4 {
            let r = row(20_000, salt);
            let best = by_sort(&r, 300, &[1, 106]);
            // None touched; the leaders touched; some of the rest touched; a skipped id touched.
            let mut some: Vec<i32> = best.iter().copied().step_by(7).chain([5, 19_999, 106]).collect();
            some.sort_unstable();
            some.dedup();
            for touched in [vec![], best[..30].to_vec(), some] {
                let mut out = Vec::new();
                assert!(list.fill(&r, &touched, &mut out));
                let untouched: Vec<i32> = [1, 106].iter().chain(&touched).copied().collect();
                let mut want = by_sort(&r, 40, &untouched);
                want.extend(touched.iter().filter(|&&t| t != 106 && t != 1));
                want.sort_unstable();
                assert_eq!(ids(&out), want, "salt {salt} touched {}", touched.len());
                // And the chain's top-k over the shortlist is the whole row's.
                for repeat in [1.1, 1.5, 30.0] {
                    let mut short = out.clone();
                    for c in &mut short {
                        if touched.binary_search(&c.id().0).is_ok() {
                            let l = c.logit();
                            c.set_logit(if l <= 0.0 { l * repeat } else { l / repeat });
                        }
                    }
                    let short_row: Vec<(i32, f32)> = short.iter().map(|c| (c.id().0, c.logit())).collect();
                    let mut top: Vec<(i32, f32)> = short_row.clone();
                    top.sort_by(|a, b| b.1.total_cmp(&a.1));
                    let mut top: Vec<i32> = top.into_iter().take(40).map(|(i, _)| i).collect();
                    top.sort_unstable();
                    assert_eq!(top, survivors(&r, 40, &[1, 106], &touched, repeat), "salt {salt} repeat {repeat}");
                }
            }
        }
    }

    #[test]
    fn rising_rows_and_skipped_leaders_are_handled() {
        // Every entry beats the floor: the buffer is trimmed over and over.
        let rising: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let list = Shortlist { keep: 5, skip: vec![9_999], n_vocab: 10_000 };
        let mut out = Vec::new();
        assert!(list.fill(&rising, &[9_990, 9_997], &mut out));
        // The best 5 untouched (9,999 skipped), then the two touched ones.
        assert_eq!(ids(&out), [9_990, 9_993, 9_994, 9_995, 9_996, 9_997, 9_998]);
    }

    #[test]
    fn small_rows_and_wide_cuts_use_the_whole_row() {
        let list = Shortlist { keep: 40, skip: vec![], n_vocab: 1000 };
        let mut out = vec![LlamaTokenData::new(LlamaToken::new(7), 1.0, 0.0)];
        let touched: Vec<i32> = (0..200).collect();
        assert!(!list.fill(&row(1000, 0), &touched, &mut out), "240 of 1000 is not worth a shortlist");
        assert_eq!(out.len(), 1, "left alone");
        assert!(!list.fill(&row(999, 0), &[], &mut out), "a row of another width");
    }

    #[test]
    fn rows_without_enough_numbers_go_to_the_whole_row() {
        // Random-weight 4B and 12B GGUFs give rows of NaN on the GPU; the whole-row chain
        // decides what to do with them, as it did before the shortlist.
        let list = Shortlist { keep: 40, skip: vec![], n_vocab: 10_000 };
        let mut out = Vec::new();
        assert!(!list.fill(&vec![f32::NAN; 10_000], &[], &mut out));
        let mut few = vec![f32::NAN; 10_000];
        few[..10].copy_from_slice(&[1.0; 10]);
        assert!(!list.fill(&few, &[], &mut out), "10 numbers for a top-40");
        assert!(!list.fill(&few, &[3, 4], &mut out), "8 untouched numbers for a top-40");
    }

    #[test]
    fn only_chains_that_start_with_a_cut_get_one() {
        let bias = Step::LogitBias { n_vocab: 9, biases: vec![(3, f32::NEG_INFINITY), (1, f32::NEG_INFINITY)] };
        let got = Shortlist::of(&[bias.clone(), Step::TopK(40), Step::TopP(0.9), Step::Dist(1)], 9);
        assert_eq!(got, Some(Shortlist { keep: 40, skip: vec![1, 3], n_vocab: 9 }));
        assert_eq!(Shortlist::of(&[Step::Greedy], 9).map(|s| s.keep), Some(1));
        assert_eq!(Shortlist::of(&[Step::TopP(0.9), Step::Temp(0.7), Step::Dist(1)], 9), None, "top-p alone");
        assert_eq!(Shortlist::of(&[Step::TopK(0), Step::Dist(1)], 9), None);
        let soft = Step::LogitBias { n_vocab: 9, biases: vec![(3, -2.0)] };
        assert_eq!(Shortlist::of(&[soft, Step::TopK(40)], 9), None, "a finite bias can move any entry");
        let pen = Step::Penalties { n_vocab: 9, last_n: 9, repeat: 1.1 };
        assert_eq!(Shortlist::of(&[pen, Step::TopK(40)], 9), None, "llama.cpp's own penalty sampler reads every entry");
    }
}
