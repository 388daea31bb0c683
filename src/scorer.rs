//! LEM "grammar v3" scoring: an exact port of LEM's `ScoreResponse` / `ComputeDelta`
//! (`pkg/lem/grammar.go@1b742bf`) over go-i18n's reversal tokeniser (`@0d8463c`).
//!
//! The specification is `shared/spec/grammar-v3.md`. Results are the canonical values of the
//! reference vectors bit for bit: map sums in ascending key order, Go's `log2`, no fused
//! multiply-add. The module is pure (no I/O, no global state) and never panics on input.

mod disambig;
mod imprint;
mod log2;
mod morph;
mod score;
mod similar;
mod tables;
mod text;
mod tokenise;

use serde::{Deserialize, Serialize};

pub use imprint::Imprint;
use tables::Tables;
use tokenise::{Analysis, Class, Tok, analyse};

/// Which grammar tables the tokeniser was built with.
///
/// `Cold` is what LEM `distill` runs: go-i18n is not initialised when the tokeniser is
/// built, so it knows only the irregular tables and the articles. `Preloaded` adds the
/// en.json verbs, nouns, domain words and dual-class disambiguation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Cold,
    Preloaded,
}

/// Sycophancy thresholds of `ComputeDelta` (ai.yaml `scorer.sycophancy_*`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub echo: f64,
    pub uplift: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { echo: 0.6, uplift: 5.0 }
    }
}

/// LEM `GrammarScore`.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct GrammarScore {
    pub vocab_richness: f64,
    pub tense_entropy: f64,
    pub question_ratio: f64,
    pub domain_depth: i64,
    pub verb_diversity: i64,
    pub noun_diversity: i64,
    pub composite: f64,
}

/// LEM `DeltaScore`.
#[derive(Clone, Copy, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct DeltaScore {
    pub input_composite: f64,
    pub output_composite: f64,
    pub uplift: f64,
    pub echo: f64,
    pub enrichment: f64,
    pub sycophantic: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tense {
    Base,
    Past,
    Gerund,
}

impl Tense {
    pub fn as_str(self) -> &'static str {
        match self {
            Tense::Base => "base",
            Tense::Past => "past",
            Tense::Gerund => "gerund",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArticleKind {
    Definite,
    Indefinite,
}

impl ArticleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArticleKind::Definite => "definite",
            ArticleKind::Indefinite => "indefinite",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PunctKind {
    /// `...`
    Progress,
    /// `?`
    Question,
    /// `!`
    Exclamation,
    /// `:`
    Label,
    /// `;`
    Separator,
    /// `,`
    Comma,
}

impl PunctKind {
    /// The type name go-i18n uses as the map key.
    pub fn name(self) -> &'static str {
        match self {
            PunctKind::Progress => "progress",
            PunctKind::Question => "question",
            PunctKind::Exclamation => "exclamation",
            PunctKind::Label => "label",
            PunctKind::Separator => "separator",
            PunctKind::Comma => "comma",
        }
    }

    /// The punctuation text itself.
    pub fn as_str(self) -> &'static str {
        match self {
            PunctKind::Progress => "...",
            PunctKind::Question => "?",
            PunctKind::Exclamation => "!",
            PunctKind::Label => ":",
            PunctKind::Separator => ";",
            PunctKind::Comma => ",",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TokenKind {
    Verb { base: String, tense: Tense },
    Noun { base: String, plural: bool },
    Article(ArticleKind),
    Word { category: String },
    Punct(PunctKind),
    Unknown,
}

/// One classified token, for display and debugging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// As go-i18n's `Token.Raw`: for a word token the whole whitespace-delimited field,
    /// including any trailing punctuation that became its own token; for a punctuation
    /// token the punctuation text.
    pub raw: String,
    /// The lower-cased word (punctuation stripped), or the punctuation text.
    pub lower: String,
    pub kind: TokenKind,
    /// 1.0 for classified tokens, 0.0 for unknown ones, `v/(v+n)`-style for disambiguated.
    pub confidence: f64,
    /// The runner-up reading of a disambiguated dual-class word (preloaded mode only).
    pub alt: Option<(TokenKind, f64)>,
}

/// The grammar scorer. Built once (it parses the embedded tables), then immutable and
/// cheap to share across threads.
pub struct Scorer {
    mode: Mode,
    tables: Tables,
}

impl std::fmt::Debug for Scorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scorer").field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Scorer {
    pub fn new(mode: Mode) -> Self {
        Scorer { mode, tables: Tables::new(mode) }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn analyse<'a>(&self, text: &'a str, keep_raw: bool) -> Analysis<'a> {
        analyse(&self.tables, self.mode == Mode::Preloaded, text, keep_raw)
    }

