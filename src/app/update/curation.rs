//! Editing a candidate and the history of decisions: what their keys and the engine's answers
//! do to the state.

use super::{area, control, note};
use crate::app::Command;
use crate::app::edit::{EditKey, InlineEdit};
use crate::app::effect::Effect;
use crate::app::state::{Decided, Level, Modal, Row, State};
use crate::distill::{Candidate, Control, Decision};

/// `e`: the selected finished candidate, in `$EDITOR` or the inline editor.
pub(super) fn start_edit(s: &mut State, fx: &mut Vec<Effect>) {
    let Some(Row::Done(c)) = s.selected_row() else {
        return note(s, Level::Warn, "select a finished candidate to edit");
    };
    let (probe, parent, text) = (s.selected, c.run, c.text.clone());
    if s.engine_gone {
        return note(s, Level::Warn, "the run has ended; nothing more can be changed");
    }
    match s.editor.clone() {
        Some(editor) => fx.push(Effect::Edit { editor, probe, parent, text }),
        None => s.modal = Some(Modal::Edit(Box::new(InlineEdit::new(probe, parent, &text)))),
    }
}

/// A key in the inline editor.
pub(super) fn edit_key(s: &mut State, k: EditKey, fx: &mut Vec<Effect>) {
    let Some(Modal::Edit(mut e)) = s.modal.take() else { return };
    match k {
        EditKey::Cancel => note(s, Level::Info, "edit discarded"),
        EditKey::Save => send_edit(s, e.probe, e.parent, &e.original, e.text, fx),
        k => {
            e.key(k);
            s.modal = Some(Modal::Edit(e));
        }
    }
}

/// `$EDITOR` returned.
pub(super) fn edited(s: &mut State, probe: usize, parent: u32, result: Result<String, String>, fx: &mut Vec<Effect>) {
    let original = s.probes.get(probe).and_then(|p| p.candidates.iter().find(|c| c.run == parent));
    let Some(original) = original.map(|c| c.text.clone()) else {
        return note(s, Level::Warn, "the edited candidate is gone");
    };
    match result {
        Ok(text) => send_edit(s, probe, parent, &original, text, fx),
        Err(why) => note(s, Level::Error, why),
    }
}

fn send_edit(s: &mut State, probe: usize, parent: u32, original: &str, text: String, fx: &mut Vec<Effect>) {
    if text == original {
        note(s, Level::Info, format!("candidate {} unchanged; no edit stored", parent + 1));
    } else {
        note(s, Level::Info, format!("scoring the edit of candidate {}…", parent + 1));
        control(s, Control::AddEdit { probe, parent, text }, fx);
    }
}

/// The engine stored an edit: it joins the table, selected.
pub(super) fn edit_added(s: &mut State, probe: usize, c: Candidate) {
    let (run, parent, score) = (c.run, c.derived_from.unwrap_or(0), c.composite());
    let Some(p) = s.probes.get_mut(probe) else { return };
    p.candidates.retain(|x| x.run != run);
    p.candidates.push(c);
    p.candidates.sort_by_key(|x| x.run);
    let id = p.id.clone();
    if s.selected == probe {
        s.cand = s.rows(probe).iter().position(|r| r.run() == run).unwrap_or(s.cand);
    }
    let score = score.map_or_else(|| "no score (too short)".to_owned(), |g| format!("g={g:.1}"));
    note(s, Level::Info, format!("{id}: edit of candidate {} stored as candidate {}, {score}", parent + 1, run + 1));
}

/// `H`: the history view, newest first.
pub(super) fn open_history(s: &mut State) {
    if s.history.is_empty() {
        note(s, Level::Info, "no decisions yet");
    } else {
        s.modal = Some(Modal::History { sel: 0 });
    }
}

/// A command while the history view is open.
pub(super) fn history_key(s: &mut State, sel: usize, c: Command, fx: &mut Vec<Effect>) {
    let n = s.recent().count();
    let page = usize::from(area(s).height.saturating_sub(6).max(1));
    let sel = match c {
        Command::Up => sel.saturating_sub(1),
        Command::Down => (sel + 1).min(n.saturating_sub(1)),
        Command::PageUp => sel.saturating_sub(page),
        Command::PageDown => (sel + page).min(n.saturating_sub(1)),
        Command::Top => 0,
        Command::Bottom => n.saturating_sub(1),
        Command::Open => {
            let probe = s.recent().nth(sel).map(|d| d.probe);
            if let Some(probe) = probe {
                s.selected = probe;
                s.auto_select = true;
                control(s, Control::Reopen { probe }, fx);
            }
            return;
        }
        Command::Back | Command::History | Command::Quit => return,
        _ => sel,
    };
    s.modal = Some(Modal::History { sel });
}

/// The history as the engine reports it: decisions stand, or are taken back.
pub(super) fn decided(s: &mut State, probe: usize, decision: &Decision) {
    s.history.retain(|d| d.probe != probe);
    s.history.push(Decided { probe, decision: decision.clone() });
}

pub(super) fn undone(s: &mut State, probe: usize) {
    s.history.retain(|d| d.probe != probe);
}
