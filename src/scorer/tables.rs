//! Grammar tables (go-i18n `0d8463c`, EUPL-1.2; see `assets/grammar/NOTICE.md`) and the
//! lookup indexes the reversal tokeniser builds from them.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::Mode;
use super::text::go_lower;

const EN_JSON: &str = include_str!("../../assets/grammar/en.json");
const IRREGULAR_VERBS_JSON: &str = include_str!("../../assets/grammar/irregular-verbs.json");
const IRREGULAR_NOUNS_JSON: &str = include_str!("../../assets/grammar/irregular-nouns.json");
const NO_DOUBLE_JSON: &str = include_str!("../../assets/grammar/no-double-consonant.json");

/// The clause words that bound the `verb_saturation` window. They are hard-coded in go-i18n.
const CLAUSE_WORDS: [&str; 9] = ["and", "or", "but", "because", "when", "while", "if", "then", "so"];

#[derive(Deserialize)]
struct VerbForms {
    #[serde(default)]
    past: String,
    #[serde(default)]
    gerund: String,
}

#[derive(Deserialize)]
struct NounForms {
    #[serde(default)]
    other: String,
}

#[derive(Deserialize)]
struct Indefinite {
    default: String,
    vowel: String,
}

#[derive(Deserialize)]
struct Articles {
    indefinite: Indefinite,
    definite: String,
}

#[derive(Deserialize, Default)]
struct Signals {
    #[serde(default)]
    noun_determiner: Vec<String>,
    #[serde(default)]
    verb_auxiliary: Vec<String>,
    #[serde(default)]
    verb_infinitive: Vec<String>,
}

// BTreeMap keeps index construction deterministic; go-i18n documents no conflicts, so the
// order only matters for reproducibility of a hypothetical conflict.
#[derive(Deserialize)]
struct Gram {
    verb: BTreeMap<String, VerbForms>,
    noun: BTreeMap<String, NounForms>,
    article: Articles,
    word: BTreeMap<String, String>,
    #[serde(default)]
    signal: Signals,
}

#[derive(Deserialize)]
struct Locale {
    gram: Gram,
}

/// `Lex::flags` bits.
pub(crate) const FLAG_DETERMINER: u16 = 1;
pub(crate) const FLAG_AUXILIARY: u16 = 1 << 1;
pub(crate) const FLAG_CLAUSE: u16 = 1 << 2;
pub(crate) const FLAG_BASE_VERB: u16 = 1 << 3;
pub(crate) const FLAG_BASE_NOUN: u16 = 1 << 4;
pub(crate) const FLAG_DUAL: u16 = 1 << 5;
pub(crate) const FLAG_INDEFINITE: u16 = 1 << 6;
pub(crate) const FLAG_DEFINITE: u16 = 1 << 7;
pub(crate) const FLAG_NO_DOUBLE: u16 = 1 << 8;

/// Everything the tables know about one lower-cased string, so that classifying a word
/// or checking a candidate costs one hash lookup.
#[derive(Default, Debug)]
pub(crate) struct Lex {
    pub flags: u16,
    /// Reverse indexes (what the tokeniser was built with; mode dependent).
    pub past_of: Option<Box<str>>,
    pub gerund_of: Option<Box<str>>,
    pub plural_of: Option<Box<str>>,
    pub word_cat: Option<Box<str>>,
    /// Forward forms (the go-i18n grammar cache is warm in both modes); empty = none.
    pub fwd_past: Box<str>,
    pub fwd_gerund: Box<str>,
    pub fwd_plural: Box<str>,
}

pub(crate) struct Tables {
    pub lex: FxHashMap<Box<str>, Lex>,
}

fn at<'m>(lex: &'m mut FxHashMap<Box<str>, Lex>, s: &str) -> &'m mut Lex {
    lex.entry(b(s)).or_default()
}

fn b(s: &str) -> Box<str> {
    s.into()
}

impl Tables {
    #[inline]
    pub(crate) fn get(&self, s: &str) -> Option<&Lex> {
        self.lex.get(s)
    }

