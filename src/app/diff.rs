//! A word-level diff of two texts (longest common subsequence over whitespace-separated words),
//! for comparing two candidates side by side. Pure.

/// Whether a word is in both texts or only one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Same,
    /// Only in this side's text.
    Only,
}

/// Each side's words, marked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WordDiff {
    pub left: Vec<(String, Mark)>,
    pub right: Vec<(String, Mark)>,
}

impl WordDiff {
    /// Words only one side has, on each side.
    #[must_use]
    pub fn changed(&self) -> (usize, usize) {
        let only = |v: &[(String, Mark)]| v.iter().filter(|(_, m)| *m == Mark::Only).count();
        (only(&self.left), only(&self.right))
    }
}

/// Above this many cells (words × words) the middle is not aligned word by word: it is marked
/// changed as a whole, which bounds time and memory on very long answers.
const MAX_CELLS: usize = 4_000_000;

#[must_use]
pub fn words(a: &str, b: &str) -> WordDiff {
    let a: Vec<&str> = a.split_whitespace().collect();
    let b: Vec<&str> = b.split_whitespace().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let (mut left_mid, mut right_mid) = (vec![Mark::Only; am.len()], vec![Mark::Only; bm.len()]);
    if am.len().saturating_mul(bm.len()) <= MAX_CELLS {
        // lcs[i][j]: LCS length of am[i..] and bm[j..], one row at a time from the end.
        let w = bm.len() + 1;
        let mut lcs = vec![0u32; (am.len() + 1) * w];
        for i in (0..am.len()).rev() {
            for j in (0..bm.len()).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < am.len() && j < bm.len() {
            if am[i] == bm[j] {
                left_mid[i] = Mark::Same;
                right_mid[j] = Mark::Same;
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    }
    let side = |all: &[&str], mid: Vec<Mark>| {
        let mut marks = vec![Mark::Same; prefix];
        marks.extend(mid);
        marks.extend(std::iter::repeat_n(Mark::Same, suffix));
        all.iter().zip(marks).map(|(w, m)| ((*w).to_owned(), m)).collect()
    };
    WordDiff { left: side(&a, left_mid), right: side(&b, right_mid) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only(v: &[(String, Mark)]) -> Vec<&str> {
        v.iter().filter(|(_, m)| *m == Mark::Only).map(|(w, _)| w.as_str()).collect()
    }

    #[test]
    fn marks_the_words_each_side_alone_has() {
        let d = words("the quick brown fox jumps", "the slow brown fox walks home");
        assert_eq!(only(&d.left), ["quick", "jumps"]);
        assert_eq!(only(&d.right), ["slow", "walks", "home"]);
        assert_eq!(d.changed(), (2, 3));
        let same = words("a b c", "a  b\nc");
        assert_eq!(same.changed(), (0, 0));
        assert_eq!(words("", "new words").changed(), (0, 2));
    }

    #[test]
    fn very_long_middles_are_marked_whole() {
        let a: String = (0..3000).map(|i| format!("a{i} ")).collect();
        let b: String = (0..3000).map(|i| format!("b{i} ")).collect();
        let d = words(&format!("same {a} end"), &format!("same {b} end"));
        assert_eq!(d.changed(), (3000, 3000));
        assert_eq!((d.left[0].1, d.left[3001].1), (Mark::Same, Mark::Same));
    }
}
