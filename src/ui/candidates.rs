//! The candidate table of the selected probe. Columns drop from the right of the priority
//! list as the pane narrows; the best-of-N pick is starred and drawn in the `best` role.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::{block, focused};
use crate::app::state::{Pane, Row, State, scores};
use crate::distill::{Candidate, Outcome};
use crate::theme::{Role, Theme};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    Chars,
    Composite,
    Uplift,
    Echo,
    Enrichment,
    Syco,
    TokS,
    Time,
    Gate,
}

/// (column, header, width), in the order they are dropped last-first.
const COLS: [(Col, &str, usize); 9] = [
    (Col::Composite, "  comp", 6),
    (Col::Gate, " gate", 5),
    (Col::Chars, " chars", 6),
    (Col::Uplift, "    up", 6),
    (Col::Echo, "  echo", 6),
    (Col::Enrichment, "   enr", 6),
    (Col::TokS, " tok/s", 6),
    (Col::Time, "  time", 6),
    (Col::Syco, " syc", 4),
];

fn cell(col: Col, c: &Candidate, gate: f64) -> (String, Option<Role>) {
    let (g, d) = match scores(c) {
        Some(x) => x,
        None => {
            return match col {
                Col::Chars => (format!("{:>6}", c.text.len()), None),
                Col::TokS => (format!("{:>6.0}", c.metrics.decode_tok_s), None),
                Col::Time => (format!("{:>5.1}s", c.metrics.wall.as_secs_f64()), None),
                Col::Composite => {
                    let what = match &c.outcome {
                        Outcome::TooShort => "EMPTY",
                        Outcome::Failed(_) => "ERROR",
                        Outcome::Cancelled => "CANCL",
                        Outcome::Scored { .. } => "",
                    };
                    (format!("{what:>6}"), Some(Role::Failed))
                }
                _ => (format!("{:>w$}", "-", w = width(col)), Some(Role::Dim)),
            };
        }
    };
    match col {
        Col::Chars => (format!("{:>6}", c.text.len()), None),
        Col::Composite => (format!("{:>6.1}", g.composite), None),
        Col::Uplift => (format!("{:>+6.1}", d.uplift), None),
        Col::Echo => (format!("{:>6.2}", d.echo), None),
        Col::Enrichment => (format!("{:>+6.1}", d.enrichment), None),
        Col::Syco => {
            if d.sycophantic {
                ("  ⚠ ".into(), Some(Role::Warn))
            } else {
                ("  · ".into(), Some(Role::Dim))
            }
        }
        Col::TokS => (format!("{:>6.0}", c.metrics.decode_tok_s), None),
        Col::Time => (format!("{:>5.1}s", c.metrics.wall.as_secs_f64()), None),
        Col::Gate => {
            if g.composite >= gate {
                (" pass".into(), Some(Role::GatePass))
            } else {
                (" fail".into(), Some(Role::GateFail))
            }
        }
    }
}

fn width(col: Col) -> usize {
    COLS.iter().find(|(c, _, _)| *c == col).map_or(6, |(_, _, w)| *w)
}

pub fn render(s: &State, t: &Theme, f: &mut Frame, area: Rect) {
    let rows = s.rows(s.selected);
    let id = s.probes.get(s.selected).map_or("", |p| p.id.as_str());
    let mut title = format!("Candidates · {id} · gate {:.1}", s.info.gate);
    if let Some(sort) = s.sorts.candidates.label() {
        title.push_str(&format!(" · {sort}"));
    }
    let b = block(&title, focused(s, Pane::Candidates), t);
    let inner = b.inner(area);
    f.render_widget(b, area);
    let h = usize::from(inner.height);
    let w = usize::from(inner.width);
    if h == 0 || w == 0 {
        return;
    }
    let mut used = 4;
    let cols: Vec<_> = COLS
        .iter()
        .take_while(|(_, _, cw)| {
            used += cw;
            used <= w
        })
        .collect();
    let mut header = vec![Span::styled("  # ", t.style(Role::Dim))];
    header.extend(cols.iter().map(|(_, name, _)| Span::styled(*name, t.style(Role::Dim))));
    let mut lines = vec![Line::from(header)];
    let best = s.probes.get(s.selected).and_then(|p| p.best()).map(|c| c.run);
    let offset = s.cand.saturating_sub(h.saturating_sub(2));
    for (i, row) in rows.iter().enumerate().skip(offset).take(h.saturating_sub(1)) {
        let is_best = Some(row.run()) == best;
        let mut line = match row {
            Row::Done(c) => {
                let star = if is_best { "★" } else { " " };
                // An operator's edit is marked beside its number.
                let edit = if c.derived_from.is_some() { "✎" } else { " " };
                let mut spans = vec![Span::styled(
                    format!("{star}{:>2}{edit}", c.run + 1),
                    t.style(if is_best { Role::Best } else { Role::Text }),
                )];
                for (col, _, _) in &cols {
                    let (text, role) = cell(*col, c, s.info.gate);
                    spans.push(Span::styled(text, t.style(role.unwrap_or(Role::Text))));
                }
                let mut line = Line::from(spans);
                if is_best {
                    line = line.style(t.style(Role::Best));
                }
                line
            }
            Row::Live(l) => Line::from(vec![
                Span::styled(format!(" {:>2} ", l.run + 1), t.style(Role::Text)),
                Span::styled(format!("▶ generating… {} tok", l.tokens), t.style(Role::Generating)),
            ]),
        };
        if i == s.cand {
            let mut sel = t.style(Role::Selected);
            if is_best {
                sel = sel.add_modifier(ratatui::style::Modifier::BOLD);
            }
            line = super::highlight(line, sel);
        }
        lines.push(line);
    }
    if rows.is_empty() {
        lines.push(Line::styled("no candidates yet", t.style(Role::Dim)));
    }
    f.render_widget(Paragraph::new(lines), inner);
}