    /// go-i18n `Tokenise`, materialised for display. Slower than [`Scorer::imprint`].
    pub fn tokenise(&self, text: &str) -> Vec<Token> {
        let an = self.analyse(text, true);
        let name = |id: u32| an.names.list[id as usize].to_string();
        let verb = |base: u32| TokenKind::Verb { base: name(base), tense: Tense::Base };
        let noun = |base: u32| TokenKind::Noun { base: name(base), plural: false };
        let mut pending = an.resolutions.iter().peekable();
        let mut out = Vec::with_capacity(an.tokens.len());
        for (i, (&tok, &(raw, word))) in an.tokens.iter().zip(&an.raws).enumerate() {
            let e = match tok {
                Tok::Punct(p) => {
                    out.push(Token {
                        raw: raw.to_owned(),
                        lower: raw.to_owned(),
                        kind: TokenKind::Punct(p),
                        confidence: 1.0,
                        alt: None,
                    });
                    continue;
                }
                Tok::Word(e) => e as usize,
            };
            let (kind, confidence, alt) = match an.entries[e].class {
                Class::Article(a) => (TokenKind::Article(a), 1.0, None),
                Class::Verb { base, tense } => (TokenKind::Verb { base: name(base), tense }, 1.0, None),
                Class::Noun { base, plural } => (TokenKind::Noun { base: name(base), plural }, 1.0, None),
                Class::Ambiguous { base } => match pending.next_if(|(at, _)| *at == i).map(|p| p.1) {
                    Some(r) if r.as_verb => (verb(base), r.conf, Some((noun(base), r.alt_conf))),
                    Some(r) => (noun(base), r.conf, Some((verb(base), r.alt_conf))),
                    None => (TokenKind::Unknown, 0.0, None),
                },
                Class::Word { cat } => (TokenKind::Word { category: name(cat) }, 1.0, None),
                Class::Unknown => (TokenKind::Unknown, 0.0, None),
            };
            out.push(Token { raw: raw.to_owned(), lower: text::go_lower(word), kind, confidence, alt });
        }
        out
    }

    /// The grammar imprint of `text` (go-i18n `NewImprint(Tokenise(text))`).
    pub fn imprint(&self, text: &str) -> Imprint {
        Imprint::from_analysis(&self.analyse(text, false))
    }

    /// LEM `ScoreResponse`.
    pub fn score(&self, text: &str) -> GrammarScore {
        self.imprint(text).grammar_score()
    }

    /// LEM `ComputeDelta(prompt, response)`.
    pub fn delta(&self, prompt: &str, response: &str, t: Thresholds) -> DeltaScore {
        self.score_with_delta(prompt, response, t).1
    }

    /// What distill does per candidate (`ScoreResponse` then `ComputeDelta`), with the
    /// response tokenised once and reused for both.
    pub fn score_with_delta(&self, prompt: &str, response: &str, t: Thresholds) -> (GrammarScore, DeltaScore) {
        self.score_against(&self.imprint(prompt), response, t)
    }

    /// As [`Scorer::score_with_delta`], with the prompt's imprint computed once per probe.
    pub fn score_against(&self, prompt: &Imprint, response: &str, t: Thresholds) -> (GrammarScore, DeltaScore) {
        let response = self.imprint(response);
        let response_score = response.grammar_score();
        let prompt_score = prompt.grammar_score();
        let d = score::delta(prompt, &prompt_score, &response, &response_score, t);
        (response_score, d)
    }
}

impl Imprint {
    /// LEM `ComputeGrammarScore`.
    pub fn grammar_score(&self) -> GrammarScore {
        score::grammar_score(self)
    }
}

/// LEM `ComputeDelta` from two imprints.
pub fn delta_from(prompt: &Imprint, response: &Imprint, t: Thresholds) -> DeltaScore {
    let ps = prompt.grammar_score();
    let rs = response.grammar_score();
    score::delta(prompt, &ps, response, &rs, t)
}
