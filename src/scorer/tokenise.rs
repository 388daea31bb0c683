//! The reversal tokeniser, in a compact form shared by the imprint fast path and the debug
//! token view.
//!
//! Classification is a pure function of the word, so each distinct word form of a text is
//! classified once and later occurrences are a single hash lookup. Bases and categories are
//! interned to small ids; no per-token strings are built.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::disambig::{Resolution, resolve};
use super::imprint::punct_slot;
use super::morph::{BaseRef, Cands};
use super::tables::{FLAG_DEFINITE, FLAG_DUAL, FLAG_INDEFINITE, Tables};
use super::text::{Fields, go_lower_into, split_trailing_punct};
use super::{ArticleKind, PunctKind, Tense};

/// The pass-1 class of a word form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Class {
    Article(ArticleKind),
    Verb {
        base: u32,
        tense: Tense,
    },
    Noun {
        base: u32,
        plural: bool,
    },
    /// A dual-class base form (preloaded mode only); base is the word itself, and it reads
    /// as verb/base or noun/singular until disambiguation picks one.
    Ambiguous {
        base: u32,
    },
    Word {
        cat: u32,
    },
    Unknown,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub class: Class,
    /// `tables::FLAG_*` bits of the lower-cased word.
    pub flags: u16,
    /// Occurrences in the text.
    pub count: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Tok {
    /// Index into `Analysis::entries`.
    Word(u32),
    Punct(PunctKind),
}

/// Interned strings (verb/noun bases and word categories share one id space). `Arc` lets
/// an imprint keep its keys without copying them.
#[derive(Default)]
pub(crate) struct Names {
    ids: FxHashMap<Arc<str>, u32>,
    pub list: Vec<Arc<str>>,
}

impl Names {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        let name: Arc<str> = Arc::from(s);
        self.list.push(Arc::clone(&name));
        self.ids.insert(name, id);
        id
    }
}

pub(crate) struct Analysis<'a> {
    pub token_count: usize,
    pub entries: Vec<Entry>,
    pub punct_counts: [u64; 6],
    pub names: Names,
    /// The token sequence; recorded only when order matters (preloaded mode, where
    /// disambiguation reads neighbours and confidences are fractional, or the debug view).
    pub tokens: Vec<Tok>,
    /// (token index, resolution) of each ambiguous token, in token order.
    pub resolutions: Vec<(usize, Resolution)>,
    /// Per token: the whitespace field and the word part it came from (debug view only).
    pub raws: Vec<(&'a str, &'a str)>,
}

struct Classifier<'t> {
    tables: &'t Tables,
    lower: String,
    cands: Cands,
}

impl Classifier<'_> {
    fn classify(&mut self, word: &str, names: &mut Names) -> Entry {
        go_lower_into(word, &mut self.lower);
        let t = self.tables;
        let lw = self.lower.as_str();
        let lex = t.get(lw);
        let flags = lex.map_or(0, |l| l.flags);
        let class = if flags & FLAG_INDEFINITE != 0 {
            Class::Article(ArticleKind::Indefinite)
        } else if flags & FLAG_DEFINITE != 0 {
            Class::Article(ArticleKind::Definite)
        } else if flags & FLAG_DUAL != 0 {
            // A dual-class word is a base verb and a base noun, so MatchVerb gives tense
            // `base` and MatchNoun gives singular: it is always ambiguous.
            Class::Ambiguous { base: names.intern(lw) }
        } else if let Some((base, tense)) = t.match_verb(lw, lex, &mut self.cands) {
            let base = resolve_base(base, lw, &self.cands);
            Class::Verb { base: names.intern(base), tense }
        } else if let Some((base, plural)) = t.match_noun(lw, lex, &mut self.cands) {
            let base = resolve_base(base, lw, &self.cands);
            Class::Noun { base: names.intern(base), plural }
        } else if let Some(cat) = lex.and_then(|l| l.word_cat.as_deref()) {
            Class::Word { cat: names.intern(cat) }
        } else {
            Class::Unknown
        };
        Entry { class, flags, count: 0 }
    }
}

fn resolve_base<'s>(base: BaseRef<'s>, lw: &'s str, cands: &'s Cands) -> &'s str {
    match base {
        BaseRef::Word => lw,
        BaseRef::Table(s) => s,
        BaseRef::Cand(span) => cands.text(span),
    }
}

/// Tokenises and classifies `text`. `keep_tokens` records the token sequence;
/// `keep_raw` also records each token's field.
pub(crate) fn analyse<'a>(tables: &Tables, keep_tokens: bool, text: &'a str, keep_raw: bool) -> Analysis<'a> {
    let keep_tokens = keep_tokens || keep_raw;
    let mut classifier = Classifier { tables, lower: String::new(), cands: Cands::default() };
    // Prose has roughly one distinct form per 25 bytes; reserving that avoids most
    // rehashing, and the cap keeps a huge repetitive text from over-allocating.
    let mut memo: FxHashMap<&'a str, u32> = FxHashMap::default();
    memo.reserve((text.len() / 25).min(1 << 16));
    let mut names = Names::default();
    let mut entries: Vec<Entry> = Vec::new();
    let mut punct_counts = [0u64; 6];
    let mut token_count = 0usize;
    let mut tokens = Vec::new();
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
            if let Some(e) = entries.get_mut(id as usize) {
                e.count += 1;
            }
            token_count += 1;
            if keep_tokens {
                tokens.push(Tok::Word(id));
            }
            if keep_raw {
                raws.push((field, word));
            }
        }
        if let Some(p) = punct {
            punct_counts[punct_slot(p)] += 1;
            token_count += 1;
            if keep_tokens {
                tokens.push(Tok::Punct(p));
            }
            if keep_raw {
                raws.push((p.as_str(), p.as_str()));
            }
        }
    }

    let resolutions = if any_ambiguous { resolve(&tokens, &entries) } else { Vec::new() };
    Analysis { token_count, entries, punct_counts, names, tokens, resolutions, raws }
}
