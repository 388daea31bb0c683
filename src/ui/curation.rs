//! The inline editor and the history of decisions, drawn over the panes.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::layout::centered;
use super::{fit, highlight, popup};
use crate::app::Command;
use crate::app::edit::InlineEdit;
use crate::app::state::State;
use crate::distill::{Decider, Decision};
use crate::theme::{Role, Theme};

pub fn edit(s: &State, e: &InlineEdit, t: &Theme, f: &mut Frame, area: Rect) {
    let (outer, body, side) = super::layout::detail(area);
    let id = s.probes.get(e.probe).map_or("?", |p| p.id.as_str());
    let title = format!("{id} · editing candidate {} · C-s stores it as a new candidate · Esc discards", e.parent + 1);
    popup(f, outer, &fit(&title, usize::from(outer.width.saturating_sub(4))), t);
    let h = usize::from(body.height);
    if h == 0 || body.width == 0 {
        return;
    }
    let (rows, (crow, ccol)) = e.rows(usize::from(body.width.saturating_sub(1)).max(1));
    let top = crow.saturating_sub(h - 1);
    let text = t.style(Role::Text);
    let lines: Vec<Line<'_>> = rows
        .iter()
        .enumerate()
        .skip(top)
        .take(h)
        .map(|(i, row)| {
            if i != crow {
                return Line::styled(row.clone(), text);
            }
            let before: String = row.chars().take(ccol).collect();
            let at: String = row.chars().nth(ccol).map_or_else(|| " ".into(), String::from);
            let after: String = row.chars().skip(ccol + 1).collect();
            Line::from(vec![
                Span::styled(before, text),
                Span::styled(at, t.style(Role::Selected)),
                Span::styled(after, text),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines).style(t.style(Role::Popup)), body);
    let original = s.probes.get(e.probe).and_then(|p| p.candidates.iter().find(|c| c.run == e.parent));
    super::scores::render(original, s.info.gate, t, f, side);
}

fn what(d: &Decision, s: &State, probe: usize) -> (String, Role) {
    match d {
        Decision::Kept { run, by } => {
            let c = s.probes.get(probe).and_then(|p| p.candidates.iter().find(|c| c.run == *run));
            let edit = c.and_then(|c| c.derived_from).map(|p| format!(" (edit of {})", p + 1)).unwrap_or_default();
            let score = c.and_then(|c| c.composite()).map(|g| format!(" g={g:.1}")).unwrap_or_default();
            (format!("kept {}{edit}{score}{}", run + 1, by_gate(*by)), Role::Kept)
        }
        Decision::Skipped { best, by } => (format!("skipped (best {best:.1}){}", by_gate(*by)), Role::Skipped),
        Decision::Rejected => ("rejected".into(), Role::Failed),
    }
}

fn by_gate(by: Decider) -> &'static str {
    if by == Decider::Gate { " · gate" } else { "" }
}

pub fn history(s: &State, sel: usize, t: &Theme, f: &mut Frame, area: Rect) {
    let n = s.recent().count();
    let width = area.width.saturating_sub(4).min(96);
    let height = u16::try_from(n).unwrap_or(u16::MAX).saturating_add(4).min(area.height.saturating_sub(2));
    let title = format!("Decisions · last {n}, newest first");
    let inner = popup(f, centered(area, width, height), &title, t);
    let rows = usize::from(inner.height.saturating_sub(1));
    if rows == 0 {
        return;
    }
    let top = sel.saturating_sub(rows - 1);
    let w = usize::from(inner.width);
    let mut lines: Vec<Line<'_>> = Vec::new();
    for (i, d) in s.recent().enumerate().skip(top).take(rows) {
        let (id, domain) = s.probes.get(d.probe).map_or(("?", ""), |p| (p.id.as_str(), p.domain.as_str()));
        let (text, role) = what(&d.decision, s, d.probe);
        let mut line = Line::from(vec![
            Span::styled(format!("{:>3} ", i + 1), t.style(Role::Dim)),
            Span::styled(format!("{:<14} ", fit(id, 14)), t.style(Role::Text)),
            Span::styled(format!("{:<10} ", fit(domain, 10)), t.style(Role::Dim)),
            Span::styled(fit(&text, w.saturating_sub(30)), t.style(role)),
        ]);
        if i == sel {
            line = highlight(line, t.style(Role::Selected));
        }
        lines.push(line);
    }
    f.render_widget(Paragraph::new(lines).style(t.style(Role::Popup)), inner);
    let foot = Rect { y: inner.bottom().saturating_sub(1), height: 1, ..inner };
    let hint = Line::from(vec![
        Span::styled(s.keymap.hint(Command::Open), t.style(Role::Key)),
        Span::styled(" reopens: its lesson line is taken out, decide again  ", t.style(Role::Dim)),
        Span::styled(s.keymap.hint(Command::Back), t.style(Role::Key)),
        Span::styled(" closes", t.style(Role::Dim)),
    ]);
    f.render_widget(Paragraph::new(hint), foot);
}
