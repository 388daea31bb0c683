//! Pass 2 of the tokeniser: weighted disambiguation of dual-class base forms (preloaded
//! mode only; cold mode has no dual-class words).
//!
//! Tokens are resolved left to right and later tokens see earlier results, exactly as
//! go-i18n does. The clause and inflection-echo scans of the reference are O(n) per
//! ambiguous token; here they are answered from per-clause counters and per-base flags,
//! which give the same answers because a resolved token only ever becomes a verb/base or
//! a noun/singular.

use super::Tense;
use super::tables::{FLAG_AUXILIARY, FLAG_CLAUSE, FLAG_DETERMINER};
use super::tokenise::{Class, Entry, Tok};

const NOUN_DETERMINER: f64 = 0.35;
const VERB_AUXILIARY: f64 = 0.25;
const FOLLOWING_CLASS: f64 = 0.15;
const SENTENCE_POSITION: f64 = 0.10;
const VERB_SATURATION: f64 = 0.10;
const INFLECTION_ECHO: f64 = 0.03;
const DEFAULT_PRIOR: f64 = 0.02;

/// How an ambiguous token was resolved.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Resolution {
    pub as_verb: bool,
    pub conf: f64,
    pub alt_conf: f64,
}

fn flags(tok: Tok, entries: &[Entry]) -> u16 {
    match tok {
        Tok::Word(e) => entries[e as usize].flags,
        Tok::Punct(_) => 0,
    }
}

fn class(tok: Tok, entries: &[Entry]) -> Option<Class> {
    match tok {
        Tok::Word(e) => Some(entries[e as usize].class),
        Tok::Punct(_) => None,
    }
}

/// Resolves every ambiguous token; returns (token index, resolution) in token order.
pub(crate) fn resolve(tokens: &[Tok], entries: &[Entry]) -> Vec<(usize, Resolution)> {
    let n = tokens.len();

    // Clauses are runs of tokens between punctuation tokens and clause words. Count the
    // confident (unambiguous) verbs of each and note the clause of each ambiguous token.
    let mut confident_verbs: Vec<u32> = Vec::new();
    let mut ambiguous: Vec<(usize, usize, u32)> = Vec::new();
    let mut open = false;
    for (i, &tok) in tokens.iter().enumerate() {
        let boundary = matches!(tok, Tok::Punct(_)) || flags(tok, entries) & FLAG_CLAUSE != 0;
        if boundary {
            open = false;
            continue;
        }
        if !open {
            confident_verbs.push(0);
            open = true;
        }
        let c = confident_verbs.len() - 1;
        match class(tok, entries) {
            Some(Class::Verb { .. }) => confident_verbs[c] += 1,
            Some(Class::Ambiguous { base }) => ambiguous.push((i, c, base)),
            _ => {}
        }
    }

    // Inflection echo only looks at unambiguous verb/noun tokens (see module docs); every
    // entry occurs at least once, so the entries stand for the tokens.
    let mut inflected_verb = rustc_hash::FxHashSet::<u32>::default();
    let mut plural_noun = rustc_hash::FxHashSet::<u32>::default();
    for e in entries {
        match e.class {
            Class::Verb { base, tense } if tense != Tense::Base => {
                inflected_verb.insert(base);
            }
            Class::Noun { base, plural: true } => {
                plural_noun.insert(base);
            }
            _ => {}
        }
    }

    let mut out = Vec::with_capacity(ambiguous.len());
    for (i, clause, base) in ambiguous {
        let mut v = 0.0f64;
        let mut nn = 0.0f64;

        if i > 0 {
            let pf = flags(tokens[i - 1], entries);
            if pf & FLAG_DETERMINER != 0 {
                nn += NOUN_DETERMINER;
            }
            if pf & FLAG_AUXILIARY != 0 {
                v += VERB_AUXILIARY;
            }
        }

        if i + 1 < n {
            // The next token is never resolved yet; an ambiguous one gives no signal.
            let next = tokens[i + 1];
            let next_class = class(next, entries);
            if !matches!(next_class, Some(Class::Ambiguous { .. })) {
                let det = flags(next, entries) & FLAG_DETERMINER != 0;
                match next_class {
                    Some(Class::Article(_) | Class::Noun { .. }) => v += FOLLOWING_CLASS,
                    _ if det => v += FOLLOWING_CLASS,
                    Some(Class::Verb { .. }) => nn += FOLLOWING_CLASS,
                    _ => {}
                }
            }
        }

        if i == 0 {
            v += SENTENCE_POSITION;
        }

        if confident_verbs.get(clause).is_some_and(|&c| c > 0) {
            nn += VERB_SATURATION;
        }

        if plural_noun.contains(&base) {
            v += INFLECTION_ECHO;
        }
        if inflected_verb.contains(&base) {
            nn += INFLECTION_ECHO;
        }

        v += DEFAULT_PRIOR;

        let total = v + nn;
        let r = if total < 0.10 {
            Resolution { as_verb: v >= nn, conf: 0.55, alt_conf: 0.45 }
        } else if v >= nn {
            Resolution { as_verb: true, conf: v / total, alt_conf: nn / total }
        } else {
            Resolution { as_verb: false, conf: nn / total, alt_conf: v / total }
        };
        if r.as_verb && r.conf >= 1.0 {
            if let Some(c) = confident_verbs.get_mut(clause) {
                *c += 1;
            }
        }
        out.push((i, r));
    }
    out
}
