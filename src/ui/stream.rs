//! The live stream: the selected candidate's text, following the tail unless the operator
//! scrolled up, with a marker on the bottom border when there is new output below.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{block, focused};
use crate::app::state::{Pane, Row, State};
use crate::theme::{Role, Theme};

pub fn render(s: &State, t: &Theme, f: &mut Frame, area: Rect) {
    let title = match (s.stream.target, s.selected_row()) {
        (Some((p, run)), Some(Row::Live(l))) => {
            format!("Stream · {} · candidate {} · {} tok", s.probes[p].id, run + 1, l.tokens)
        }
        (Some((p, run)), Some(Row::Done(c))) => {
            format!("Text · {} · candidate {} · {} tok", s.probes[p].id, run + 1, c.metrics.generated_tokens)
        }
        _ => "Stream".to_owned(),
    };
    let b = block(&title, focused(s, Pane::Stream), t);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let h = usize::from(inner.height);
    if h == 0 || inner.width == 0 {
        return;
    }
    let text = &s.stream.text;
    let max_top = text.rows().saturating_sub(h);
    let top = if s.stream.follow { max_top } else { s.stream.top.min(max_top) };
    let style = t.style(Role::Text);
    let lines: Vec<Line<'_>> = (top..(top + h).min(text.rows())).map(|i| Line::styled(text.row(i), style)).collect();
    if lines.iter().all(|l| l.width() == 0) && s.stream.target.is_none() {
        let hint = if s.finished.is_some() { "the run has finished" } else { "waiting for the first token…" };
        f.render_widget(Paragraph::new(Line::styled(hint, t.style(Role::Dim))), inner);
    } else {
        f.render_widget(Paragraph::new(lines), inner);
    }
    if !s.stream.follow && text.rows() > top + h {
        let below = text.rows() - top - h;
        let marker = format!(" ▼ {below} more below ({} follows) ", s.keymap.hint(crate::app::Command::Bottom));
        let w = u16::try_from(marker.chars().count()).unwrap_or(u16::MAX).min(area.width.saturating_sub(2));
        let r = Rect {
            x: area.x + area.width.saturating_sub(w + 1),
            y: area.bottom().saturating_sub(1),
            width: w,
            height: 1,
        };
        f.render_widget(Paragraph::new(Span::styled(marker, t.style(Role::Marker))), r);
    }
}
