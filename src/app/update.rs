//! The one state transition: `update(&mut State, Action) -> Vec<Effect>`. No I/O, no clock,
//! no channels; what must happen outside is returned as [`Effect`]s.

use std::time::Duration;

use ratatui::layout::Rect;

use super::action::{Action, Command};
use super::effect::Effect;
use super::state::{Level, LimitsForm, LiveRun, Modal, Note, Pane, Row, State, Status};
use super::wrap::Wrapped;
use crate::distill::{Candidate, Control, CurationMode, Decision, EngineEvent, Outcome, Review};
use crate::ui::layout;

pub fn update(s: &mut State, action: Action) -> Vec<Effect> {
    let mut fx = Vec::new();
    match action {
        Action::Command(c) => command(s, c, &mut fx),
        Action::Char(c) => match &mut s.modal {
            Some(Modal::Filter) => {
                s.filter.push(c);
                keep_selection_visible(s);
            }
            Some(Modal::Limits(f)) => f.type_char(c),
            _ => {}
        },
        Action::Backspace => match &mut s.modal {
            Some(Modal::Filter) => {
                s.filter.pop();
                keep_selection_visible(s);
            }
            Some(Modal::Limits(f)) => f.backspace(),
            _ => {}
        },
        Action::Engine { event, at } => {
            tick(s, at);
            engine(s, event, at);
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
    }
    sync_stream(s);
    fx
}

fn tick(s: &mut State, at: Duration) {
    s.now = s.now.max(at);
    s.throughput.advance(at);
}

fn note(s: &mut State, level: Level, text: impl Into<String>) {
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
                Command::Accept | Command::Reject | Command::More | Command::Skip | Command::Quit => {
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
        Command::Limits => s.modal = Some(Modal::Limits(LimitsForm::new(&s.settings))),
        Command::Mode => {
            let mode = match s.settings.mode {
                CurationMode::Auto => CurationMode::Review,
                CurationMode::Review => CurationMode::Auto,
            };
            control(s, Control::SetMode(mode), fx);
        }
        Command::Filter => s.modal = Some(Modal::Filter),
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

fn control(s: &mut State, c: Control, fx: &mut Vec<Effect>) {
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
    let visible = s.visible();
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
    let visible = s.visible();
    if !visible.contains(&s.selected) {
        if let Some(&first) = visible.first() {
            select_probe(s, first);
        }
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

fn review_target(s: &mut State) -> Option<usize> {
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

fn send_review(s: &mut State, probe: usize, review: Review, fx: &mut Vec<Effect>) {
    if s.engine_gone {
        return note(s, Level::Warn, "the run has ended; nothing more can be decided");
    }
    s.decision_sent = true;
    fx.push(Effect::Control(Control::Review { probe, review }));
}

fn submit_limits(s: &mut State, mut form: LimitsForm, fx: &mut Vec<Effect>) {
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

fn live_mut(s: &mut State, run: u32) -> Option<&mut LiveRun> {
    s.live.iter_mut().find(|l| l.run == run)
}

fn engine(s: &mut State, ev: EngineEvent, at: Duration) {
    match ev {
        EngineEvent::Settings(settings) => s.settings = settings,
        EngineEvent::Resumed { done } => {
            for (i, d) in done {
                if let Some(p) = s.probes.get_mut(i) {
                    p.status = status_of(&d, &p.candidates);
                    p.decision = Some(d);
                }
            }
        }
        EngineEvent::ProbeStarted { probe, runs } => {
            s.first_start.get_or_insert(at);
            s.current = Some(probe);
            s.decision_sent = false;
            if s.reviewing == Some(probe) {
                s.reviewing = None;
            }
            let base = s.probes.get(probe).map_or(0, |p| u32::try_from(p.candidates.len()).unwrap_or(0));
            s.live = (base..base + runs).map(|run| LiveRun { run, text: String::new(), tokens: 0, done: false }).collect();
            if let Some(p) = s.probes.get_mut(probe) {
                p.status = Status::Generating;
            }
            s.throughput.request(at);
            if s.auto_select {
                s.selected = probe;
                s.cand = s.rows(probe).iter().position(|r| r.run() == base).unwrap_or(0);
            }
        }
        EngineEvent::Prefilled { prompt_tokens, elapsed, .. } => {
            let secs = elapsed.as_secs_f64();
            s.throughput.prefill_tok_s = (secs > 0.0).then(|| f64::from(prompt_tokens) / secs);
        }
        EngineEvent::Token { probe, run, text } => {
            s.throughput.token(at);
            if let Some(l) = live_mut(s, run) {
                l.text.push_str(&text);
                l.tokens += 1;
            }
            if s.stream.target == Some((probe, run)) {
                s.stream.text.push_str(&text);
            } else if s.auto_select && s.selected == probe && !matches!(s.selected_row(), Some(Row::Live(_))) {
                // Sequential runs: follow the candidate that is streaming now.
                if let Some(i) = s.rows(probe).iter().position(|r| r.run() == run) {
                    s.cand = i;
                }
            }
        }
        EngineEvent::Restarted { probe, run, reason } => {
            if let Some(l) = live_mut(s, run) {
                l.text.clear();
                l.tokens = 0;
            }
            if s.stream.target == Some((probe, run)) {
                s.stream.text = Wrapped::new(s.stream.text.width());
                s.stream.follow = true;
                s.stream.top = 0;
            }
            note(s, Level::Warn, format!("candidate {} restarted: {reason}", run + 1));
        }
        EngineEvent::CandidateDone { probe, candidate } => {
            if let Some(l) = live_mut(s, candidate.run) {
                l.done = true;
            }
            s.throughput.last_decode_tok_s = Some(candidate.metrics.decode_tok_s).filter(|r| *r > 0.0);
            refresh_stream_text(s, probe, &candidate);
            if let Some(p) = s.probes.get_mut(probe) {
                p.candidates.retain(|c| c.run != candidate.run);
                p.candidates.push(candidate);
                p.candidates.sort_by_key(|c| c.run);
            }
        }
        EngineEvent::AwaitingReview { probe, candidates, best, gate } => {
            s.info.gate = gate;
            if s.current == Some(probe) {
                s.current = None;
                s.live.clear();
            }
            s.reviewing = Some(probe);
            s.decision_sent = false;
            for c in &candidates {
                refresh_stream_text(s, probe, c);
            }
            if let Some(p) = s.probes.get_mut(probe) {
                p.candidates = candidates;
                p.status = Status::Review;
                p.decision = None;
            }
            s.selected = probe;
            s.auto_select = true;
            keep_filter_showing(s, probe);
            s.cand = best.and_then(|b| s.rows(probe).iter().position(|r| r.run() == b)).unwrap_or(0);
            let id = s.probes.get(probe).map_or("?", |p| p.id.as_str());
            note(s, Level::Info, format!("{id} awaits review: the best is selected"));
        }
        EngineEvent::ProbeDecided { probe, decision, .. } => {
            if s.reviewing == Some(probe) {
                s.reviewing = None;
            }
            if s.current == Some(probe) {
                s.current = None;
            }
            s.decision_sent = false;
            if let Some(p) = s.probes.get_mut(probe) {
                p.status = status_of(&decision, &p.candidates);
                let id = p.id.clone();
                let text = match &decision {
                    Decision::Kept { run, .. } => format!("{id}: kept candidate {} (lesson line written)", run + 1),
                    Decision::Skipped { best, .. } => format!("{id}: skipped (best g={best:.1})"),
                    Decision::Rejected => format!("{id}: all candidates rejected"),
                };
                p.decision = Some(decision);
                note(s, Level::Info, text);
            }
        }
        EngineEvent::Undone { probe, decision } => {
            if let Some(p) = s.probes.get_mut(probe) {
                p.status = Status::Review;
                p.decision = None;
                let what = match decision {
                    Decision::Kept { run, .. } => format!("kept candidate {}; its lesson line was removed", run + 1),
                    Decision::Skipped { .. } => "skipped".into(),
                    Decision::Rejected => "rejected".into(),
                };
                let text = format!("undone: {} ({what})", p.id);
                note(s, Level::Info, text);
            }
            if s.reviewing.is_some_and(|r| r != probe) {
                if let Some(p) = s.reviewing.and_then(|r| s.probes.get_mut(r)) {
                    p.status = Status::Queued;
                }
                s.reviewing = None;
            }
            s.decision_sent = false;
        }
        EngineEvent::Refused { reason } => {
            s.decision_sent = false;
            note(s, Level::Warn, reason);
        }
        EngineEvent::Paused { reason } => note(s, Level::Warn, format!("paused: {reason}")),
        EngineEvent::Unpaused => note(s, Level::Info, "resumed"),
        EngineEvent::Finished(summary) => {
            let text = match &summary.stopped_early {
                Some(why) => format!("run ended ({why}): kept {}, skipped {}", summary.kept, summary.skipped),
                None => format!("run finished: kept {}, skipped {} — q quits", summary.kept, summary.skipped),
            };
            s.finished = Some(summary);
            s.current = None;
            s.reviewing = None;
            for l in &mut s.live {
                l.done = true;
            }
            note(s, Level::Info, text);
        }
    }
}

/// The stream shows what was streamed; when the final text differs (a restart, a backend that
/// trims), the final text wins, keeping the scroll position.
fn refresh_stream_text(s: &mut State, probe: usize, c: &Candidate) {
    if s.stream.target == Some((probe, c.run)) {
        let streamed = s.live.iter().find(|l| l.run == c.run).map(|l| l.text.as_str());
        if streamed != Some(c.text.as_str()) {
            s.stream.text = Wrapped::with_text(s.stream.text.width(), &c.text);
        }
    }
}

fn keep_filter_showing(s: &mut State, probe: usize) {
    if !s.visible().contains(&probe) {
        s.filter.clear();
    }
}

fn status_of(d: &Decision, candidates: &[Candidate]) -> Status {
    match d {
        Decision::Kept { .. } => Status::Kept,
        Decision::Rejected => Status::Rejected,
        Decision::Skipped { .. } => {
            let scored = candidates.iter().any(|c| c.composite().is_some());
            let failed = candidates.iter().any(|c| matches!(c.outcome, Outcome::Failed(_)));
            if !scored && failed { Status::Failed } else { Status::Skipped }
        }
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

#[cfg(test)]
#[path = "update/tests.rs"]
mod tests;
