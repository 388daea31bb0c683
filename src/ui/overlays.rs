//! What is drawn over the panes: help, the filter prompt, the limits form, confirmations and
//! a candidate's full text.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::layout::centered;
use super::{fit, popup};
use crate::app::Command;
use crate::app::state::{LimitsForm, State};
use crate::app::wrap::Wrapped;
use crate::theme::{Role, Theme};

pub fn help(s: &State, t: &Theme, f: &mut Frame, area: Rect) {
    let n = Command::ALL.len();
    let cols = if usize::from(area.height.saturating_sub(4)) < n + 1 && area.width >= 70 { 2 } else { 1 };
    let per_col = n.div_ceil(cols);
    let width = if cols == 2 { 76 } else { 48 };
    let height = u16::try_from(per_col).unwrap_or(u16::MAX).saturating_add(4);
    let inner = popup(f, centered(area, width, height), "Keys (Esc closes)", t);
    let parts = Layout::horizontal(vec![Constraint::Ratio(1, u32::try_from(cols).unwrap_or(1)); cols]).split(inner);
    for (col, chunk) in Command::ALL.chunks(per_col).enumerate() {
        let Some(r) = parts.get(col) else { break };
        let lines: Vec<Line<'_>> = chunk
            .iter()
            .map(|c| {
                let keys: Vec<String> = s.keymap.keys(*c).iter().take(2).map(crate::app::keymap::Key::label).collect();
                Line::from(vec![
                    Span::styled(format!("{:<10} ", fit(&keys.join(" "), 10)), t.style(Role::Key)),
                    Span::styled(c.describe(), t.style(Role::Popup)),
                ])
            })
            .collect();
        f.render_widget(Paragraph::new(lines), *r);
    }
    let foot = Rect { y: inner.bottom().saturating_sub(1), height: 1.min(inner.height), ..inner };
    let text = "keys are set in <config dir>/keymap.yaml; names as in the README";
    f.render_widget(Paragraph::new(Line::styled(fit(text, usize::from(foot.width)), t.style(Role::Dim))), foot);
}

pub fn filter(s: &State, t: &Theme, f: &mut Frame, probes: Rect) {
    if probes.height < 3 {
        return;
    }
    let r = Rect { x: probes.x + 1, y: probes.bottom() - 2, width: probes.width.saturating_sub(2), height: 1 };
    let line = Line::from(vec![
        Span::styled("/", t.style(Role::Key)),
        Span::styled(s.filter.clone(), t.style(Role::Popup)),
        Span::styled("▏", t.style(Role::Key)),
    ]);
    f.render_widget(ratatui::widgets::Clear, r);
    f.render_widget(Paragraph::new(line).style(t.style(Role::Popup)), r);
}

pub fn limits(s: &State, form: &LimitsForm, t: &Theme, f: &mut Frame, area: Rect) {
    let inner = popup(f, centered(area, 64, 12), "Limits and sampling", t);
    let mut lines = Vec::new();
    for (i, field) in form.fields.iter().enumerate() {
        let focus = i == form.focus;
        let value_style = t.style(if focus { Role::Selected } else { Role::Text });
        let cursor = if focus { "▏" } else { " " };
        lines.push(Line::from(vec![
            Span::styled(if focus { "▸ " } else { "  " }, t.style(Role::Key)),
            Span::styled(format!("{:<13}", field.label), t.style(Role::Popup)),
            Span::styled(format!(" {:<10}", format!("{}{cursor}", field.value)), value_style),
            Span::styled(format!(" {}", field.hint), t.style(Role::Dim)),
        ]));
        // The backend's refusal of the last limits sent, under the memory limit's field.
        let refused = if i == 0 { s.limits_refused.as_ref() } else { None };
        lines.push(match field.error.as_ref().or(refused) {
            Some(e) => Line::styled(
                format!("    {}", fit(e, usize::from(inner.width).saturating_sub(4))),
                t.style(Role::Error),
            ),
            None => Line::raw(""),
        });
    }
    let rss = s.memory.as_ref().map_or_else(|| "?".into(), |m| super::bytes(m.rss));
    lines.push(Line::styled(format!("  process RSS now: {rss}"), t.style(Role::Dim)));
    lines.push(Line::from(vec![
        Span::styled("  Enter", t.style(Role::Key)),
        Span::styled(" apply  ", t.style(Role::Dim)),
        Span::styled("Tab/↑↓", t.style(Role::Key)),
        Span::styled(" field  ", t.style(Role::Dim)),
        Span::styled("Esc", t.style(Role::Key)),
        Span::styled(" cancel", t.style(Role::Dim)),
    ]));
    f.render_widget(Paragraph::new(lines).style(t.style(Role::Popup)), inner);
}

pub fn confirm(t: &Theme, f: &mut Frame, area: Rect, title: &str, text: &[&str], s: &State) {
    let width = text.iter().map(|l| l.chars().count()).max().unwrap_or(20).max(30) + 4;
    let height = u16::try_from(text.len()).unwrap_or(8).saturating_add(4);
    let inner = popup(f, centered(area, u16::try_from(width).unwrap_or(60), height), title, t);
    let mut lines: Vec<Line<'_>> = text.iter().map(|l| Line::styled(format!(" {l}"), t.style(Role::Popup))).collect();
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled(format!(" {}", s.keymap.hint(Command::Confirm)), t.style(Role::Key)),
        Span::styled(" yes   ", t.style(Role::Popup)),
        Span::styled("n/Esc", t.style(Role::Key)),
        Span::styled(" no", t.style(Role::Popup)),
    ]));
    f.render_widget(Paragraph::new(lines), inner);
}

pub fn detail(s: &State, (probe, run): (usize, u32), text: &Wrapped, top: usize, t: &Theme, f: &mut Frame, area: Rect) {
    let (outer, body, side) = super::layout::detail(area);
    let cand = s.probes.get(probe).and_then(|p| p.candidates.iter().find(|c| c.run == run));
    let id = s.probes.get(probe).map_or("?", |p| p.id.as_str());
    let edit = cand.and_then(|c| c.derived_from).map(|p| format!(" (edit of {})", p + 1)).unwrap_or_default();
    let title = format!("{id} · candidate {}{edit} · {} chars · ↑↓ scroll · Esc closes", run + 1, text.text().len());
    popup(f, outer, &title, t);
    let h = usize::from(body.height);
    let lines: Vec<Line<'_>> =
        (top..(top + h).min(text.rows())).map(|i| Line::styled(text.row(i), t.style(Role::Text))).collect();
    f.render_widget(Paragraph::new(lines).style(t.style(Role::Popup)), body);
    let below = text.rows().saturating_sub(top + h);
    if below > 0 && body.height > 0 {
        let marker = format!(" ▼ {below} more ");
        let w = u16::try_from(marker.chars().count()).unwrap_or(10).min(body.width);
        let r = Rect { x: body.right() - w, y: body.bottom() - 1, width: w, height: 1 };
        f.render_widget(Paragraph::new(Span::styled(marker, t.style(Role::Marker))), r);
    }
    super::scores::render(cand, s.info.gate, t, f, side);
}
