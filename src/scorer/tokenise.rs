//! The reversal tokeniser, in a compact form shared by the imprint fast path and the debug
//! token view.
//!
//! Classification is a pure function of the word, so each distinct word form of a text is
//! classified once and later occurrences are a single hash lookup. Bases and categories are
//! interned to small ids; no per-token strings are built.

use rustc_hash::FxHashMap;

use super::disambig::{Resolution, resolve};
use super::morph::{BaseRef, Cands};
use super::tables::Tables;
use super::text::{Fields, go_lower_into, split_trailing_punct};
use super::{ArticleKind, PunctKind, Tense};

/// The pass-1 class of a word form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Class {
    Article(ArticleKind),
    Verb { base: u32, tense: Tense },
    Noun { base: u32, plural: bool },
    /// A dual-class base form (preloaded mode only); base is the word itself, and it reads
    /// as verb/base or noun/singular until disambiguation picks one.
    Ambiguous { base: u32 },
    Word { cat: u32 },
    Unknown,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub class: Class,
    /// `tables::FLAG_*` bits of the lower-cased word.
    pub flags: u8,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Tok {
    /// Index into `Analysis::entries`.
    Word(u32),
    Punct(PunctKind),
}

/// Interned strings (verb/noun bases and word categories share one id space).
#[derive(Default)]
pub(crate) struct Names {
    ids: FxHashMap<Box<str>, u32>,
    pub list: Vec<Box<str>>,
}

impl Names {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }
}

pub(crate) struct Analysis<'a> {
    pub tokens: Vec<Tok>,
    pub entries: Vec<Entry>,
    pub names: Names,
    /// Per token; empty unless some token was ambiguous.
    pub resolutions: Vec<Option<Resolution>>,
    /// Per token: the whitespace field and the word part it came from (debug view only).
    pub raws: Vec<(&'a str, &'a str)>,
}

struct Classifier<'t> {
    tables: &'t Tables,
    preloaded: bool,
    lower: String,
    cands: Cands,
}

impl Classifier<'_> {
    fn classify(&mut self, word: &str, names: &mut Names) -> Entry {
        go_lower_into(word, &mut self.lower);
        let t = self.tables;
        let lw = self.lower.as_str();
        let flags = t.signal_flags.get(lw).copied().unwrap_or(0);
        let class = if t.indefinite.iter().any(|a| **a == *lw) {
            Class::Article(ArticleKind::Indefinite)
        } else if *t.definite == *lw {
            Class::Article(ArticleKind::Definite)
        } else if self.preloaded && t.dual_class.contains(lw) {
            // A dual-class word is a base verb and a base noun, so MatchVerb gives tense
            // `base` and MatchNoun gives singular: it is always ambiguous.
            Class::Ambiguous {
                base: names.intern(lw),
            }
        } else if let Some((base, tense)) = t.match_verb(lw, &mut self.cands) {
            let base = resolve_base(base, lw, &self.cands);
            Class::Verb {
                base: names.intern(base),
                tense,
            }
        } else if let Some((base, plural)) = t.match_noun(lw, &mut self.cands) {
            let base = resolve_base(base, lw, &self.cands);
            Class::Noun {
                base: names.intern(base),
                plural,
            }
        } else if let Some(cat) = t.words.get(lw) {
            Class::Word {
                cat: names.intern(cat),
            }
        } else {
            Class::Unknown
        };
        Entry { class, flags }
    }
}

fn resolve_base<'s>(base: BaseRef<'s>, lw: &'s str, cands: &'s Cands) -> &'s str {
    match base {
        BaseRef::Word => lw,
        BaseRef::Table(s) => s,
        BaseRef::Cand(span) => cands.text(span),
    }
}

/// Tokenises and classifies `text`. With `keep_raw`, also records each token's field.
pub(crate) fn analyse<'a>(tables: &Tables, preloaded: bool, text: &'a str, keep_raw: bool) -> Analysis<'a> {
    let mut classifier = Classifier {
        tables,
        preloaded,
        lower: String::new(),
        cands: Cands::default(),
    };
    let mut memo: FxHashMap<&'a str, u32> = FxHashMap::default();
    let mut names = Names::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut tokens = Vec::with_capacity(text.len() / 5 + 1);
    let mut raws = Vec::new();
    let mut any_ambiguous = false;

    for field in Fields::new(text) {
        let (word, punct) = split_trailing_punct(field);
        if !word.is_empty() {
            let id = match memo.get(word) {
                Some(&id) => id,
                None => {
                    let entry = classifier.classify(word, &mut names);
                    any_ambiguous |= matches!(entry.class, Class::Ambiguous { .. });
                    let id = u32::try_from(entries.len()).unwrap_or(u32::MAX);
                    entries.push(entry);
                    memo.insert(word, id);
                    id
                }
            };
            tokens.push(Tok::Word(id));
            if keep_raw {
                raws.push((field, word));
            }
        }
        if let Some(p) = punct {
            tokens.push(Tok::Punct(p));
            if keep_raw {
                raws.push((p.as_str(), p.as_str()));
            }
        }
    }

    let resolutions = if any_ambiguous {
        resolve(&tokens, &entries)
    } else {
        Vec::new()
    };
    Analysis {
        tokens,
        entries,
        names,
        resolutions,
        raws,
    }
}
