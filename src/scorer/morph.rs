//! Reverse morphology (`MatchVerb`, `MatchNoun`) verified by round-tripping through the
//! forward rules (`PastTense`, `Gerund`, `PluralForm`).
//!
//! Every rule works on bytes, as go-i18n does. Candidates are written into a reusable
//! buffer and forward results are compared piecewise against the target, so a round-trip
//! check never allocates.

use super::Tense;
use super::tables::{FLAG_BASE_NOUN, FLAG_BASE_VERB, FLAG_NO_DOUBLE, Lex, Tables};

#[inline]
fn is_vowel(b: u8) -> bool {
    matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'A' | b'E' | b'I' | b'O' | b'U')
}

/// True when `target` equals the concatenation of `parts`.
#[inline]
fn concat_eq(target: &[u8], parts: &[&[u8]]) -> bool {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total != target.len() {
        return false;
    }
    let mut rest = target;
    for p in parts {
        let (head, tail) = rest.split_at(p.len());
        if head != *p {
            return false;
        }
        rest = tail;
    }
    true
}

/// Up to four candidate bases, stored back to back.
#[derive(Default)]
pub(crate) struct Cands {
    bytes: Vec<u8>,
    spans: [(usize, usize); 4],
    n: usize,
}

impl Cands {
    fn clear(&mut self) {
        self.bytes.clear();
        self.n = 0;
    }

    /// Adds `word[..cut] + suffix`. A cut inside a multi-byte character gives a string
    /// that is not UTF-8; Go's forward functions would turn its stray bytes into U+FFFD,
    /// so it can never round-trip and is dropped here.
    fn push(&mut self, word: &str, cut: usize, suffix: &[u8]) {
        let Some(prefix) = word.get(..cut) else {
            return;
        };
        let start = self.bytes.len();
        self.bytes.extend_from_slice(prefix.as_bytes());
        self.bytes.extend_from_slice(suffix);
        if self.n < self.spans.len() {
            self.spans[self.n] = (start, self.bytes.len());
            self.n += 1;
        }
    }

    fn get(&self, i: usize) -> &[u8] {
        let (s, e) = self.spans[i];
        &self.bytes[s..e]
    }

    /// The candidate text; candidates are valid UTF-8 by construction.
    pub(crate) fn text(&self, span: (usize, usize)) -> &str {
        std::str::from_utf8(&self.bytes[span.0..span.1]).unwrap_or("")
    }
}

/// Where a matched base lives.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BaseRef<'t> {
    /// The lower-cased word itself.
    Word,
    /// A table value.
    Table(&'t str),
    /// A span of the candidate buffer.
    Cand((usize, usize)),
}

#[derive(Clone, Copy, PartialEq)]
enum Forward {
    Past,
    Gerund,
}

impl Tables {
    /// The table entry of a candidate (candidates are valid UTF-8 by construction).
    fn lookup(&self, v: &[u8]) -> Option<&Lex> {
        self.get(std::str::from_utf8(v).ok()?)
    }

    fn should_double(v: &[u8], lex: Option<&Lex>) -> bool {
        let n = v.len();
        if !(3..=4).contains(&n) {
            return false;
        }
        let last = v[n - 1];
        if is_vowel(last) || matches!(last, b'w' | b'x' | b'y') {
            return false;
        }
        is_vowel(v[n - 2]) && !is_vowel(v[n - 3]) && lex.is_none_or(|l| l.flags & FLAG_NO_DOUBLE == 0)
    }

