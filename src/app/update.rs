//! The one state transition: `update(&mut State, Action) -> Vec<Effect>`. No I/O, no clock,
//! no channels; what must happen outside is returned as [`Effect`]s.

use std::time::Duration;

use ratatui::layout::Rect;

use super::action::{Action, Command};
use super::effect::Effect;
use super::state::{Level, LimitsForm, Modal, Note, Pane, Row, State};
use super::wrap::Wrapped;
use crate::distill::{Control, CurationMode, Review};
use crate::ui::layout;

pub fn update(s: &mut State, action: Action) -> Vec<Effect> {
    let mut fx = Vec::new();
    let before = (s.filter.clone(), s.sorts);
    let data = matches!(&action, Action::Engine { event, .. } if engine::reorders(event));
    if data {
        s.reorder();
    }
    match action {
        Action::Command(c) => command(s, c, &mut fx),
        Action::Char(c) => match &mut s.modal {
            Some(Modal::Filter) => {
                s.filter.push(c);
                keep_selection_visible(s);
            }
            Some(Modal::Limits(f)) => f.type_char(c),
            Some(Modal::Tag(f)) => f.type_char(c),
            _ => {}
        },
        Action::Backspace => match &mut s.modal {
            Some(Modal::Filter) => {
                s.filter.pop();
                keep_selection_visible(s);
            }
            Some(Modal::Limits(f)) => f.backspace(),
            Some(Modal::Tag(f)) => f.backspace(),
            _ => {}
        },
        Action::Engine { event, at } => {
            tick(s, at);
            engine::apply(s, event, at);
        }
        Action::Memory { snapshot, at } => {
            tick(s, at);
            s.memory = Some(snapshot);
        }
        Action::Resize { width, height } => {
            s.size = (width, height);
            if let Some(Modal::Detail { text, top, .. }) = &mut s.modal {
                let (_, area, _) = layout::detail(Rect::new(0, 0, width, height));
                text.set_width(area.width);
                *top = (*top).min(text.rows().saturating_sub(1));
            }
        }
        Action::EngineExited { error } => {
            s.engine_gone = true;
            s.current = None;
            s.reviewing = None;
            s.live.clear();
            if let Some(e) = error {
                note(s, Level::Error, format!("the engine stopped: {e}"));
            }
        }
        Action::Edit(k) => curation::edit_key(s, k, &mut fx),
        Action::Edited { probe, parent, result } => curation::edited(s, probe, parent, result, &mut fx),
        Action::ControlNotSent { control, why } => {
            if matches!(control, Control::Review { .. }) {
                // The engine never saw it: the operator may decide again.
                s.decision_sent = false;
            }
            note(s, Level::Error, format!("not sent to the engine ({why}): {}", describe(&control)));
        }
    }
    if data || before.0 != s.filter || before.1 != s.sorts {
        s.reorder();
    }
    sync_stream(s);
    fx
}

/// A control as the operator would name it.
fn describe(c: &Control) -> String {
    match c {
        Control::Pause => "pause".into(),
        Control::Resume => "resume".into(),
        Control::Stop { .. } => "stop".into(),
        Control::CancelGeneration => "cancel".into(),
        Control::SetMode(m) => format!("mode {m:?}").to_lowercase(),
        Control::SetLimits(_) => "new limits".into(),
        Control::SetRuns(n) => format!("runs {n}"),
        Control::SetTemperature(t) => format!("temperature {t}"),
        Control::Review { review, .. } => format!("decision {review:?}").to_lowercase(),
        Control::Undo => "undo".into(),
        Control::Tag { .. } => "tags".into(),
        Control::Bulk { probes, .. } => format!("bulk over {} probes", probes.len()),
        Control::AddEdit { parent, .. } => format!("edit of candidate {}", parent + 1),
        Control::Reopen { .. } => "reopen".into(),
    }
}

fn tick(s: &mut State, at: Duration) {
    s.now = s.now.max(at);
    s.throughput.advance(at);
}

pub(super) fn note(s: &mut State, level: Level, text: impl Into<String>) {
    s.note = Some(Note { text: text.into(), level });
}

fn area(s: &State) -> Rect {
    Rect::new(0, 0, s.size.0, s.size.1)
}

