//! The status bar: backend and model, progress, pass rate, ETA, mode and pause; below it the
//! latest note, or key hints when there is none.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use crate::app::Command;
use crate::app::state::{Level, State};
use crate::distill::CurationMode;
use crate::theme::{Role, Theme};

pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

const HINTS: [(Command, &str); 12] = [
    (Command::Accept, "accept"),
    (Command::Reject, "reject"),
    (Command::More, "more"),
    (Command::Skip, "skip"),
    (Command::Undo, "undo"),
    (Command::Pause, "pause"),
    (Command::Cancel, "cancel"),
    (Command::Limits, "limits"),
    (Command::Mode, "mode"),
    (Command::Filter, "filter"),
    (Command::Help, "help"),
    (Command::Quit, "quit"),
];

pub fn render(s: &State, t: &Theme, f: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let bar = t.style(Role::StatusBar);
    let c = s.counts();
    let mode = match s.settings.mode {
        CurationMode::Auto => " AUTO ",
        CurationMode::Review => " REVIEW ",
    };
    // Most urgent first: what the engine is doing can never be cut off by a narrow screen.
    let mut spans = vec![Span::styled(mode, t.style(Role::Mode))];
    if s.settings.paused {
        spans.push(Span::styled(" PAUSED ", t.style(Role::Paused)));
    }
    if s.finished.is_some() || s.engine_gone {
        spans.push(Span::styled(" DONE ", t.style(Role::Paused)));
    }
    spans.push(Span::styled(
        format!(" {}/{} probes · kept {} · skipped {}", c.done, c.total, c.kept, c.skipped + c.rejected),
        bar,
    ));
    if let Some(rate) = c.pass_rate() {
        spans.push(Span::styled(format!(" · pass {rate:.0}%"), bar));
    }
    if let Some(eta) = s.eta() {
        spans.push(Span::styled(format!(" · ETA {}", duration(eta)), bar));
    }
    spans.push(Span::styled(format!(" · runs {} · T {} ", s.settings.runs, s.settings.temperature), bar));
    spans.push(Span::styled(format!("│ {} · {} ", s.info.backend, s.info.model), bar));
    let top = Line::from(spans).style(bar);
    let bottom = match &s.note {
        Some(n) => {
            let role = match n.level {
                Level::Info => Role::Info,
                Level::Warn => Role::Warn,
                Level::Error => Role::Error,
            };
            Line::from(Span::styled(format!(" {}", n.text), t.style(role)))
        }
        None => {
            let mut spans = Vec::new();
            for (cmd, what) in HINTS {
                spans.push(Span::styled(format!(" {}", s.keymap.hint(cmd)), t.style(Role::Key)));
                spans.push(Span::styled(format!(" {what} "), t.style(Role::Dim)));
            }
            Line::from(spans)
        }
    };
    f.render_widget(Paragraph::new(vec![top, bottom]), area);
}