    pub(crate) fn new(mode: Mode) -> Self {
        // The tables are compiled in and validated by the test suite, so a failure here is a
        // build defect, never a property of scored input.
        let locale: Locale = serde_json::from_str(EN_JSON).expect("embedded en.json is valid");
        let irv: BTreeMap<String, VerbForms> =
            serde_json::from_str(IRREGULAR_VERBS_JSON).expect("embedded irregular-verbs.json");
        let irn: BTreeMap<String, String> =
            serde_json::from_str(IRREGULAR_NOUNS_JSON).expect("embedded irregular-nouns.json");
        let no_double: Vec<String> = serde_json::from_str(NO_DOUBLE_JSON).expect("embedded no-double-consonant.json");
        let gram = locale.gram;
        let preloaded = mode == Mode::Preloaded;
        let mut lex = FxHashMap::<Box<str>, Lex>::default();

        // Reverse verb index: the locale first (preloaded only), then the irregular table
        // fills gaps.
        if preloaded {
            for (base, forms) in &gram.verb {
                at(&mut lex, base).flags |= FLAG_BASE_VERB;
                if !forms.past.is_empty() {
                    at(&mut lex, &forms.past).past_of = Some(b(base));
                }
                if !forms.gerund.is_empty() {
                    at(&mut lex, &forms.gerund).gerund_of = Some(b(base));
                }
            }
        }
        for (base, forms) in &irv {
            at(&mut lex, base).flags |= FLAG_BASE_VERB;
            if !forms.past.is_empty() {
                at(&mut lex, &forms.past).past_of.get_or_insert_with(|| b(base));
            }
            if !forms.gerund.is_empty() {
                at(&mut lex, &forms.gerund).gerund_of.get_or_insert_with(|| b(base));
            }
        }

        if preloaded {
            for (base, forms) in &gram.noun {
                at(&mut lex, base).flags |= FLAG_BASE_NOUN;
                if !forms.other.is_empty() && forms.other != *base {
                    at(&mut lex, &forms.other).plural_of = Some(b(base));
                }
            }
        }
        for (base, plural) in &irn {
            at(&mut lex, base).flags |= FLAG_BASE_NOUN;
            if plural != base {
                at(&mut lex, plural).plural_of.get_or_insert_with(|| b(base));
            }
        }

        for w in CLAUSE_WORDS {
            at(&mut lex, w).flags |= FLAG_CLAUSE;
        }
        if preloaded {
            for (key, display) in &gram.word {
                at(&mut lex, &go_lower(key)).word_cat = Some(b(key));
                at(&mut lex, &go_lower(display)).word_cat = Some(b(key));
            }
            for w in &gram.signal.noun_determiner {
                at(&mut lex, &go_lower(w)).flags |= FLAG_DETERMINER;
            }
            let aux = gram.signal.verb_auxiliary.iter();
            for w in aux.chain(gram.signal.verb_infinitive.iter()) {
                at(&mut lex, &go_lower(w)).flags |= FLAG_AUXILIARY;
            }
        }
        at(&mut lex, &go_lower(&gram.article.indefinite.default)).flags |= FLAG_INDEFINITE;
        at(&mut lex, &go_lower(&gram.article.indefinite.vowel)).flags |= FLAG_INDEFINITE;
        at(&mut lex, &go_lower(&gram.article.definite)).flags |= FLAG_DEFINITE;

        // go-i18n's forward functions consult the locale's gram.verb / gram.noun before the
        // irregular tables; the entries agree with the rules, but honour the precedence anyway.
        for (base, forms) in &irv {
            let e = at(&mut lex, base);
            e.fwd_past = b(&forms.past);
            e.fwd_gerund = b(&forms.gerund);
        }
        for (base, forms) in &gram.verb {
            let e = at(&mut lex, base);
            if !forms.past.is_empty() {
                e.fwd_past = b(&forms.past);
            }
            if !forms.gerund.is_empty() {
                e.fwd_gerund = b(&forms.gerund);
            }
        }
        for (base, plural) in &irn {
            at(&mut lex, base).fwd_plural = b(plural);
        }
        for (base, forms) in &gram.noun {
            if !forms.other.is_empty() {
                at(&mut lex, base).fwd_plural = b(&forms.other);
            }
        }
        for w in &no_double {
            at(&mut lex, w).flags |= FLAG_NO_DOUBLE;
        }

        // Cold mode has no dual-class words: the irregular tables share no base.
        let both = FLAG_BASE_VERB | FLAG_BASE_NOUN;
        for e in lex.values_mut() {
            if e.flags & both == both {
                e.flags |= FLAG_DUAL;
            }
        }
        Tables { lex }
    }
}