fn command(s: &mut State, c: Command, fx: &mut Vec<Effect>) {
    match s.modal.take() {
        None => normal(s, c, fx),
        Some(Modal::Help) => {
            if !matches!(c, Command::Help | Command::Back | Command::Quit | Command::Open) {
                s.modal = Some(Modal::Help);
            }
        }
        Some(Modal::Filter) => match c {
            Command::Open => {}
            Command::Back => {
                s.filter.clear();
                keep_selection_visible(s);
            }
            Command::Up | Command::Down => {
                s.modal = Some(Modal::Filter);
                move_probe(s, if c == Command::Up { -1 } else { 1 });
            }
            _ => s.modal = Some(Modal::Filter),
        },
        Some(Modal::Limits(mut form)) => match c {
            Command::Open => submit_limits(s, form, fx),
            Command::Back => note(s, Level::Info, "limits unchanged"),
            Command::Up => {
                form.prev();
                s.modal = Some(Modal::Limits(form));
            }
            Command::Down => {
                form.next();
                s.modal = Some(Modal::Limits(form));
            }
            _ => s.modal = Some(Modal::Limits(form)),
        },
        Some(Modal::ConfirmQuit) => {
            if c == Command::Confirm {
                quit(s, fx);
            }
        }
        Some(Modal::ConfirmAccept { probe, run, .. }) => {
            if c == Command::Confirm {
                send_review(s, probe, Review::Accept { run, below_gate_ok: true }, fx);
            } else {
                note(s, Level::Info, "not accepted");
            }
        }
        Some(Modal::Tag(form)) => tagging::tag_key(s, form, c, fx),
        Some(Modal::BulkChoose { probes }) => tagging::choose_key(s, probes, c),
        Some(Modal::ConfirmBulk(plan)) => tagging::confirm_key(s, *plan, c, fx),
        Some(Modal::History { sel }) => curation::history_key(s, sel, c, fx),
        // Its keys arrive as `Action::Edit`.
        Some(m @ Modal::Edit(_)) => s.modal = Some(m),
        Some(Modal::Compare(cmp)) => {
            let page = usize::from(layout::detail(area(s)).1.height.max(1));
            s.modal = cmp.key(s, c, page).map(|c| Modal::Compare(Box::new(c)));
        }
        Some(Modal::Detail { probe, run, text, mut top }) => {
            let page = usize::from(layout::detail(area(s)).1.height.max(1));
            let max = text.rows().saturating_sub(page);
            match c {
                Command::Up => top = top.saturating_sub(1),
                Command::Down => top = (top + 1).min(max),
                Command::PageUp => top = top.saturating_sub(page),
                Command::PageDown => top = (top + page).min(max),
                Command::Top => top = 0,
                Command::Bottom => top = max,
                Command::Back | Command::Open => return,
                Command::Accept | Command::Reject | Command::More | Command::Skip | Command::Edit | Command::Quit => {
                    return normal(s, c, fx);
                }
                _ => {}
            }
            s.modal = Some(Modal::Detail { probe, run, text, top });
        }
    }
}