    /// `PastTense(v) == w`.
    fn past_is(v: &[u8], lex: Option<&Lex>, w: &[u8]) -> bool {
        if let Some(l) = lex {
            if !l.fwd_past.is_empty() {
                return l.fwd_past.as_bytes() == w;
            }
        }
        let n = v.len();
        if n > 2 && v.ends_with(b"ed") && !is_vowel(v[n - 3]) && v[n - 3] != b'e' {
            return v == w;
        }
        if v.ends_with(b"e") {
            return concat_eq(w, &[v, b"d"]);
        }
        if n > 1 && v[n - 1] == b'y' && !is_vowel(v[n - 2]) {
            return concat_eq(w, &[&v[..n - 1], b"ied"]);
        }
        if n >= 2 && Self::should_double(v, lex) {
            return concat_eq(w, &[v, &v[n - 1..], b"ed"]);
        }
        concat_eq(w, &[v, b"ed"])
    }

    /// `Gerund(v) == w`.
    fn gerund_is(v: &[u8], lex: Option<&Lex>, w: &[u8]) -> bool {
        if let Some(l) = lex {
            if !l.fwd_gerund.is_empty() {
                return l.fwd_gerund.as_bytes() == w;
            }
        }
        let n = v.len();
        if v.ends_with(b"ie") {
            return concat_eq(w, &[&v[..n - 2], b"ying"]);
        }
        if n > 1 && v[n - 1] == b'e' && !matches!(v[n - 2], b'e' | b'y' | b'o') {
            return concat_eq(w, &[&v[..n - 1], b"ing"]);
        }
        if Self::should_double(v, lex) {
            return concat_eq(w, &[v, &v[n - 1..], b"ing"]);
        }
        concat_eq(w, &[v, b"ing"])
    }

    /// `PluralForm(v) == w`.
    fn plural_is(v: &[u8], lex: Option<&Lex>, w: &[u8]) -> bool {
        if let Some(l) = lex {
            if !l.fwd_plural.is_empty() {
                return l.fwd_plural.as_bytes() == w;
            }
        }
        let n = v.len();
        let last = v.last().copied().unwrap_or(0);
        if matches!(last, b's' | b'x' | b'z') || v.ends_with(b"sh") || v.ends_with(b"ch") {
            return concat_eq(w, &[v, b"es"]);
        }
        if n > 1 && last == b'y' && !is_vowel(v[n - 2]) {
            return concat_eq(w, &[&v[..n - 1], b"ies"]);
        }
        if last == b'f' {
            return concat_eq(w, &[&v[..n - 1], b"ves"]);
        }
        if v.ends_with(b"fe") {
            return concat_eq(w, &[&v[..n - 2], b"ves"]);
        }
        if n > 1
            && last == b'o'
            && !is_vowel(v[n - 2])
            && matches!(v, b"hero" | b"potato" | b"tomato" | b"echo" | b"veto")
        {
            return concat_eq(w, &[v, b"es"]);
        }
        concat_eq(w, &[v, b"s"])
    }

    fn best_round_trip(&self, target: &[u8], c: &Cands, f: Forward) -> Option<(usize, usize)> {
        // (candidate index, is a known base verb)
        let mut kept = [(0usize, false); 4];
        let mut k = 0;
        for i in 0..c.n {
            let v = c.get(i);
            let lex = self.lookup(v);
            let ok = match f {
                Forward::Past => Self::past_is(v, lex, target),
                Forward::Gerund => Self::gerund_is(v, lex, target),
            };
            if ok {
                kept[k] = (i, lex.is_some_and(|l| l.flags & FLAG_BASE_VERB != 0));
                k += 1;
            }
        }
        let kept = &kept[..k];
        let pick = match kept {
            [] => return None,
            [(only, _)] => *only,
            _ => {
                let known = |m: &&(usize, bool)| m.1;
                let vce = |m: &&(usize, bool)| has_vce_ending(c.get(m.0));
                let no_e = |m: &&(usize, bool)| !c.get(m.0).ends_with(b"e");
                kept.iter()
                    .find(known)
                    .or_else(|| kept.iter().find(vce))
                    .or_else(|| kept.iter().find(no_e))
                    .unwrap_or(&kept[0])
                    .0
            }
        };
        Some(c.spans[pick])
    }

