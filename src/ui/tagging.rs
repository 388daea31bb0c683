//! The tag editor, the bulk chooser and the bulk's count confirmation.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::layout::centered;
use super::{fit, popup};
use crate::app::Command;
use crate::app::state::{BulkPlan, State, TagForm, TagTarget};
use crate::theme::{Role, Theme};

fn key_hint<'a>(s: &State, t: &Theme, items: &[(Command, &'a str)]) -> Line<'a> {
    let mut spans = vec![Span::raw(" ")];
    for (c, what) in items {
        spans.push(Span::styled(s.keymap.hint(*c), t.style(Role::Key)));
        spans.push(Span::styled(format!(" {what}  "), t.style(Role::Dim)));
    }
    Line::from(spans)
}

pub fn tag_form(s: &State, form: &TagForm, t: &Theme, f: &mut Frame, area: Rect) {
    let id = |i: &usize| s.probes.get(*i).map_or("?", |p| p.id.as_str()).to_owned();
    let title = match &form.target {
        TagTarget::One(i) => format!("Tags · {}", id(i)),
        TagTarget::Reject(i) => format!("Reject {} · reason (optional)", id(i)),
        TagTarget::Bulk(v) => format!("Tags for {} probes", v.len()),
    };
    let width = area.width.saturating_sub(4).min(70);
    let height = u16::try_from(form.recent.len().max(1)).unwrap_or(1).saturating_add(6).min(area.height);
    let inner = popup(f, centered(area, width, height), &title, t);
    let w = usize::from(inner.width).saturating_sub(10);
    let field = |label: &str, value: &str, focus: bool| {
        let style = t.style(if focus { Role::Selected } else { Role::Text });
        let cursor = if focus { "▏" } else { "" };
        Line::from(vec![
            Span::styled(if focus { "▸ " } else { "  " }, t.style(Role::Key)),
            Span::styled(format!("{label:<6}"), t.style(Role::Popup)),
            Span::styled(format!("{}{cursor}", fit(value, w)), style),
        ])
    };
    let mut lines = vec![
        field("tags", &form.tags, form.focus == 0),
        field("note", &form.note, form.focus == 1),
        Line::styled("  tags are comma separated; Enter on a recent tag adds or removes it", t.style(Role::Dim)),
    ];
    if form.recent.is_empty() {
        lines.push(Line::styled("  (no recent tags yet)", t.style(Role::Dim)));
    } else {
        let chosen = form.tag_list();
        for (k, tag) in form.recent.iter().enumerate() {
            let focus = form.focus == k + 2;
            let mark = if chosen.contains(tag) { "[x]" } else { "[ ]" };
            let style = t.style(if focus { Role::Selected } else { Role::Marker });
            lines.push(Line::from(vec![
                Span::styled(if focus { "▸ " } else { "  " }, t.style(Role::Key)),
                Span::styled(format!("{mark} {}", fit(tag, w)), style),
            ]));
        }
    }
    lines.push(Line::from(vec![
        Span::styled("  Enter", t.style(Role::Key)),
        Span::styled(
            match form.target {
                TagTarget::Reject(_) => " reject  ",
                TagTarget::Bulk(_) => " next  ",
                TagTarget::One(_) => " save  ",
            },
            t.style(Role::Dim),
        ),
        Span::styled("Tab/↑↓", t.style(Role::Key)),
        Span::styled(" field  ", t.style(Role::Dim)),
        Span::styled("Esc", t.style(Role::Key)),
        Span::styled(" cancel", t.style(Role::Dim)),
    ]));
    f.render_widget(Paragraph::new(lines).style(t.style(Role::Popup)), inner);
}

pub fn bulk_choose(s: &State, probes: &[usize], t: &Theme, f: &mut Frame, area: Rect) {
    let scope = if s.filter.is_empty() { "every probe".to_owned() } else { format!("the filter /{}", s.filter) };
    let inner = popup(f, centered(area, 60, 9), "Bulk", t);
    let w = usize::from(inner.width).saturating_sub(2);
    let lines = vec![
        Line::styled(fit(&format!(" {} probes: {scope}", probes.len()), w + 1), t.style(Role::Popup)),
        Line::raw(""),
        key_hint(s, t, &[(Command::Accept, "accept the best"), (Command::Reject, "reject")]),
        key_hint(s, t, &[(Command::Skip, "skip"), (Command::Tag, "tag")]),
        Line::raw(""),
        Line::styled(" a count confirmation comes next; Esc cancels", t.style(Role::Dim)),
    ];
    f.render_widget(Paragraph::new(lines), inner);
}

pub fn confirm_bulk(s: &State, plan: &BulkPlan, t: &Theme, f: &mut Frame, area: Rect) {
    let lines = crate::app::update::describe_bulk(plan, s.info.gate);
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let max = usize::from(area.width.saturating_sub(8));
    let fitted: Vec<String> = refs.iter().map(|l| fit(l, max)).collect();
    let refs: Vec<&str> = fitted.iter().map(String::as_str).collect();
    super::overlays::confirm(t, f, area, &format!("Bulk over {} probes?", plan.probes.len()), &refs, s);
}