fn normal(s: &mut State, c: Command, fx: &mut Vec<Effect>) {
    match c {
        Command::Up => navigate(s, -1),
        Command::Down => navigate(s, 1),
        Command::PageUp => navigate(s, -page(s)),
        Command::PageDown => navigate(s, page(s)),
        Command::Top => navigate(s, isize::MIN / 2),
        Command::Bottom => navigate(s, isize::MAX / 2),
        Command::NextPane | Command::PrevPane => {
            let i = Pane::ORDER.iter().position(|p| *p == s.focus).unwrap_or(0);
            let n = Pane::ORDER.len();
            s.focus = Pane::ORDER[if c == Command::NextPane { (i + 1) % n } else { (i + n - 1) % n }];
        }
        Command::Open => match s.focus {
            Pane::Probes => s.focus = Pane::Candidates,
            Pane::Stream | Pane::Candidates => open_detail(s),
        },
        Command::Back => {
            s.note = None;
            if !s.filter.is_empty() {
                s.filter.clear();
            }
        }
        Command::Accept => accept(s, fx),
        Command::Reject => review(s, Review::RejectAll, fx),
        Command::RejectWithReason => tagging::open_reject(s),
        Command::Tag => tagging::open_tag(s),
        Command::Bulk => tagging::open_bulk(s),
        Command::More => review(s, Review::More { n: s.settings.runs }, fx),
        Command::Skip => review(s, Review::Skip, fx),
        Command::Undo => control(s, Control::Undo, fx),
        Command::Pause => {
            let paused = s.settings.paused;
            control(s, if paused { Control::Resume } else { Control::Pause }, fx);
            if !paused && s.generating() {
                note(s, Level::Info, "pausing: the queue stops once the candidates in progress finish");
            }
        }
        Command::Cancel => {
            if s.generating() {
                control(s, Control::CancelGeneration, fx);
            } else {
                note(s, Level::Info, "nothing is being generated");
            }
        }
        Command::Limits => s.modal = Some(Modal::Limits(Box::new(LimitsForm::new(&s.settings)))),
        Command::Mode => {
            let mode = match s.settings.mode {
                CurationMode::Auto => CurationMode::Review,
                CurationMode::Review => CurationMode::Auto,
            };
            control(s, Control::SetMode(mode), fx);
        }
        Command::Filter => s.modal = Some(Modal::Filter),
        Command::Sort | Command::SortReverse => sorting::sort(s, c == Command::Sort),
        Command::Compare => match super::compare::Compare::open(s) {
            Ok(c) => s.modal = Some(Modal::Compare(Box::new(c))),
            Err(why) => note(s, Level::Info, why),
        },
        Command::Edit => curation::start_edit(s, fx),
        Command::History => curation::open_history(s),
        Command::Help => s.modal = Some(Modal::Help),
        Command::Quit => {
            if s.generating() && !s.engine_gone {
                s.modal = Some(Modal::ConfirmQuit);
            } else {
                quit(s, fx);
            }
        }
        Command::Confirm => {}
    }
}

fn quit(s: &mut State, fx: &mut Vec<Effect>) {
    s.quitting = true;
    fx.push(Effect::Quit);
}

pub(super) fn control(s: &mut State, c: Control, fx: &mut Vec<Effect>) {
    if s.engine_gone {
        note(s, Level::Warn, "the run has ended; nothing more can be changed");
    } else {
        fx.push(Effect::Control(c));
    }
}

fn page(s: &State) -> isize {
    let rows = s.rows(s.selected).len();
    let p = layout::panes(area(s), rows);
    let h = match s.focus {
        Pane::Probes => p.probes.height,
        Pane::Stream => p.stream.height,
        Pane::Candidates => p.candidates.height,
    };
    isize::try_from(h.saturating_sub(3).max(1)).unwrap_or(1)
}

fn navigate(s: &mut State, by: isize) {
    match s.focus {
        Pane::Probes => move_probe(s, by),
        Pane::Candidates => {
            let n = s.rows(s.selected).len();
            s.cand = step(s.cand, by, n);
            s.auto_select = false;
        }
        Pane::Stream => {
            let h = usize::from(layout::stream_text(area(s), s.rows(s.selected).len()).height.max(1));
            let max = s.stream.text.rows().saturating_sub(h);
            let top = if s.stream.follow { max } else { s.stream.top.min(max) };
            s.stream.top = step(top, by, max + 1);
            s.stream.follow = s.stream.top >= max;
        }
    }
}

fn step(i: usize, by: isize, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    i.saturating_add_signed(by).min(n - 1)
}

fn move_probe(s: &mut State, by: isize) {
    let visible = s.order();
    if visible.is_empty() {
        return;
    }
    let pos = visible.iter().position(|&i| i == s.selected).unwrap_or(0);
    let next = visible[step(pos, by, visible.len())];
    if next != s.selected {
        select_probe(s, next);
    }
    s.auto_select = Some(s.selected) == s.current || Some(s.selected) == s.reviewing;
}

fn keep_selection_visible(s: &mut State) {
    s.reorder();
    let visible = s.order();
    if let Some(&first) = visible.first().filter(|_| !visible.contains(&s.selected)) {
        select_probe(s, first);
    }
}

