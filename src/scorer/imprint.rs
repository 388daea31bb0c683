//! The grammar imprint (go-i18n `reversal.NewImprint`).
//!
//! Go sums its maps in random iteration order; the canonical values sum them in ascending
//! byte order of the keys. Distributions are therefore kept as key-sorted vectors, and the
//! small fixed-key maps (tense, article, punctuation) as arrays in key order.

use std::sync::Arc;

use super::disambig::Resolution;
use super::tokenise::{Analysis, Class, Tok};
use super::{ArticleKind, PunctKind, Tense};

/// Tense keys in byte order: "base" < "gerund" < "past".
pub(crate) const TENSES: [Tense; 3] = [Tense::Base, Tense::Gerund, Tense::Past];
/// Article keys in byte order.
pub(crate) const ARTICLES: [ArticleKind; 2] = [ArticleKind::Definite, ArticleKind::Indefinite];
/// Punctuation keys in byte order.
pub(crate) const PUNCTS: [PunctKind; 6] = [
    PunctKind::Comma,
    PunctKind::Exclamation,
    PunctKind::Label,
    PunctKind::Progress,
    PunctKind::Question,
    PunctKind::Separator,
];

fn tense_slot(t: Tense) -> usize {
    match t {
        Tense::Base => 0,
        Tense::Gerund => 1,
        Tense::Past => 2,
    }
}

fn article_slot(a: ArticleKind) -> usize {
    match a {
        ArticleKind::Definite => 0,
        ArticleKind::Indefinite => 1,
    }
}

pub(crate) fn punct_slot(p: PunctKind) -> usize {
    match p {
        PunctKind::Comma => 0,
        PunctKind::Exclamation => 1,
        PunctKind::Label => 2,
        PunctKind::Progress => 3,
        PunctKind::Question => 4,
        PunctKind::Separator => 5,
    }
}

/// A grammar feature vector: go-i18n's `GrammarImprint`, with every distribution normalised
/// to sum to 1 (a map whose values sum to 0 is left as is).
///
/// A key present with value 0 is kept: it still makes its map non-empty for
/// [`Imprint::similar`] and still counts as a unique verb or noun.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Imprint {
    pub(crate) token_count: usize,
    pub(crate) unique_verbs: usize,
    pub(crate) unique_nouns: usize,
    pub(crate) plural_ratio: f64,
    pub(crate) verbs: Vec<(Arc<str>, f64)>,
    pub(crate) nouns: Vec<(Arc<str>, f64)>,
    pub(crate) tenses: [Option<f64>; 3],
    pub(crate) articles: [Option<f64>; 2],
    pub(crate) puncts: [Option<f64>; 6],
    pub(crate) domains: Vec<(Arc<str>, i64)>,
}

/// Sums in slice order (the callers keep slices in key order).
fn sum(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |acc, v| acc + v)
}

fn normalise_pairs(m: &mut [(Arc<str>, f64)]) {
    let total = sum(m.iter().map(|(_, v)| *v));
    if total != 0.0 {
        m.iter_mut().for_each(|(_, v)| *v /= total);
    }
}

fn normalise_slots(m: &mut [Option<f64>]) {
    let total = sum(m.iter().flatten().copied());
    if total != 0.0 {
        m.iter_mut().flatten().for_each(|v| *v /= total);
    }
}

fn add(slot: &mut Option<f64>, v: f64) {
    *slot = Some(slot.unwrap_or(0.0) + v);
}

