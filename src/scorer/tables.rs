//! Grammar tables (go-i18n `0d8463c`, EUPL-1.2; see `assets/grammar/NOTICE.md`) and the
//! lookup indexes the reversal tokeniser builds from them.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;

use super::Mode;

const EN_JSON: &str = include_str!("../../assets/grammar/en.json");
const IRREGULAR_VERBS_JSON: &str = include_str!("../../assets/grammar/irregular-verbs.json");
const IRREGULAR_NOUNS_JSON: &str = include_str!("../../assets/grammar/irregular-nouns.json");
const NO_DOUBLE_JSON: &str = include_str!("../../assets/grammar/no-double-consonant.json");

/// The clause words that bound the `verb_saturation` window. They are hard-coded in go-i18n.
const CLAUSE_WORDS: [&str; 9] = [
    "and", "or", "but", "because", "when", "while", "if", "then", "so",
];

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

/// Flags describing a lower-cased word's role in the disambiguation signals.
pub(crate) const FLAG_DETERMINER: u8 = 1;
pub(crate) const FLAG_AUXILIARY: u8 = 2;
pub(crate) const FLAG_CLAUSE: u8 = 4;

type StrMap = FxHashMap<Box<str>, Box<str>>;
type StrSet = FxHashSet<Box<str>>;

pub(crate) struct Tables {
    // Reverse indexes (what the tokeniser was built with; mode dependent).
    pub base_verbs: StrSet,
    pub past_to_base: StrMap,
    pub gerund_to_base: StrMap,
    pub base_nouns: StrSet,
    pub plural_to_base: StrMap,
    pub words: StrMap,
    pub dual_class: StrSet,
    pub signal_flags: FxHashMap<Box<str>, u8>,
    // Forward morphology (the go-i18n grammar cache is warm in both modes).
    pub fwd_verbs: FxHashMap<Box<str>, (Box<str>, Box<str>)>,
    pub fwd_nouns: StrMap,
    pub fwd_max_len: usize,
    pub no_double: StrSet,
    // Articles.
    pub indefinite: [Box<str>; 2],
    pub definite: Box<str>,
}

fn b(s: &str) -> Box<str> {
    s.into()
}

impl Tables {
    pub(crate) fn new(mode: Mode) -> Self {
        // The tables are compiled in and validated by the test suite, so a failure here is a
        // build defect, never a property of scored input.
        let locale: Locale = serde_json::from_str(EN_JSON).expect("embedded en.json is valid");
        let irv: BTreeMap<String, VerbForms> =
            serde_json::from_str(IRREGULAR_VERBS_JSON).expect("embedded irregular-verbs.json");
        let irn: BTreeMap<String, String> =
            serde_json::from_str(IRREGULAR_NOUNS_JSON).expect("embedded irregular-nouns.json");
        let no_double: Vec<String> =
            serde_json::from_str(NO_DOUBLE_JSON).expect("embedded no-double-consonant.json");
        let gram = locale.gram;
        let preloaded = mode == Mode::Preloaded;

        let mut base_verbs = StrSet::default();
        let mut past_to_base = StrMap::default();
        let mut gerund_to_base = StrMap::default();
        if preloaded {
            for (base, forms) in &gram.verb {
                base_verbs.insert(b(base));
                if !forms.past.is_empty() {
                    past_to_base.insert(b(&forms.past), b(base));
                }
                if !forms.gerund.is_empty() {
                    gerund_to_base.insert(b(&forms.gerund), b(base));
                }
            }
        }
        for (base, forms) in &irv {
            base_verbs.insert(b(base));
            if !forms.past.is_empty() {
                past_to_base.entry(b(&forms.past)).or_insert_with(|| b(base));
            }
            if !forms.gerund.is_empty() {
                gerund_to_base
                    .entry(b(&forms.gerund))
                    .or_insert_with(|| b(base));
            }
        }

        let mut base_nouns = StrSet::default();
        let mut plural_to_base = StrMap::default();
        if preloaded {
            for (base, forms) in &gram.noun {
                base_nouns.insert(b(base));
                if !forms.other.is_empty() && forms.other != *base {
                    plural_to_base.insert(b(&forms.other), b(base));
                }
            }
        }
        for (base, plural) in &irn {
            base_nouns.insert(b(base));
            if plural != base {
                plural_to_base.entry(b(plural)).or_insert_with(|| b(base));
            }
        }

        let mut words = StrMap::default();
        let mut signal_flags = FxHashMap::<Box<str>, u8>::default();
        for w in CLAUSE_WORDS {
            *signal_flags.entry(b(w)).or_default() |= FLAG_CLAUSE;
        }
        if preloaded {
            for (key, display) in &gram.word {
                words.insert(b(&super::text::go_lower(key)), b(key));
                words.insert(b(&super::text::go_lower(display)), b(key));
            }
            for w in &gram.signal.noun_determiner {
                *signal_flags.entry(b(&super::text::go_lower(w))).or_default() |= FLAG_DETERMINER;
            }
            let aux = gram.signal.verb_auxiliary.iter();
            for w in aux.chain(gram.signal.verb_infinitive.iter()) {
                *signal_flags.entry(b(&super::text::go_lower(w))).or_default() |= FLAG_AUXILIARY;
            }
        }

        // Cold mode never builds a dual-class set: the irregular tables share no base.
        let dual_class: StrSet = base_verbs
            .iter()
            .filter(|v| base_nouns.contains(*v))
            .cloned()
            .collect();

        // go-i18n's forward functions consult the locale's gram.verb / gram.noun before the
        // irregular tables; the entries agree with the rules, but honour the precedence anyway.
        let mut fwd_verbs = FxHashMap::<Box<str>, (Box<str>, Box<str>)>::default();
        for (base, forms) in &irv {
            fwd_verbs.insert(b(base), (b(&forms.past), b(&forms.gerund)));
        }
        for (base, forms) in &gram.verb {
            let entry = fwd_verbs
                .entry(b(base))
                .or_insert_with(|| (b(""), b("")));
            if !forms.past.is_empty() {
                entry.0 = b(&forms.past);
            }
            if !forms.gerund.is_empty() {
                entry.1 = b(&forms.gerund);
            }
        }
        let mut fwd_nouns = StrMap::default();
        for (base, plural) in &irn {
            fwd_nouns.insert(b(base), b(plural));
        }
        for (base, forms) in &gram.noun {
            if !forms.other.is_empty() {
                fwd_nouns.insert(b(base), b(&forms.other));
            }
        }
        let fwd_max_len = fwd_verbs
            .keys()
            .chain(fwd_nouns.keys())
            .map(|k| k.len())
            .max()
            .unwrap_or(0);

        let art = gram.article;
        Tables {
            base_verbs,
            past_to_base,
            gerund_to_base,
            base_nouns,
            plural_to_base,
            words,
            dual_class,
            signal_flags,
            fwd_verbs,
            fwd_nouns,
            fwd_max_len,
            no_double: no_double.iter().map(|s| b(s)).collect(),
            indefinite: [
                b(&super::text::go_lower(&art.indefinite.default)),
                b(&super::text::go_lower(&art.indefinite.vowel)),
            ],
            definite: b(&super::text::go_lower(&art.definite)),
        }
    }
}
