//! Pure rendering: `render(&State, &Theme, &mut Frame)` draws the whole screen from the state.
//! Nothing here sends, awaits or does I/O; long texts are pre-wrapped in the state and only
//! the visible rows are drawn.

pub mod candidates;
pub mod compare;
pub mod curation;
pub mod layout;
pub mod memory;
pub mod overlays;
pub mod probes;
pub mod scores;
pub mod status;
pub mod stream;
pub mod tagging;
pub mod throughput;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};

use crate::app::state::{Modal, Pane, State};
use crate::theme::{Role, Theme};

pub fn render(s: &State, t: &Theme, f: &mut Frame) {
    let area = f.area();
    f.render_widget(Block::new().style(t.style(Role::Base)), area);
    if area.width == 0 || area.height == 0 {
        return;
    }
    if layout::too_small(area) {
        return tiny(s, t, f, area);
    }
    let p = layout::panes(area, s.rows(s.selected).len());
    probes::render(s, t, f, p.probes);
    throughput::render(s, t, f, p.throughput);
    memory::render(s, t, f, p.memory);
    stream::render(s, t, f, p.stream);
    candidates::render(s, t, f, p.candidates);
    if p.scores.width > 0 {
        let c = match s.selected_row() {
            Some(crate::app::state::Row::Done(c)) => Some(c),
            _ => None,
        };
        let b = block("Scores", false, t);
        let inner = b.inner(p.scores);
        f.render_widget(b, p.scores);
        scores::render(c, s.info.gate, t, f, inner);
    }
    status::render(s, t, f, p.status);
    match &s.modal {
        None => {}
        Some(Modal::Help) => overlays::help(s, t, f, area),
        Some(Modal::Filter) => overlays::filter(s, t, f, p.probes),
        Some(Modal::Limits(form)) => overlays::limits(s, form, t, f, area),
        Some(Modal::ConfirmQuit) => overlays::confirm(
            t,
            f,
            area,
            "Quit?",
            &[
                "A candidate is being generated.",
                "Quitting cancels it; every decision so far is",
                "already in the lesson file.",
            ],
            s,
        ),
        Some(Modal::ConfirmAccept { probe, run, score, gate }) => {
            let id = s.probes.get(*probe).map_or("?", |p| p.id.as_str());
            let l1 = format!("{id}: candidate {} scores {score:.1},", run + 1);
            let l2 = format!("below the gate of {gate:.1}.");
            overlays::confirm(
                t,
                f,
                area,
                "Keep below the gate?",
                &[&l1, &l2, "Write it to the lesson file anyway?"],
                s,
            );
        }
        Some(Modal::Detail { probe, run, text, top }) => overlays::detail(s, (*probe, *run), text, *top, t, f, area),
        Some(Modal::Compare(cmp)) => compare::render(s, cmp, t, f, area),
        Some(Modal::Tag(form)) => tagging::tag_form(s, form, t, f, area),
        Some(Modal::BulkChoose { probes }) => tagging::bulk_choose(s, probes, t, f, area),
        Some(Modal::ConfirmBulk(plan)) => tagging::confirm_bulk(s, plan, t, f, area),
        Some(Modal::Edit(e)) => curation::edit(s, e, t, f, area),
        Some(Modal::History { sel }) => curation::history(s, *sel, t, f, area),
    }
}

/// A bordered pane; the focused one is drawn in the focus role.
pub fn block<'a>(title: &'a str, focused: bool, t: &Theme) -> Block<'a> {
    let (border, title_style) = if focused {
        (t.style(Role::BorderFocus), t.style(Role::TitleFocus))
    } else {
        (t.style(Role::Border), t.style(Role::Title))
    };
    Block::new()
        .borders(Borders::ALL)
        .border_type(if focused { BorderType::Thick } else { BorderType::Plain })
        .border_style(border)
        .title(Span::styled(format!(" {title} "), title_style))
}

pub fn focused(s: &State, pane: Pane) -> bool {
    s.modal.is_none() && s.focus == pane
}

/// Clears an overlay's area and draws its frame.
pub fn popup(f: &mut Frame, area: Rect, title: &str, t: &Theme) -> Rect {
    f.render_widget(Clear, area);
    let b = block(title, true, t).style(t.style(Role::Popup));
    let inner = b.inner(area);
    f.render_widget(b, area);
    inner
}

/// Below the minimum size: one line of progress, wrapped into whatever space there is.
fn tiny(s: &State, t: &Theme, f: &mut Frame, area: Rect) {
    let c = s.counts();
    let text = format!(
        "lem-tui {}/{} kept {} · {}x{} is too small (need {}x{})",
        c.done,
        c.total,
        c.kept,
        area.width,
        area.height,
        layout::MIN_WIDTH,
        layout::MIN_HEIGHT
    );
    let p = Paragraph::new(Line::styled(text, t.style(Role::Warn))).wrap(ratatui::widgets::Wrap { trim: true });
    f.render_widget(p, area);
}

/// Cuts `s` to at most `width` columns, with an ellipsis when cut.
pub fn fit(s: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    let total: usize = s.chars().map(|c| c.width().unwrap_or(0)).sum();
    if total <= width {
        return s.to_owned();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw + 1 > width {
            break;
        }
        out.push(c);
        w += cw;
    }
    if width > 0 {
        out.push('…');
    }
    out
}

/// A figure with its unit, compact: 512M, 1.5G.
pub fn bytes(b: u64) -> String {
    const G: u64 = crate::backend::memory::GIB;
    const M: u64 = crate::backend::memory::MIB;
    #[allow(clippy::cast_precision_loss)]
    if b >= 10 * G || (b >= G && (b / G) * G == b) {
        format!("{:.0}G", b as f64 / G as f64)
    } else if b >= G {
        format!("{:.1}G", b as f64 / G as f64)
    } else {
        format!("{}M", b / M)
    }
}

/// The selected row: one style for the whole line, so its text stays readable on the
/// selection background whatever the cells' own roles were.
pub fn highlight(line: Line<'_>, style: Style) -> Line<'_> {
    let spans = line.spans.into_iter().map(|sp| Span::styled(sp.content, style)).collect::<Vec<_>>();
    Line::from(spans).style(style)
}

pub fn styled(text: impl Into<String>, style: Style) -> Span<'static> {
    Span::styled(text.into(), style)
}
