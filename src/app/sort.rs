//! Sorting the probe list and the candidate table by any column. A probe sorts by its best
//! candidate's figures. Pure; the probe list's order is cached in the state until the data, the
//! filter or the sort change (`State::order`).

use super::state::Status;
use crate::distill::{Candidate, Outcome, Tagging};

/// What a list is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortKey {
    /// As loaded (probe order; run number for candidates).
    #[default]
    Order,
    Composite,
    Uplift,
    Echo,
    Enrichment,
    /// Characters of the (best) answer.
    Length,
    /// Decode tokens per second.
    TokS,
    Status,
    /// The probe's tags (alphabetically by their first); in the candidate table, the kept
    /// candidate (which carries the decision's tags) first.
    Tag,
}

impl SortKey {
    const CYCLE: [SortKey; 9] = [
        SortKey::Order,
        SortKey::Composite,
        SortKey::Uplift,
        SortKey::Echo,
        SortKey::Enrichment,
        SortKey::Length,
        SortKey::TokS,
        SortKey::Status,
        SortKey::Tag,
    ];

    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Order => "order",
            SortKey::Composite => "composite",
            SortKey::Uplift => "uplift",
            SortKey::Echo => "echo",
            SortKey::Enrichment => "enrichment",
            SortKey::Length => "length",
            SortKey::TokS => "tok/s",
            SortKey::Status => "status",
            SortKey::Tag => "tag",
        }
    }

    fn next(self) -> Self {
        let i = Self::CYCLE.iter().position(|k| *k == self).unwrap_or(0);
        Self::CYCLE[(i + 1) % Self::CYCLE.len()]
    }
}

/// How the probe list and the candidate table are sorted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sorts {
    pub probes: Sort,
    pub candidates: Sort,
}

/// A sort column and direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sort {
    pub key: SortKey,
    pub descending: bool,
}

impl Sort {
    /// The next column; figures start highest first, the load order and status lowest first.
    pub fn cycle(&mut self) {
        self.key = self.key.next();
        self.descending = !matches!(self.key, SortKey::Order | SortKey::Status | SortKey::Tag);
    }

    pub fn reverse(&mut self) {
        self.descending = !self.descending;
    }

    /// "composite ↓", or `None` in load order ascending (the unsorted default).
    #[must_use]
    pub fn label(&self) -> Option<String> {
        (*self != Sort::default()).then(|| format!("{} {}", self.key.label(), if self.descending { "↓" } else { "↑" }))
    }

    /// Orders `items` (stable) by the key `value` gives each; items without a value go last
    /// whatever the direction.
    pub fn apply<T: Copy>(&self, items: &mut [T], value: impl Fn(&T) -> Option<f64>) {
        if self.key == SortKey::Order && !self.descending {
            return;
        }
        // Keys as plain integers (missing values last, then the f64's total order, then the
        // position), so an unstable sort of 100,000 items stays within a few milliseconds.
        let mut keyed: Vec<(bool, u64, usize)> = items
            .iter()
            .enumerate()
            .map(|(i, t)| match value(t) {
                Some(v) => {
                    let up = ordered(v);
                    (false, if self.descending { !up } else { up }, i)
                }
                None => (true, 0, i),
            })
            .collect();
        keyed.sort_unstable();
        let sorted: Vec<T> = keyed.into_iter().map(|(_, _, i)| items[i]).collect();
        items.copy_from_slice(&sorted);
    }
}

/// `f64::total_cmp`'s order as an unsigned integer.
fn ordered(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 { !b } else { b | (1 << 63) }
}

fn status_rank(s: Status) -> f64 {
    match s {
        Status::Review => 0.0,
        Status::Generating => 1.0,
        Status::Queued => 2.0,
        Status::Kept => 3.0,
        Status::Rejected => 4.0,
        Status::Skipped => 5.0,
        Status::Failed => 6.0,
    }
}

/// A candidate's figure for `key` (`Order`: its run number; `Status`: scored before failed).
#[must_use]
pub fn candidate_value(key: SortKey, c: &Candidate) -> Option<f64> {
    let scored = match &c.outcome {
        Outcome::Scored { grammar, delta } => Some((grammar, delta)),
        _ => None,
    };
    #[allow(clippy::cast_precision_loss)]
    match key {
        SortKey::Order => Some(f64::from(c.run)),
        SortKey::Composite => scored.map(|(g, _)| g.composite),
        SortKey::Uplift => scored.map(|(_, d)| d.uplift),
        SortKey::Echo => scored.map(|(_, d)| d.echo),
        SortKey::Enrichment => scored.map(|(_, d)| d.enrichment),
        SortKey::Length => Some(c.text.chars().count() as f64),
        SortKey::TokS => Some(c.metrics.decode_tok_s),
        SortKey::Status => Some(if scored.is_some() { 0.0 } else { 1.0 }),
        // The table works this one out itself: it depends on the probe's decision.
        SortKey::Tag => None,
    }
}

/// Each tag set's rank in alphabetical order (by its sorted, lowercased tags), so tags sort as
/// numbers. Untagged probes have no rank (they go last).
#[must_use]
pub fn tag_ranks<'a>(tags: impl Iterator<Item = &'a Tagging>) -> std::collections::HashMap<String, f64> {
    let keys: std::collections::BTreeSet<String> = tags.filter(|t| !t.tags.is_empty()).map(tag_key).collect();
    #[allow(clippy::cast_precision_loss)]
    keys.into_iter().enumerate().map(|(i, k)| (k, i as f64)).collect()
}

fn tag_key(t: &Tagging) -> String {
    let mut v: Vec<String> = t.tags.iter().map(|t| t.to_lowercase()).collect();
    v.sort();
    v.join("\u{1}")
}

/// A probe's place under [`SortKey::Tag`], from [`tag_ranks`].
#[must_use]
pub fn tag_value(ranks: &std::collections::HashMap<String, f64>, t: &Tagging) -> Option<f64> {
    if t.tags.is_empty() { None } else { ranks.get(&tag_key(t)).copied() }
}

/// A probe's figure for `key`: its best candidate's, its status rank, or its place in the list.
#[must_use]
pub fn probe_value(key: SortKey, index: usize, status: Status, best: Option<&Candidate>) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    match key {
        SortKey::Order => Some(index as f64),
        SortKey::Status => Some(status_rank(status)),
        _ => best.and_then(|c| candidate_value(key, c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_descending_with_missing_values_last_and_ties_stable() {
        let mut v = vec![(0, Some(2.0)), (1, None), (2, Some(5.0)), (3, Some(2.0)), (4, Some(-1.0))];
        let mut s = Sort::default();
        s.cycle();
        assert_eq!((s.key, s.descending), (SortKey::Composite, true));
        s.apply(&mut v, |x| x.1);
        assert_eq!(v.iter().map(|x| x.0).collect::<Vec<_>>(), [2, 0, 3, 4, 1]);
        s.reverse();
        s.apply(&mut v, |x| x.1);
        assert_eq!(v.iter().map(|x| x.0).collect::<Vec<_>>(), [4, 0, 3, 2, 1]);
        assert_eq!(s.label().as_deref(), Some("composite ↑"));
        assert_eq!(Sort::default().label(), None);
    }

    #[test]
    fn the_cycle_visits_every_column_and_returns_to_load_order() {
        let mut s = Sort::default();
        let mut seen = Vec::new();
        for _ in 0..SortKey::CYCLE.len() {
            s.cycle();
            seen.push(s.key);
        }
        assert_eq!(seen.last(), Some(&SortKey::Order));
        assert_eq!(seen.len(), 9);
    }
}
