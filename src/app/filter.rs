//! The probe filter: words that must all match. A plain word matches the id, the domain or the
//! start of the status; `tag:NAME` a tag (`tag:` any tag), `note:WORD` the note, and `g<60`,
//! `g>=70` (also `<=`, `>`) the best composite.

use super::state::ProbeView;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Debug, PartialEq)]
enum Term {
    Text(String),
    Tag(String),
    Note(String),
    Score(Cmp, f64),
}

fn term(w: &str) -> Term {
    if let Some(t) = w.strip_prefix("tag:") {
        return Term::Tag(t.to_owned());
    }
    if let Some(n) = w.strip_prefix("note:") {
        return Term::Note(n.to_owned());
    }
    if let Some(rest) = w.strip_prefix("g") {
        let (cmp, num) = if let Some(n) = rest.strip_prefix("<=") {
            (Cmp::Le, n)
        } else if let Some(n) = rest.strip_prefix(">=") {
            (Cmp::Ge, n)
        } else if let Some(n) = rest.strip_prefix('<') {
            (Cmp::Lt, n)
        } else if let Some(n) = rest.strip_prefix('>') {
            (Cmp::Gt, n)
        } else {
            return Term::Text(w.to_owned());
        };
        // A half-typed number ("g<") matches nothing rather than everything.
        return Term::Score(cmp, num.parse().unwrap_or(f64::NAN));
    }
    Term::Text(w.to_owned())
}

/// A parsed filter (lowercase).
#[derive(Clone, Debug, PartialEq)]
pub struct Filter(Vec<Term>);

impl Filter {
    #[must_use]
    pub fn parse(text: &str) -> Self {
        Self(text.trim().to_lowercase().split_whitespace().map(term).collect())
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    #[must_use]
    pub fn matches(&self, p: &ProbeView) -> bool {
        self.0.iter().all(|t| match t {
            Term::Text(w) => {
                p.id.to_lowercase().contains(w.as_str())
                    || p.domain.to_lowercase().contains(w.as_str())
                    || p.status.label().starts_with(w.as_str())
            }
            Term::Tag(name) if name.is_empty() => !p.tagging.tags.is_empty(),
            Term::Tag(name) => p.tagging.tags.iter().any(|t| t.to_lowercase() == *name),
            Term::Note(w) => p.tagging.note.as_ref().is_some_and(|n| n.to_lowercase().contains(w.as_str())),
            Term::Score(cmp, v) => p.best().and_then(crate::distill::Candidate::composite).is_some_and(|g| match cmp {
                Cmp::Lt => g < *v,
                Cmp::Le => g <= *v,
                Cmp::Gt => g > *v,
                Cmp::Ge => g >= *v,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::state::Status;
    use crate::distill::Tagging;

    fn probe(id: &str, tags: &[&str], note: Option<&str>) -> ProbeView {
        ProbeView {
            id: id.into(),
            domain: "ethics".into(),
            status: Status::Review,
            candidates: Vec::new(),
            decision: None,
            tagging: Tagging::new(tags, note),
        }
    }

    #[test]
    fn terms_combine() {
        let p = probe("P01", &["Tone", "short"], Some("Too preachy"));
        assert!(Filter::parse("tag:tone").matches(&p));
        assert!(Filter::parse("tag:").matches(&p));
        assert!(!Filter::parse("tag:ton").matches(&p), "tags match whole");
        assert!(Filter::parse("p01 tag:short note:preachy").matches(&p));
        assert!(!Filter::parse("p01 tag:long").matches(&p));
        assert!(Filter::parse("rev eth").matches(&p));
        assert!(!Filter::parse("tag:").matches(&probe("P02", &[], None)));
        // No candidate: no score, so no score term matches.
        assert!(!Filter::parse("g<100").matches(&p));
        assert!(!Filter::parse("g<").matches(&p));
    }
}
