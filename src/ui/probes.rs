//! The probe list: status, id, domain (when there is room) and best composite.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{block, fit, focused};
use crate::app::state::{Pane, State, Status};
use crate::theme::{Role, Theme};

pub fn status_role(st: Status) -> Role {
    match st {
        Status::Queued => Role::Queued,
        Status::Generating => Role::Generating,
        Status::Review => Role::Review,
        Status::Kept => Role::Kept,
        Status::Skipped | Status::Rejected => Role::Skipped,
        Status::Failed => Role::Failed,
    }
}

fn glyph(st: Status) -> &'static str {
    match st {
        Status::Queued => "·",
        Status::Generating => "▶",
        Status::Review => "?",
        Status::Kept => "✓",
        Status::Skipped => "✗",
        Status::Rejected => "⊘",
        Status::Failed => "!",
    }
}

pub fn render(s: &State, t: &Theme, f: &mut Frame, area: Rect) {
    let visible = s.order();
    let mut title = if s.filter.is_empty() {
        format!("Probes {}", s.probes.len())
    } else {
        format!("Probes {}/{} /{}", visible.len(), s.probes.len(), s.filter)
    };
    if let Some(sort) = s.sorts.probes.label() {
        title.push_str(&format!(" · {sort}"));
    }
    let b = block(&title, focused(s, Pane::Probes), t);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let h = usize::from(inner.height);
    let w = usize::from(inner.width);
    if h == 0 || w == 0 {
        return;
    }
    let pos = visible.iter().position(|&i| i == s.selected).unwrap_or(0);
    let offset = pos.saturating_sub(h.saturating_sub(1));
    // status glyph, id, [status label], [domain], best
    let show_label = w >= 34;
    let show_domain = w >= 44;
    // Tags get a column where there is room; elsewhere a `#` after the id says there are some.
    let show_tags = w >= 60;
    let id_w = if show_tags {
        w.saturating_sub(45)
    } else if show_domain {
        w.saturating_sub(31)
    } else if show_label {
        w.saturating_sub(19)
    } else {
        w.saturating_sub(8)
    };
    let mut lines = Vec::with_capacity(h);
    for &i in visible.iter().skip(offset).take(h) {
        let p = &s.probes[i];
        let st = t.style(status_role(p.status));
        let best = p
            .best()
            .and_then(crate::distill::Candidate::composite)
            .map_or_else(|| "   -".into(), |g| format!("{g:4.1}"));
        let tagged = !p.tagging.tags.is_empty() || p.tagging.note.is_some();
        let id = if tagged && !show_tags { fit(&format!("{}#", p.id), id_w) } else { fit(&p.id, id_w) };
        let mut spans = vec![
            Span::styled(format!("{} ", glyph(p.status)), st),
            Span::styled(format!("{id:<id_w$}"), t.style(Role::Text)),
        ];
        if show_label {
            spans.push(Span::styled(format!(" {:<10}", p.status.label()), st));
        }
        if show_domain {
            spans.push(Span::styled(format!(" {:<11}", fit(&p.domain, 11)), t.style(Role::Dim)));
        }
        if show_tags {
            let mut tags = p.tagging.tags.join(",");
            if p.tagging.note.is_some() {
                tags.push('*');
            }
            spans.push(Span::styled(format!(" {:<13}", fit(&tags, 13)), t.style(Role::Marker)));
        }
        let gate =
            t.style(if p.best().and_then(crate::distill::Candidate::composite).is_some_and(|g| g >= s.info.gate) {
                Role::GatePass
            } else {
                Role::Dim
            });
        spans.push(Span::styled(format!(" {best:>5}"), gate));
        let mut line = Line::from(spans);
        if i == s.selected {
            line = super::highlight(line, t.style(Role::Selected));
        }
        lines.push(line);
    }
    if visible.is_empty() {
        lines.push(Line::styled("no probe matches the filter", t.style(Role::Dim)));
    }
    f.render_widget(Paragraph::new(lines), inner);
}
