//! The CPU chain's shortlist: the few entries of a logits row its first cut can keep, found in
//! one pass, so that llama.cpp's samplers run over a few hundred entries instead of the whole
//! vocabulary (Gemma 3: 262,144 per row, per candidate, per step).
//!
//! Why it picks the same token as the whole row. LEM's CPU chain is end-of-generation bias →
//! repeat penalty → top-k (or greedy) → the rest. Everything after the top-k sees only its `k`
//! survivors, sorted, so the two agree whenever the survivors do. The bias sends the
//! end-of-generation ids to -inf: they are left out. The penalty only ever lowers a logit
//! (divides a positive one, multiplies a negative one by a factor above 1), and only those of
//! the `s` tokens generated so far. So after it, at least `k` of the row's best `k + s` raw
//! entries are untouched and still at least as high as anything outside them: the post-penalty
//! top-k lies within the raw top `k + s`. The shortlist is that raw top `k + s`, penalised after.
//! (Entries that tie at the cut may come out in another order than a sort of the whole row puts
//! them in; a real model's logits rarely tie there.)

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

    /// Fills `out` with the best `keep + extra` entries of `row` (unordered; the skipped ids
    /// left out), where `extra` is how many tokens the repeat penalty will lower. Returns false,
    /// leaving `out` alone, when that is not much less than the whole row.
    pub(super) fn fill(&self, row: &[f32], extra: usize, out: &mut Vec<LlamaTokenData>) -> bool {
        let want = self.keep + extra;
        if row.len() != self.n_vocab || want.saturating_mul(8) > row.len() {
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
                if self.skip.binary_search(&id).is_ok() {
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
        out.len() >= want.min(row.len().saturating_sub(self.skip.len()))
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

    #[test]
    fn it_keeps_what_a_sort_of_the_whole_row_keeps() {
        let list = Shortlist { keep: 40, skip: vec![1, 106], n_vocab: 20_000 };
        for salt in 0..4 {
            let r = row(20_000, salt);
            for extra in [0, 3, 256] {
                let mut out = Vec::new();
                assert!(list.fill(&r, extra, &mut out));
                assert_eq!(ids(&out), by_sort(&r, 40 + extra, &[1, 106]), "salt {salt} extra {extra}");
            }
        }
    }

    #[test]
    fn rising_rows_and_skipped_leaders_are_handled() {
        // Every entry beats the floor: the buffer is trimmed over and over.
        let rising: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let list = Shortlist { keep: 5, skip: vec![9_999], n_vocab: 10_000 };
        let mut out = Vec::new();
        assert!(list.fill(&rising, 2, &mut out));
        assert_eq!(ids(&out), (9_992..9_999).collect::<Vec<_>>());
    }

    #[test]
    fn small_rows_and_wide_cuts_use_the_whole_row() {
        let list = Shortlist { keep: 40, skip: vec![], n_vocab: 1000 };
        let mut out = vec![LlamaTokenData::new(LlamaToken::new(7), 1.0, 0.0)];
        assert!(!list.fill(&row(1000, 0), 200, &mut out), "240 of 1000 is not worth a shortlist");
        assert_eq!(out.len(), 1, "left alone");
        assert!(!list.fill(&row(999, 0), 0, &mut out), "a row of another width");
    }

    #[test]
    fn rows_without_enough_numbers_go_to_the_whole_row() {
        // Random-weight 4B and 12B GGUFs give rows of NaN on the GPU; the whole-row chain
        // decides what to do with them, as it did before the shortlist.
        let list = Shortlist { keep: 40, skip: vec![], n_vocab: 10_000 };
        let mut out = Vec::new();
        assert!(!list.fill(&vec![f32::NAN; 10_000], 0, &mut out));
        let mut few = vec![f32::NAN; 10_000];
        few[..10].copy_from_slice(&[1.0; 10]);
        assert!(!list.fill(&few, 0, &mut out), "10 numbers for a top-40");
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