    /// go-i18n `MatchVerb` on an already lower-cased, non-empty word whose table entry
    /// (if any) is `lex`.
    pub(crate) fn match_verb<'t>(
        &'t self,
        lw: &str,
        lex: Option<&'t Lex>,
        c: &mut Cands,
    ) -> Option<(BaseRef<'t>, Tense)> {
        if let Some(l) = lex {
            if l.flags & FLAG_BASE_VERB != 0 {
                return Some((BaseRef::Word, Tense::Base));
            }
            if let Some(base) = &l.past_of {
                return Some((BaseRef::Table(base), Tense::Past));
            }
            if let Some(base) = &l.gerund_of {
                return Some((BaseRef::Table(base), Tense::Gerund));
            }
        }
        let w = lw.as_bytes();
        let n = w.len();
        if w.ends_with(b"ed") {
            c.clear();
            if n > 3 && w.ends_with(b"ied") {
                c.push(lw, n - 3, b"y");
            }
            if n > 4 && w[n - 3] == w[n - 4] {
                c.push(lw, n - 3, b"");
            }
            if n > 2 {
                c.push(lw, n - 1, b"");
                c.push(lw, n - 2, b"");
            }
            if let Some(span) = self.best_round_trip(w, c, Forward::Past) {
                return Some((BaseRef::Cand(span), Tense::Past));
            }
        }
        if n >= 4 && w.ends_with(b"ing") {
            c.clear();
            let stem = n - 3;
            if n > 4 && w.ends_with(b"ying") {
                c.push(lw, n - 4, b"ie");
            }
            if stem >= 2 && w[stem - 1] == w[stem - 2] {
                c.push(lw, stem - 1, b"");
            }
            c.push(lw, stem, b"");
            c.push(lw, stem, b"e");
            if let Some(span) = self.best_round_trip(w, c, Forward::Gerund) {
                return Some((BaseRef::Cand(span), Tense::Gerund));
            }
        }
        None
    }

    /// go-i18n `MatchNoun` on an already lower-cased, non-empty word whose table entry
    /// (if any) is `lex`. Returns (base, plural).
    pub(crate) fn match_noun<'t>(
        &'t self,
        lw: &str,
        lex: Option<&'t Lex>,
        c: &mut Cands,
    ) -> Option<(BaseRef<'t>, bool)> {
        if let Some(l) = lex {
            if l.flags & FLAG_BASE_NOUN != 0 {
                return Some((BaseRef::Word, false));
            }
            if let Some(base) = &l.plural_of {
                return Some((BaseRef::Table(base), true));
            }
        }
        let w = lw.as_bytes();
        let n = w.len();
        if !w.ends_with(b"s") {
            // Every reverse plural rule needs a trailing `s`.
            return None;
        }
        c.clear();
        if n > 3 && w.ends_with(b"ies") {
            c.push(lw, n - 3, b"y");
        }
        if n > 3 && w.ends_with(b"ves") {
            c.push(lw, n - 3, b"f");
            c.push(lw, n - 3, b"fe");
        }
        let sibilant = [&b"ses"[..], b"xes", b"zes", b"ches", b"shes"];
        if sibilant.iter().any(|s| w.ends_with(s)) {
            c.push(lw, n - 2, b"");
        }
        if n > 1 {
            c.push(lw, n - 1, b"");
        }
        (0..c.n)
            .find(|&i| Self::plural_is(c.get(i), self.lookup(c.get(i)), w))
            .map(|i| (BaseRef::Cand(c.spans[i]), true))
    }
}

/// Vowel-consonant-`e` ending, lowercase ASCII vowels only.
fn has_vce_ending(w: &[u8]) -> bool {
    let n = w.len();
    let v = |b: u8| matches!(b, b'a' | b'e' | b'i' | b'o' | b'u');
    n >= 3 && w[n - 1] == b'e' && !v(w[n - 2]) && v(w[n - 3])
}