/// Selects a probe and its best candidate (or the first row).
fn select_probe(s: &mut State, i: usize) {
    s.selected = i;
    let best = s.probes.get(i).and_then(|p| p.best()).map(|c| c.run);
    s.cand = best.and_then(|b| s.rows(i).iter().position(|r| r.run() == b)).unwrap_or(0);
}

fn open_detail(s: &mut State) {
    let Some(row) = s.selected_row() else {
        note(s, Level::Info, "no candidate selected");
        return;
    };
    let (run, text) = match row {
        Row::Done(c) => (c.run, c.text.clone()),
        Row::Live(l) => (l.run, l.text.clone()),
    };
    let (_, body, _) = layout::detail(area(s));
    s.modal = Some(Modal::Detail { probe: s.selected, run, text: Wrapped::with_text(body.width, &text), top: 0 });
}

fn review(s: &mut State, r: Review, fx: &mut Vec<Effect>) {
    let Some(probe) = review_target(s) else { return };
    send_review(s, probe, r, fx);
}

pub(super) fn review_target(s: &mut State) -> Option<usize> {
    let sel = &s.probes[s.selected.min(s.probes.len().saturating_sub(1))];
    let why = match s.reviewing {
        _ if s.decision_sent => "waiting for the engine to record the last decision".to_owned(),
        Some(r) if r == s.selected => return Some(r),
        Some(r) => format!("{} is not awaiting review; {} is", sel.id, s.probes[r].id),
        None if s.settings.mode == CurationMode::Auto => "auto mode decides by the gate (m switches to review)".into(),
        None => format!("{} is not awaiting review", sel.id),
    };
    note(s, Level::Warn, why);
    None
}

fn accept(s: &mut State, fx: &mut Vec<Effect>) {
    let Some(probe) = review_target(s) else { return };
    let Some(Row::Done(c)) = s.selected_row() else {
        note(s, Level::Warn, "select a finished candidate to accept");
        return;
    };
    let (run, score) = (c.run, c.composite());
    let Some(score) = score else {
        note(s, Level::Warn, format!("candidate {} has no score (too short, failed or cancelled)", run + 1));
        return;
    };
    if score < s.info.gate {
        s.modal = Some(Modal::ConfirmAccept { probe, run, score, gate: s.info.gate });
        return;
    }
    send_review(s, probe, Review::Accept { run, below_gate_ok: false }, fx);
}

pub(super) fn send_review(s: &mut State, probe: usize, review: Review, fx: &mut Vec<Effect>) {
    if s.engine_gone {
        return note(s, Level::Warn, "the run has ended; nothing more can be decided");
    }
    s.decision_sent = true;
    fx.push(Effect::Control(Control::Review { probe, review }));
}

fn submit_limits(s: &mut State, mut form: Box<LimitsForm>, fx: &mut Vec<Effect>) {
    let Some(v) = form.validate() else {
        s.modal = Some(Modal::Limits(form));
        return;
    };
    let before = fx.len();
    if v.limits != s.settings.limits {
        control(s, Control::SetLimits(v.limits), fx);
    }
    if v.runs != s.settings.runs {
        control(s, Control::SetRuns(v.runs), fx);
    }
    if (v.temperature - s.settings.temperature).abs() > f32::EPSILON {
        control(s, Control::SetTemperature(v.temperature), fx);
    }
    if fx.len() == before && !s.engine_gone {
        note(s, Level::Info, "limits unchanged");
    }
}

/// Points the stream pane at the selected candidate and keeps it wrapped for its width.
fn sync_stream(s: &mut State) {
    let rows = s.rows(s.selected);
    let target = rows.get(s.cand).map(|r| (s.selected, r.run()));
    let width = layout::stream_text(area(s), rows.len()).width;
    if target != s.stream.target {
        let text = match rows.get(s.cand) {
            Some(Row::Done(c)) => c.text.as_str(),
            Some(Row::Live(l)) => l.text.as_str(),
            None => "",
        };
        s.stream.text = Wrapped::with_text(width, text);
        s.stream.target = target;
        s.stream.follow = true;
        s.stream.top = 0;
    } else {
        s.stream.text.set_width(width);
    }
}

mod curation;
mod engine;
mod sorting;
mod tagging;

pub use tagging::describe as describe_bulk;

#[cfg(test)]
mod tests;
