//! go-i18n `GrammarImprint.Similar`: weighted cosine similarity of two imprints.
//!
//! Sums run over the union of keys in ascending key order (the canonical order; Go's map
//! order is random).

use std::sync::Arc;

use super::imprint::Imprint;

impl Imprint {
    /// Weighted cosine similarity (go-i18n `GrammarImprint.Similar`). Not clamped: identical
    /// distributions can give 1.0000000000000002.
    pub fn similar(&self, other: &Imprint) -> f64 {
        if self.token_count == 0 && other.token_count == 0 {
            return 1.0;
        }
        // `None` marks a component whose maps are both empty: it carries no signal and
        // is skipped (an empty map, not a map of zeros).
        let components = [
            (0.30, cos_pairs(&self.verbs, &other.verbs)),
            (0.20, cos_slots(&self.tenses, &other.tenses)),
            (0.25, cos_pairs(&self.nouns, &other.nouns)),
            (0.15, cos_slots(&self.articles, &other.articles)),
            (0.10, cos_slots(&self.puncts, &other.puncts)),
        ];
        let mut total_weight = 0.0f64;
        let mut weighted_sum = 0.0f64;
        for (w, cos) in components {
            let Some(cos) = cos else { continue };
            total_weight += w;
            weighted_sum += w * cos;
        }
        if total_weight == 0.0 {
            return 1.0;
        }
        weighted_sum / total_weight
    }
}

/// Cosine from dot/magnitude sums accumulated over the key union in ascending order.
fn cosine(pairs: impl Iterator<Item = (f64, f64)>) -> f64 {
    let (mut dot, mut mag_a, mut mag_b) = (0.0f64, 0.0f64, 0.0f64);
    for (va, vb) in pairs {
        dot += va * vb;
        mag_a += va * va;
        mag_b += vb * vb;
    }
    let denom = mag_a.sqrt() * mag_b.sqrt();
    if denom == 0.0 { 0.0 } else { dot / denom }
}

fn cos_slots(a: &[Option<f64>], b: &[Option<f64>]) -> Option<f64> {
    let a_empty = a.iter().all(Option::is_none);
    let b_empty = b.iter().all(Option::is_none);
    match (a_empty, b_empty) {
        (true, true) => None,
        (true, false) | (false, true) => Some(0.0),
        (false, false) => Some(cosine(
            a.iter()
                .zip(b)
                .filter(|(x, y)| x.is_some() || y.is_some())
                .map(|(x, y)| (x.unwrap_or(0.0), y.unwrap_or(0.0))),
        )),
    }
}

fn cos_pairs(a: &[(Arc<str>, f64)], b: &[(Arc<str>, f64)]) -> Option<f64> {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => None,
        (true, false) | (false, true) => Some(0.0),
        (false, false) => Some(cosine(MergeUnion { a, b, i: 0, j: 0 })),
    }
}

/// Walks the union of two key-sorted maps in key order, yielding (a value, b value) with 0
/// for a missing key.
struct MergeUnion<'m> {
    a: &'m [(Arc<str>, f64)],
    b: &'m [(Arc<str>, f64)],
    i: usize,
    j: usize,
}

impl Iterator for MergeUnion<'_> {
    type Item = (f64, f64);

    fn next(&mut self) -> Option<(f64, f64)> {
        match (self.a.get(self.i), self.b.get(self.j)) {
            (None, None) => None,
            (Some((_, x)), None) => {
                self.i += 1;
                Some((*x, 0.0))
            }
            (None, Some((_, y))) => {
                self.j += 1;
                Some((0.0, *y))
            }
            (Some((ka, x)), Some((kb, y))) => match ka.cmp(kb) {
                std::cmp::Ordering::Less => {
                    self.i += 1;
                    Some((*x, 0.0))
                }
                std::cmp::Ordering::Greater => {
                    self.j += 1;
                    Some((0.0, *y))
                }
                std::cmp::Ordering::Equal => {
                    self.i += 1;
                    self.j += 1;
                    Some((*x, *y))
                }
            },
        }
    }
}
