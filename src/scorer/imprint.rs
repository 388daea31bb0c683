//! The grammar imprint (go-i18n `reversal.GrammarImprint`) and `Similar`.
//!
//! Go sums its maps in random iteration order; the canonical values sum them in ascending
//! byte order of the keys. Distributions are therefore kept as key-sorted vectors, and the
//! small fixed-key maps (tense, article, punctuation) as arrays in key order.

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
    pub(crate) verbs: Vec<(Box<str>, f64)>,
    pub(crate) nouns: Vec<(Box<str>, f64)>,
    pub(crate) tenses: [Option<f64>; 3],
    pub(crate) articles: [Option<f64>; 2],
    pub(crate) puncts: [Option<f64>; 6],
    pub(crate) domains: Vec<(Box<str>, i64)>,
}

/// Sums in slice order (the callers keep slices in key order).
fn sum(values: impl Iterator<Item = f64>) -> f64 {
    values.fold(0.0, |acc, v| acc + v)
}

fn normalise_pairs(m: &mut [(Box<str>, f64)]) {
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

fn sorted(names: &[Box<str>], acc: Vec<Option<f64>>) -> Vec<(Box<str>, f64)> {
    let mut out: Vec<(Box<str>, f64)> = acc
        .into_iter()
        .enumerate()
        .filter_map(|(id, v)| v.map(|v| (names[id].clone(), v)))
        .collect();
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out
}

impl Imprint {
    pub(crate) fn from_analysis(an: &Analysis<'_>) -> Imprint {
        let mut imp = Imprint::default();
        if an.tokens.is_empty() {
            return imp;
        }
        imp.token_count = an.tokens.len();
        let names = &an.names.list;
        let mut verbs: Vec<Option<f64>> = vec![None; names.len()];
        let mut nouns: Vec<Option<f64>> = vec![None; names.len()];
        let mut domains: Vec<i64> = vec![0; names.len()];
        let (mut total_nouns, mut plural_nouns) = (0u64, 0u64);

        // Accumulate in token order: with fractional confidences (preloaded) the order of
        // additions into one key is part of the result.
        for (i, &tok) in an.tokens.iter().enumerate() {
            let e = match tok {
                Tok::Punct(p) => {
                    add(&mut imp.puncts[punct_slot(p)], 1.0);
                    continue;
                }
                Tok::Word(e) => e as usize,
            };
            match an.entries[e].class {
                Class::Article(a) => add(&mut imp.articles[article_slot(a)], 1.0),
                Class::Verb { base, tense } => {
                    add(&mut verbs[base as usize], 1.0);
                    add(&mut imp.tenses[tense_slot(tense)], 1.0);
                }
                Class::Noun { base, plural } => {
                    add(&mut nouns[base as usize], 1.0);
                    total_nouns += 1;
                    plural_nouns += u64::from(plural);
                }
                Class::Ambiguous { base } => {
                    let Some(Some(r)) = an.resolutions.get(i) else {
                        continue;
                    };
                    let b = base as usize;
                    let (verb_w, noun_w) = if r.as_verb {
                        (r.conf, r.alt_conf)
                    } else {
                        (r.alt_conf, r.conf)
                    };
                    // One addition per map and token, so the order across maps is moot.
                    add(&mut verbs[b], verb_w);
                    add(&mut imp.tenses[tense_slot(Tense::Base)], verb_w);
                    add(&mut nouns[b], noun_w);
                    total_nouns += 1;
                }
                Class::Word { cat } => domains[cat as usize] += 1,
                Class::Unknown => {}
            }
        }

        imp.verbs = sorted(names, verbs);
        imp.nouns = sorted(names, nouns);
        imp.unique_verbs = imp.verbs.len();
        imp.unique_nouns = imp.nouns.len();
        let mut doms: Vec<(Box<str>, i64)> = domains
            .into_iter()
            .enumerate()
            .filter(|&(_, c)| c > 0)
            .map(|(id, c)| (names[id].clone(), c))
            .collect();
        doms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        imp.domains = doms;
        if total_nouns > 0 {
            imp.plural_ratio = plural_nouns as f64 / total_nouns as f64;
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

    /// Weighted cosine similarity (go-i18n `GrammarImprint.Similar`). Not clamped: identical
    /// distributions can give 1.0000000000000002.
    pub fn similar(&self, other: &Imprint) -> f64 {
        if self.token_count == 0 && other.token_count == 0 {
            return 1.0;
        }
        let components: [(f64, f64, bool); 5] = [
            (0.30, cos_pairs(&self.verbs, &other.verbs), both_empty_p(&self.verbs, &other.verbs)),
            (0.20, cos_slots(&self.tenses, &other.tenses), both_empty_s(&self.tenses, &other.tenses)),
            (0.25, cos_pairs(&self.nouns, &other.nouns), both_empty_p(&self.nouns, &other.nouns)),
            (0.15, cos_slots(&self.articles, &other.articles), both_empty_s(&self.articles, &other.articles)),
            (0.10, cos_slots(&self.puncts, &other.puncts), both_empty_s(&self.puncts, &other.puncts)),
        ];
        let mut total_weight = 0.0f64;
        let mut weighted_sum = 0.0f64;
        for (w, cos, skip) in components {
            if skip {
                continue;
            }
            total_weight += w;
            weighted_sum += w * cos;
        }
        if total_weight == 0.0 {
            return 1.0;
        }
        weighted_sum / total_weight
    }
}

fn both_empty_p(a: &[(Box<str>, f64)], b: &[(Box<str>, f64)]) -> bool {
    a.is_empty() && b.is_empty()
}

fn both_empty_s(a: &[Option<f64>], b: &[Option<f64>]) -> bool {
    a.iter().chain(b).all(Option::is_none)
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

fn cos_slots(a: &[Option<f64>], b: &[Option<f64>]) -> f64 {
    let a_empty = a.iter().all(Option::is_none);
    let b_empty = b.iter().all(Option::is_none);
    if a_empty || b_empty {
        return if a_empty && b_empty { 1.0 } else { 0.0 };
    }
    cosine(
        a.iter()
            .zip(b)
            .filter(|(x, y)| x.is_some() || y.is_some())
            .map(|(x, y)| (x.unwrap_or(0.0), y.unwrap_or(0.0))),
    )
}

fn cos_pairs(a: &[(Box<str>, f64)], b: &[(Box<str>, f64)]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() && b.is_empty() { 1.0 } else { 0.0 };
    }
    cosine(MergeUnion { a, b, i: 0, j: 0 })
}

/// Walks the union of two key-sorted maps in key order, yielding (a value, b value) with 0
/// for a missing key.
struct MergeUnion<'m> {
    a: &'m [(Box<str>, f64)],
    b: &'m [(Box<str>, f64)],
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
