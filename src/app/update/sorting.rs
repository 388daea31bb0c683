//! The sort commands: the focused list (the candidate table when it has the focus, else the
//! probe list) moves to its next column or reverses. The selection stays on the same probe and
//! the same candidate.

use super::super::state::{Level, Pane, State};
use super::note;

pub(super) fn sort(s: &mut State, next: bool) {
    let on_candidates = s.focus == Pane::Candidates;
    let run = s.selected_row().map(|r| r.run());
    let (sort, what) =
        if on_candidates { (&mut s.sorts.candidates, "candidates") } else { (&mut s.sorts.probes, "probes") };
    if next {
        sort.cycle();
    } else {
        sort.reverse();
    }
    let label = sort.label().unwrap_or_else(|| "load order".into());
    if let Some(run) = run {
        s.cand = s.rows(s.selected).iter().position(|r| r.run() == run).unwrap_or(0);
    }
    note(s, Level::Info, format!("{what} sorted by {label}"));
}
