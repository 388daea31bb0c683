//! The compare view: two candidates side by side, each with its score breakdown on top and its
//! text below, the words only one side has marked (`diff_removed` on the left, `diff_added` on
//! the right). Both sides scroll together.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use unicode_width::UnicodeWidthStr;

use crate::app::compare::Compare;
use crate::app::diff::Mark;
use crate::app::state::State;
use crate::distill::{Candidate, Outcome};
use crate::theme::{Role, Theme};

/// Greedy word wrap of marked words into lines at most `width` columns wide.
fn wrap<'a>(words: &'a [(String, Mark)], width: usize, only: Role, t: &Theme) -> Vec<Line<'a>> {
    let mut lines = Vec::new();
    let mut line: Vec<Span<'a>> = Vec::new();
    let mut used = 0;
    for (w, mark) in words {
        let len = w.width();
        if used > 0 && used + 1 + len > width {
            lines.push(Line::from(std::mem::take(&mut line)));
            used = 0;
        }
        if used > 0 {
            line.push(Span::styled(" ", t.style(Role::Text)));
            used += 1;
        }
        let role = if *mark == Mark::Only { only } else { Role::Text };
        line.push(Span::styled(w.as_str(), t.style(role)));
        used += len;
    }
    if !line.is_empty() {
        lines.push(Line::from(line));
    }
    lines
}

fn breakdown<'a>(c: Option<&Candidate>, changed: usize, best: bool, t: &Theme) -> Vec<Line<'a>> {
    let Some(c) = c else { return vec![Line::styled("(gone)", t.style(Role::Dim))] };
    let star = if best { " ★ best" } else { "" };
    let mut out = vec![Line::styled(format!("candidate {}{star}", c.run + 1), t.style(Role::Title))];
    if let Outcome::Scored { grammar: g, delta: d } = &c.outcome {
        // Short lines, so the breakdown fits a half-width column of an 80-column terminal.
        let syc = if d.sycophantic { "  sycophantic" } else { "" };
        for (text, role) in [
            (format!("composite {:.1}  uplift {:+.1}", g.composite, d.uplift), Role::Text),
            (format!("echo {:.2}  enrichment {:+.1}{syc}", d.echo, d.enrichment), Role::Text),
            (
                format!("vocab {:.2}  tense {:.2}  depth {}", g.vocab_richness, g.tense_entropy, g.domain_depth),
                Role::Dim,
            ),
            (format!("verbs {}  nouns {}", g.verb_diversity, g.noun_diversity), Role::Dim),
        ] {
            out.push(Line::styled(text, t.style(role)));
        }
    }
    out.push(Line::styled(format!("{} chars · {changed} words only here", c.text.chars().count()), t.style(Role::Dim)));
    out
}

pub fn render(s: &State, cmp: &Compare, t: &Theme, f: &mut Frame, area: Rect) {
    let (outer, _, _) = super::layout::detail(area);
    let id = s.probes.get(cmp.probe).map_or("?", |p| p.id.as_str());
    let title = format!("{id} · candidate {} vs {} · Tab next · ↑↓ scroll · Esc closes", cmp.left + 1, cmp.right + 1);
    let body = super::popup(f, outer, &title, t);
    let [left, gap, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(1), Constraint::Fill(1)]).areas(body);
    let _ = gap;
    let probe = s.probes.get(cmp.probe);
    let find = |run: u32| probe.and_then(|p| p.candidates.iter().find(|c| c.run == run));
    let best = probe.and_then(|p| p.best()).map(|c| c.run);
    let (only_left, only_right) = cmp.diff.changed();
    for (side, run, words, only, changed) in [
        (left, cmp.left, &cmp.diff.left, Role::DiffRemoved, only_left),
        (right, cmp.right, &cmp.diff.right, Role::DiffAdded, only_right),
    ] {
        let mut lines = breakdown(find(run), changed, best == Some(run), t);
        lines.push(Line::styled("─".repeat(usize::from(side.width)), t.style(Role::Border)));
        let head = lines.len();
        let text = wrap(words, usize::from(side.width).max(1), only, t);
        let room = usize::from(side.height).saturating_sub(head);
        lines.extend(text.into_iter().skip(cmp.top).take(room));
        f.render_widget(Paragraph::new(lines).style(t.style(Role::Popup)), side);
    }
}
