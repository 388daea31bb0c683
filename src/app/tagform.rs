//! The tag editor (`t`, the bulk tag, and the optional reason of a reject): tags as free text
//! (comma separated), a note, and a picker of recent tags. Pure: the caller turns a submitted
//! form into engine controls.

use crate::distill::Tagging;

/// What a submitted form applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TagTarget {
    One(usize),
    /// Every probe of a bulk; a confirmation with the count comes first.
    Bulk(Vec<usize>),
    /// Reject every candidate of the probe under review, with this reason.
    Reject(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagForm {
    pub target: TagTarget,
    pub tags: String,
    pub note: String,
    /// Tags used lately, newest first (the picker).
    pub recent: Vec<String>,
    /// 0: tags, 1: note, 2..: the picker's rows.
    pub focus: usize,
}

/// How many recent tags the picker offers.
pub const RECENT: usize = 8;

impl TagForm {
    #[must_use]
    pub fn new(target: TagTarget, current: &Tagging, recent: &[String]) -> Self {
        let tags = if current.tags.is_empty() { String::new() } else { format!("{}, ", current.tags.join(", ")) };
        // A reject asks for its reason first.
        let focus = usize::from(matches!(target, TagTarget::Reject(_)));
        Self {
            target,
            tags,
            note: current.note.clone().unwrap_or_default(),
            recent: recent.iter().take(RECENT).cloned().collect(),
            focus,
        }
    }

    fn rows(&self) -> usize {
        2 + self.recent.len()
    }

    pub fn next(&mut self) {
        self.focus = (self.focus + 1) % self.rows();
    }

    pub fn prev(&mut self) {
        self.focus = (self.focus + self.rows() - 1) % self.rows();
    }

    /// Typing goes to the focused text field; on the picker it goes to the tags.
    pub fn type_char(&mut self, c: char) {
        if self.focus == 1 {
            self.note.push(c);
        } else {
            self.focus = 0;
            self.tags.push(c);
        }
    }

    pub fn backspace(&mut self) {
        if self.focus == 1 {
            self.note.pop();
        } else {
            self.tags.pop();
        }
    }

    /// The tags as typed, split on commas.
    #[must_use]
    pub fn tag_list(&self) -> Vec<String> {
        self.tags.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
    }

    /// The picked recent tag, when the picker has the focus.
    #[must_use]
    pub fn picked(&self) -> Option<&str> {
        self.focus.checked_sub(2).and_then(|i| self.recent.get(i)).map(String::as_str)
    }

    /// Adds the picked tag, or takes it out if it is there already.
    pub fn toggle_picked(&mut self) {
        let Some(t) = self.picked().map(str::to_owned) else { return };
        let mut list = self.tag_list();
        if let Some(i) = list.iter().position(|x| *x == t) {
            list.remove(i);
        } else {
            list.push(t);
        }
        self.tags = if list.is_empty() { String::new() } else { format!("{}, ", list.join(", ")) };
    }

    #[must_use]
    pub fn tagging(&self) -> Tagging {
        Tagging::new(self.tag_list(), Some(&self.note))
    }
}

/// `recent` with `tags` moved to the front (newest first), each once, at most [`RECENT`] kept.
pub fn remember(recent: &mut Vec<String>, tags: &[String]) {
    for t in tags.iter().rev() {
        recent.retain(|r| r != t);
        recent.insert(0, t.clone());
    }
    recent.truncate(RECENT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picking_and_typing() {
        let recent = vec!["tone".to_owned(), "facts".to_owned()];
        let mut f = TagForm::new(TagTarget::One(0), &Tagging::new(["short"], None), &recent);
        assert_eq!(f.tags, "short, ");
        f.next();
        f.next();
        assert_eq!(f.picked(), Some("tone"));
        f.toggle_picked();
        assert_eq!(f.tag_list(), ["short", "tone"]);
        f.toggle_picked();
        assert_eq!(f.tag_list(), ["short"]);
        f.next();
        f.toggle_picked();
        f.type_char('x');
        assert_eq!((f.focus, f.tag_list()), (0, vec!["short".to_owned(), "facts".to_owned(), "x".to_owned()]));
        f.next();
        for c in " wrong date ".chars() {
            f.type_char(c);
        }
        assert_eq!(f.tagging(), Tagging::new(["short", "facts", "x"], Some("wrong date")));
        let r = TagForm::new(TagTarget::Reject(3), &Tagging::default(), &[]);
        assert_eq!(r.focus, 1, "a reject's form starts on the reason");
        let mut recent = vec!["a".to_owned(), "b".to_owned()];
        remember(&mut recent, &["b".to_owned(), "c".to_owned()]);
        assert_eq!(recent, ["b", "c", "a"]);
    }
}
