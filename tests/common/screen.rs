//! The workbench drawn into ratatui's `TestBackend`, as text: one line per row.

use lem_tui::app::State;
use lem_tui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

pub fn screen(s: &State, width: u16, height: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    term.draw(|f| lem_tui::ui::render(s, &Theme::default_dark(), f)).expect("draws");
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}
