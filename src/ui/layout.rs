//! Where every pane goes, from the terminal size alone. `update` uses it too (to wrap the
//! stream for the width it will be drawn at), so it must stay a pure function of the size.

use ratatui::layout::{Constraint, Layout, Rect};

/// Below this the screen shows a one-line summary instead of panes.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 12;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Panes {
    pub probes: Rect,
    pub throughput: Rect,
    pub memory: Rect,
    pub stream: Rect,
    pub candidates: Rect,
    /// Score breakdown beside the table on wide screens; zero-sized otherwise.
    pub scores: Rect,
    pub status: Rect,
}

pub fn too_small(area: Rect) -> bool {
    area.width < MIN_WIDTH || area.height < MIN_HEIGHT
}

/// The inside of a bordered block.
pub fn inner(r: Rect) -> Rect {
    Rect {
        x: r.x.saturating_add(1),
        y: r.y.saturating_add(1),
        width: r.width.saturating_sub(2),
        height: r.height.saturating_sub(2),
    }
}

/// `rows` is the candidate table's row count (it grows up to a limit).
pub fn panes(area: Rect, rows: usize) -> Panes {
    let [body, status] = Layout::vertical([Constraint::Min(1), Constraint::Length(2)]).areas(area);
    let left_w = (area.width * 3 / 10).clamp(26, 48);
    let [left, right] = Layout::horizontal([Constraint::Length(left_w), Constraint::Min(1)]).areas(body);
    let mem_h = if area.height >= 40 { 7 } else { 6 };
    let [probes, throughput, memory] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(5), Constraint::Length(mem_h)]).areas(left);
    let max_table = if area.height >= 40 { 14 } else { 9 };
    let want = u16::try_from(rows).unwrap_or(u16::MAX).saturating_add(3).clamp(5, max_table);
    let [stream, lower] = Layout::vertical([Constraint::Min(4), Constraint::Length(want)]).areas(right);
    let (candidates, scores) = if area.width >= 120 {
        let [t, s] = Layout::horizontal([Constraint::Min(40), Constraint::Length(38)]).areas(lower);
        (t, s)
    } else {
        (lower, Rect::default())
    };
    Panes { probes, throughput, memory, stream, candidates, scores, status }
}

/// The text area of the stream pane.
pub fn stream_text(area: Rect, rows: usize) -> Rect {
    inner(panes(area, rows).stream)
}

/// The full-text overlay and, inside it, the text and the score breakdown.
pub fn detail(area: Rect) -> (Rect, Rect, Rect) {
    let popup = centered(area, area.width.saturating_sub(4).max(1), area.height.saturating_sub(2).max(1));
    let body = inner(popup);
    if body.width >= 100 {
        let [text, scores] = Layout::horizontal([Constraint::Min(20), Constraint::Length(36)]).areas(body);
        (popup, text, scores)
    } else {
        let [text, scores] = Layout::vertical([Constraint::Min(3), Constraint::Length(9)]).areas(body);
        (popup, text, scores)
    }
}

/// A `width`×`height` rectangle centred in `area` (clipped to it).
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panes_fit_inside_the_screen_at_any_size() {
        for (w, h) in [(1, 1), (10, 5), (20, 10), (40, 12), (80, 24), (160, 48), (400, 120)] {
            let area = Rect::new(0, 0, w, h);
            let p = panes(area, 5);
            for r in [p.probes, p.throughput, p.memory, p.stream, p.candidates, p.scores, p.status] {
                assert!(r.right() <= area.right() && r.bottom() <= area.bottom(), "{w}x{h}: {r:?}");
            }
            let (popup, text, scores) = detail(area);
            assert!(popup.right() <= area.right() && text.bottom() <= area.bottom() && scores.right() <= area.right());
        }
    }
}