fn sorted(names: &[Arc<str>], acc: Vec<Option<f64>>) -> Vec<(Arc<str>, f64)> {
    let mut out: Vec<(Arc<str>, f64)> =
        acc.into_iter().enumerate().filter_map(|(id, v)| v.map(|v| (Arc::clone(&names[id]), v))).collect();
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Per-name accumulators of `NewImprint`, indexed by interned id.
struct Acc {
    verbs: Vec<Option<f64>>,
    nouns: Vec<Option<f64>>,
    domains: Vec<i64>,
    total_nouns: u64,
    plural_nouns: u64,
}

impl Acc {
    /// `n` occurrences of an unambiguous class, each with confidence 1 (`w` = n as f64).
    fn add(&mut self, imp: &mut Imprint, class: Class, w: f64, n: u64) {
        match class {
            Class::Article(a) => add(&mut imp.articles[article_slot(a)], w),
            Class::Verb { base, tense } => {
                add(&mut self.verbs[base as usize], w);
                add(&mut imp.tenses[tense_slot(tense)], w);
            }
            Class::Noun { base, plural } => {
                add(&mut self.nouns[base as usize], w);
                self.total_nouns += n;
                if plural {
                    self.plural_nouns += n;
                }
            }
            Class::Word { cat } => self.domains[cat as usize] += n as i64,
            Class::Ambiguous { .. } | Class::Unknown => {}
        }
    }

    /// A disambiguated dual-class token: its reading plus the alternative one, which
    /// counts even when its confidence is 0.
    fn resolved(&mut self, imp: &mut Imprint, base: u32, r: &Resolution) {
        let b = base as usize;
        let (verb_w, noun_w) = if r.as_verb { (r.conf, r.alt_conf) } else { (r.alt_conf, r.conf) };
        // One addition per map and token, so the order across maps is moot.
        add(&mut self.verbs[b], verb_w);
        add(&mut imp.tenses[tense_slot(Tense::Base)], verb_w);
        add(&mut self.nouns[b], noun_w);
        self.total_nouns += 1;
    }
}

impl Imprint {
    pub(crate) fn from_analysis(an: &Analysis<'_>) -> Imprint {
        let mut imp = Imprint::default();
        if an.token_count == 0 {
            return imp;
        }
        imp.token_count = an.token_count;
        let names = &an.names.list;
        let mut acc = Acc {
            verbs: vec![None; names.len()],
            nouns: vec![None; names.len()],
            domains: vec![0; names.len()],
            total_nouns: 0,
            plural_nouns: 0,
        };

        if an.resolutions.is_empty() {
            // Every confidence is 1.0, so each key's sum is an integer and the order of the
            // additions cannot change it: add per distinct word form, weighted by its count.
            for e in &an.entries {
                acc.add(&mut imp, e.class, e.count as f64, e.count);
            }
            for (slot, &c) in imp.puncts.iter_mut().zip(&an.punct_counts) {
                if c > 0 {
                    *slot = Some(c as f64);
                }
            }
        } else {
            // Fractional confidences: add in token order, as Go does, because the order of
            // additions into one key is part of the result.
            let mut pending = an.resolutions.iter().peekable();
            for (i, &tok) in an.tokens.iter().enumerate() {
                match tok {
                    Tok::Punct(p) => add(&mut imp.puncts[punct_slot(p)], 1.0),
                    Tok::Word(e) => match an.entries[e as usize].class {
                        Class::Ambiguous { base } => {
                            if let Some((_, r)) = pending.next_if(|(at, _)| *at == i) {
                                acc.resolved(&mut imp, base, r);
                            }
                        }
                        class => acc.add(&mut imp, class, 1.0, 1),
                    },
                }
            }
        }

        imp.verbs = sorted(names, acc.verbs);
        imp.nouns = sorted(names, acc.nouns);
        imp.unique_verbs = imp.verbs.len();
        imp.unique_nouns = imp.nouns.len();
        let mut doms: Vec<(Arc<str>, i64)> = acc
            .domains
            .into_iter()
            .enumerate()
            .filter(|&(_, c)| c > 0)
            .map(|(id, c)| (Arc::clone(&names[id]), c))
            .collect();
        doms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        imp.domains = doms;
        if acc.total_nouns > 0 {
            imp.plural_ratio = acc.plural_nouns as f64 / acc.total_nouns as f64;
        }
        normalise_pairs(&mut imp.verbs);
        normalise_slots(&mut imp.tenses);
        normalise_pairs(&mut imp.nouns);
        normalise_slots(&mut imp.articles);
        normalise_slots(&mut imp.puncts);
        imp
    }

    /// Number of tokens (word and punctuation) the text produced.
    pub fn token_count(&self) -> usize {
        self.token_count
    }

    pub fn unique_verbs(&self) -> usize {
        self.unique_verbs
    }

    pub fn unique_nouns(&self) -> usize {
        self.unique_nouns
    }

    /// Plural nouns over all noun readings (including alternative readings).
    pub fn plural_ratio(&self) -> f64 {
        self.plural_ratio
    }

    /// Verb base → normalised weight, ascending by key bytes.
    pub fn verb_distribution(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.verbs.iter().map(|(k, v)| (&**k, *v))
    }

    /// Noun base → normalised weight, ascending by key bytes.
    pub fn noun_distribution(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.nouns.iter().map(|(k, v)| (&**k, *v))
    }

    /// Present tense keys with their normalised weights, in key order.
    pub fn tense_distribution(&self) -> impl Iterator<Item = (Tense, f64)> + '_ {
        TENSES.iter().zip(self.tenses).filter_map(|(k, v)| v.map(|v| (*k, v)))
    }

    pub fn article_usage(&self) -> impl Iterator<Item = (ArticleKind, f64)> + '_ {
        ARTICLES.iter().zip(self.articles).filter_map(|(k, v)| v.map(|v| (*k, v)))
    }

    pub fn punctuation_pattern(&self) -> impl Iterator<Item = (PunctKind, f64)> + '_ {
        PUNCTS.iter().zip(self.puncts).filter_map(|(k, v)| v.map(|v| (*k, v)))
    }

    /// Domain category → hit count (always empty in cold mode).
    pub fn domain_vocabulary(&self) -> impl Iterator<Item = (&str, i64)> + '_ {
        self.domains.iter().map(|(k, v)| (&**k, *v))
    }
}
